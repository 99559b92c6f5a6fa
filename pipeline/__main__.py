"""``python -m pipeline --input GLOB --output DIR [flags]``: one launch command for every runner.

The same job as ``s2s summarize``, without click: flags are in pipeline/options.py; Beam's own
flags pass through.
"""

import gc
import logging
import sys
from collections.abc import Sequence

from pipeline import LOG_FORMAT, HarmlessBeamWarnings


def _main(argv: Sequence[str]) -> int:
    """Log to stderr (warnings, and this package's progress), then run: Beam is imported only
    now, so that the warnings it prints as it loads meet the filter."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(HarmlessBeamWarnings())
    logging.getLogger("pipeline").setLevel(logging.INFO)
    from pipeline.run import main

    return main(argv)


if __name__ == "__main__":
    status = _main(sys.argv[1:])
    gc.freeze()  # the exit's collections skip torch's and Beam's objects: see s2s_cli.main.entry
    sys.exit(status)
