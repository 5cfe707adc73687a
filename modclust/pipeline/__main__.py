"""``python -m modclust.pipeline``: the runner make calls (see :mod:`modclust.pipeline.stages`)."""

from modclust.pipeline.stages import main

raise SystemExit(main())
