"""The studies a preset configures: each one's settings dataclass by the preset section that sets it.

A new model family registers its settings here (and its stage in
:mod:`modclust.pipeline.stage_table`). Only the pipeline's runner reads this table, to check a
whole preset before anything runs; a notebook checks its parameters against its own study's
settings alone (:func:`modclust.pipeline.presets.check_kernel_parameters`), so that a change to
one study's code does not make make rerun the others' stages.
"""

from __future__ import annotations

from modclust.experiments.cnn_study import CnnSettings
from modclust.experiments.mlp_study import MlpSettings
from modclust.experiments.modular_addition import ModAddSettings

STUDIES: dict[str | None, type] = {cls.preset_section: cls for cls in (MlpSettings, CnnSettings, ModAddSettings)}
"""Each study's settings by the preset section that sets them (None: the preset's top level)."""
