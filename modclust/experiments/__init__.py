"""The experiment grid: configurations over lambda x seed x clustered layers, their training, saved
runs, per-run analyses and summaries over seeds. Built on the analyses and the core."""
