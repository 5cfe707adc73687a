"""``python -m modclust.pipeline``: the runner make calls (see :mod:`modclust.pipeline.stages`), and
the launcher's ``launch`` command (:mod:`modclust.pipeline.launch`)."""

from modclust.pipeline.launch import COMMAND
from modclust.pipeline.stages import main

raise SystemExit(main(more=[COMMAND]))
