"""``python -m pipeline --input GLOB --output DIR [flags]``: one launch command for every runner.

The same job as ``s2s summarize``, without click: flags are in pipeline/options.py; Beam's own
flags pass through.
"""

import gc
import sys

from pipeline.run import main

if __name__ == "__main__":
    status = main(sys.argv[1:])
    gc.freeze()  # the exit's collections skip torch's and Beam's objects: see s2s_cli.main.entry
    sys.exit(status)
