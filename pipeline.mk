# The paper pipeline: papermill runs notebooks/0*.ipynb in order on a preset (presets/*.yaml),
# then latexmk compiles the paper into build/<preset>/paper.pdf and the executed notebooks become
# an HTML report. Included by the Makefile.
#
#   make paper                   the whole paper on MNIST (preset "paper"): build/paper/paper.pdf
#                                and build/paper/report/index.html
#   make paper PRESET=smoke      the same, tiny (a few minutes on 2 CPU cores)
#   make results PRESET=smoke    the notebooks only, no LaTeX, no report
#   make report PRESET=smoke     the report of the stages run so far
#   make provenance PRESET=smoke which stages of build/smoke this checkout would make differently
#   make nbval                   re-execute the smoke notebooks, check their marked outputs
#
# The stages are declared once, in modclust/pipeline/stage_table.py (name = notebook stem, the
# stages it reads, what the paper takes from it); nothing here lists them. Each stage is a file
# target: build/<preset>/<notebook>.ipynb, the executed notebook, which depends on its notebook,
# the preset's files, the stages it reads and every module of the package its notebook imports
# (read from the code, see below), so a stage whose inputs did not change is not run again.
# modclust/pipeline/stages.py does the work: `make paper` and `make results` first check the
# preset and take the build folder's lock (a second run of the same preset waits for the first),
# then each stage runs in its own folder under build/<preset>/.tmp/ and is moved into place,
# marker last, only when papermill succeeds, with its provenance record (<stage>/provenance.json).

PRESET ?= paper
PRESET_FILE := presets/$(PRESET).yaml
PIPELINE := $(PY) -m modclust.pipeline
B := build/$(PRESET)

