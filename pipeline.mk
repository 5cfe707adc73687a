# The paper pipeline: papermill runs notebooks/0*.ipynb in order on a preset (presets/*.yaml),
# then latexmk compiles the paper into build/<preset>/paper.pdf. Included by the Makefile.
#
#   make paper                   the "paper" preset, ends with build/paper/paper.pdf
#   make paper PRESET=smoke      the same, tiny (about three minutes on 2 CPU cores)
#   make results PRESET=smoke    the notebooks only, no LaTeX
#   make nbval                   re-execute the smoke notebooks, check their marked outputs
#
# Each stage is a file target: build/<preset>/<notebook>.ipynb, the executed notebook, which
# depends on its notebook, the preset, the library and the stages before it, so a stage whose
# inputs did not change is not run again. modclust/pipeline/stages.py does the work: `make paper` and
# `make results` first check the preset and take the build folder's lock (a second run of the
# same preset waits for the first), then each stage runs in its own folder under
# build/<preset>/.tmp/ and is moved into place, marker last, only when papermill succeeds.

PRESET ?= paper
PRESET_FILE := presets/$(PRESET).yaml
PIPELINE := $(PY) -m modclust.pipeline
B := build/$(PRESET)
STAGES := 01_train 02_ablate 03_interpret 04_circuits 05_figures
# Stage 6 (notebooks/06_beyond.ipynb: sweep, spectral baseline, more circuit measures) runs only
# for presets that ask for it with a "sweep_lambdas" key (e.g. presets/fashion.yaml); its
# figures and generated/beyond.tex are installed beside stage 5's.
BEYOND := $(if $(shell grep -qs '^sweep_lambdas:' $(PRESET_FILE) && echo yes),$(B)/06_beyond.ipynb)
N_STAGES := $(if $(BEYOND),6,5)
# The library: every stage depends on the whole package (its modules and its style file).
LIBRARY := $(shell find modclust -name '*.py' -o -name '*.mplstyle')
# Rendering for plotly in executed notebooks (a JSON mimetype, no embedded plotly.js).
export PLOTLY_RENDERER ?= plotly_mimetype

.PHONY: paper results _paper _results nbval latex-tools clean-paper
.DELETE_ON_ERROR:

# The public targets hold the build folder's lock over the whole make run (_paper, _results).
paper results: | $(VENV)/.installed
	@$(PIPELINE) run $(PRESET) -- $(MAKE) --no-print-directory _$@ PRESET=$(PRESET)

_paper: $(B)/paper.pdf
	@echo "==> [$(PRESET)] paper: $(B)/paper.pdf (figures in figures/, numbers in paper/generated/)"

_results: $(B)/05_figures.ipynb $(BEYOND)

$(PRESET_FILE):
	@echo "error: no preset $(PRESET_FILE); presets are: $(basename $(notdir $(wildcard presets/*.yaml)))" >&2
	@exit 1

# run_stage(n, stage): the stage's notebook run by modclust.pipeline (see its docstring).
define run_stage
	@$(PIPELINE) stage $(PRESET) $(2) $(1) $(N_STAGES)
endef

# Every stage gets the preset's values for the parameters its notebook declares, plus build_dir,
# out_dir and preset; the preset was checked first (modclust.pipeline.presets: every key some notebook's
# parameter, every value of the declared type).
$(B)/01_train.ipynb: notebooks/01_train.ipynb $(PRESET_FILE) $(LIBRARY) | $(VENV)/.installed
	$(call run_stage,1,01_train)
$(B)/02_ablate.ipynb: notebooks/02_ablate.ipynb $(B)/01_train.ipynb $(PRESET_FILE) $(LIBRARY) | $(VENV)/.installed
	$(call run_stage,2,02_ablate)
$(B)/03_interpret.ipynb: notebooks/03_interpret.ipynb $(B)/01_train.ipynb $(PRESET_FILE) $(LIBRARY) | $(VENV)/.installed
	$(call run_stage,3,03_interpret)
$(B)/04_circuits.ipynb: notebooks/04_circuits.ipynb $(B)/01_train.ipynb $(PRESET_FILE) $(LIBRARY) | $(VENV)/.installed
	$(call run_stage,4,04_circuits)
$(B)/05_figures.ipynb: notebooks/05_figures.ipynb $(B)/01_train.ipynb $(B)/02_ablate.ipynb $(B)/03_interpret.ipynb \
                       $(B)/04_circuits.ipynb $(PRESET_FILE) $(LIBRARY) | $(VENV)/.installed
	$(call run_stage,5,05_figures)
$(B)/06_beyond.ipynb: notebooks/06_beyond.ipynb $(PRESET_FILE) $(LIBRARY) | $(VENV)/.installed
	$(call run_stage,6,06_beyond)

# The paper: compiled in build/<preset>/paper/ from a copy of paper/ with this preset's figures
# (build/<preset>/figures/) and numbers, so presets never share LaTeX's files; the PDF is kept as
# build/<preset>/paper.pdf and the figures and numbers installed in figures/ and paper/generated/.
PAPER_SOURCES := $(wildcard paper/*.tex paper/*.bib)
$(B)/paper.pdf: $(B)/05_figures.ipynb $(BEYOND) $(PAPER_SOURCES) | latex-tools
	@echo "==> [$(PRESET)] paper: latexmk in $(B)/paper/"
	@$(PIPELINE) latex $(PRESET)

# LaTeX: install it with apt when it is missing and we may (root, apt-get present).
TEX_PACKAGES := texlive-latex-base texlive-latex-recommended texlive-latex-extra latexmk
latex-tools:
	@command -v latexmk >/dev/null && command -v pdflatex >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "==> installing LaTeX: apt-get install $(TEX_PACKAGES)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES); \
	else \
	    echo "error: latexmk and pdflatex are needed to compile the paper. Install them, e.g." >&2; \
	    echo "  sudo apt-get install --no-install-recommends $(TEX_PACKAGES)" >&2; \
	    echo "or TeX Live's latexmk with the LaTeX base, recommended and extra collections." >&2; \
	    exit 1; \
	fi

# nbval: re-execute the smoke preset's executed notebooks (they hold outputs) and compare the
# outputs of the cells marked "# NBVAL_CHECK_OUTPUT": the marked numbers must be reproducible.
# The smoke preset has the sweep keys, so stage 6 is among them.
SMOKE_NOTEBOOKS := $(foreach s,$(STAGES) 06_beyond,build/smoke/$(s).ipynb)
nbval: | $(VENV)/.installed
	$(MAKE) --no-print-directory results PRESET=smoke
	@echo "==> nbval: re-executing $(words $(SMOKE_NOTEBOOKS)) smoke notebooks, checking marked outputs"
	PLOTLY_RENDERER=plotly_mimetype TQDM_DISABLE=1 $(PIPELINE) run smoke -- $(PY) -m pytest -q -p no:cacheprovider \
	    --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg $(SMOKE_NOTEBOOKS)

clean-paper:
	rm -rf build/$(PRESET) paper/generated figures/*.pdf
