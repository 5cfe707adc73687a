"""The paper pipeline: presets and their checks, stages run by papermill, the browsable report."""