# The stages and their prerequisites come from the code (modclust/pipeline/deps.py, standard
# library only, so it runs before the environment exists): STAGES (in order), STAGE_INPUTS_<stage>
# (the stages it reads) and STAGE_NUMBER_<stage> from the table of stages; STAGE_LIBRARY_<stage>,
# every file of the package its notebook imports at any depth; PRESET_FILES_<preset>, the preset
# and those it extends. Make regenerates the include whenever a notebook, module or preset changes.
DEPS_MK := build/deps.mk
$(DEPS_MK): modclust/pipeline/deps.py $(shell find modclust -name '*.py') $(wildcard notebooks/0*.ipynb presets/*.yaml)
	@python3 modclust/pipeline/deps.py $@
include $(DEPS_MK)
PRESET_DEPS := $(or $(PRESET_FILES_$(PRESET)),$(PRESET_FILE))
# Rendering for plotly in executed notebooks (a JSON mimetype, no embedded plotly.js).
export PLOTLY_RENDERER ?= plotly_mimetype

.PHONY: paper results report _paper _results _report provenance nbval latex-tools clean-paper
.DELETE_ON_ERROR:

# The public targets hold the build folder's lock over the whole make run (_paper, _results).
paper results report: | $(VENV)/.installed
	@$(PIPELINE) run $(PRESET) -- $(MAKE) --no-print-directory _$@ PRESET=$(PRESET)

_paper: $(B)/paper.pdf $(B)/report/index.html
	@echo "==> [$(PRESET)] paper: $(B)/paper.pdf, report: $(B)/report/index.html (figures in figures/, numbers in paper/generated/)"

_results: $(foreach s,$(STAGES),$(B)/$(s).ipynb)

$(PRESET_FILE):
	@echo "error: no preset $(PRESET_FILE); presets are: $(basename $(notdir $(wildcard presets/*.yaml)))" >&2
	@exit 1

# run_stage(stage): the stage's notebook run by modclust.pipeline (see its docstring); its number
# (for "stage 3/8") is its place in the table of stages.
define run_stage
	@$(PIPELINE) stage $(PRESET) $(1) $(STAGE_NUMBER_$(1)) $(words $(STAGES))
endef

# Every stage gets the preset's values for the parameters its notebook declares, plus build_dir,
# out_dir and preset; the preset was checked first (modclust.pipeline.presets: every key some
# notebook's parameter, every value of the declared type). STAGE_INPUTS_<stage>: the stages it
# reads, from the table of stages (e.g. stages 2-4 read the models of stage 1).
define stage_rule
$(B)/$(1).ipynb: notebooks/$(1).ipynb $(foreach s,$(STAGE_INPUTS_$(1)),$(B)/$(s).ipynb) $(PRESET_DEPS) \
                 $(STAGE_LIBRARY_$(1)) | $(VENV)/.installed
	$$(call run_stage,$(1))
endef
$(foreach s,$(STAGES),$(eval $(call stage_rule,$(s))))

# The paper: compiled in build/<preset>/paper/ from a copy of paper/ with this preset's figures
# (build/<preset>/figures/) and numbers, so presets never share LaTeX's files; the PDF is kept as
# build/<preset>/paper.pdf and the figures and numbers installed in figures/ and paper/generated/.
PAPER_SOURCES := $(wildcard paper/*.tex paper/*.bib)
# modclust/paper/claims.py corrects the primary comparisons of every stage together, at compile
# time; modclust/pipeline/stage_table.py gives the stages' \input lines (generated/stage_*.tex).
$(B)/paper.pdf: $(foreach s,$(STAGES),$(B)/$(s).ipynb) $(PAPER_SOURCES) modclust/paper/claims.py \
                modclust/pipeline/stage_table.py | latex-tools
	@echo "==> [$(PRESET)] paper: latexmk in $(B)/paper/"
	@$(PIPELINE) latex $(PRESET)

# The report: build/<preset>/report/, the executed notebooks as HTML pages (plotly figures drawn
# offline by a local plotly.js, each page linking the previous and next stage) and an index that
# opens with the headline (the paper's primary comparisons, main table, sentences and key figures
# as PNGs, each linking the cell that computed it) and links the pages, the figures and the paper.
# `make paper` ends with it, after the PDF; `make report` needs only the stages (it shows the
# sentences and tables of a paper compiled before, or says the paper is not compiled yet).
_report: $(B)/report/index.html
	@echo "==> [$(PRESET)] report: $(B)/report/index.html"
$(B)/report/index.html: $(foreach s,$(STAGES),$(B)/$(s).ipynb) $(REPORT_LIBRARY) \
                        $(if $(filter _paper,$(MAKECMDGOALS)),$(B)/paper.pdf) | $(VENV)/.installed
	@$(PIPELINE) report $(PRESET) $(STAGES)

# Provenance: each stage's record (written when it commits: hashes of its notebook, package
# files, preset files and datasets, its preset values and the records of the stages it read)
# against this checkout; "matching" or what differs, per stage, and a failure unless all match.
# File times say nothing once a build folder is copied or the checkout switched to another commit.
provenance: | $(VENV)/.installed
	@$(PIPELINE) provenance $(PRESET)

# LaTeX (apt_tools: see the Makefile).
TEX_PACKAGES := texlive-latex-base texlive-latex-recommended texlive-latex-extra latexmk
latex-tools:
	$(call apt_tools,LaTeX,command -v latexmk >/dev/null && command -v pdflatex >/dev/null,$(TEX_PACKAGES),latexmk and pdflatex (TeX Live's LaTeX base$(,) recommended and extra collections) are needed to compile the paper)

# nbval: re-execute the smoke preset's executed notebooks (they hold outputs) and compare the
# outputs of the cells marked "# NBVAL_CHECK_OUTPUT": the marked numbers must be reproducible.
SMOKE_NOTEBOOKS := $(foreach s,$(STAGES),build/smoke/$(s).ipynb)
nbval: | $(VENV)/.installed
	$(MAKE) --no-print-directory results PRESET=smoke
	@echo "==> nbval: re-executing $(words $(SMOKE_NOTEBOOKS)) smoke notebooks, checking marked outputs"
	PLOTLY_RENDERER=plotly_mimetype TQDM_DISABLE=1 $(PIPELINE) run smoke -- $(PY) -m pytest -q -p no:cacheprovider \
	    --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg $(SMOKE_NOTEBOOKS)

clean-paper:
	rm -rf build/$(PRESET) paper/generated figures/*.pdf
