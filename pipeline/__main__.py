"""``python -m pipeline --input GLOB --output DIR [flags]``: one launch command for every runner.

The same job as ``s2s summarize``, without click: flags are in pipeline/options.py; Beam's own
flags pass through.
"""

import sys

from pipeline.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
