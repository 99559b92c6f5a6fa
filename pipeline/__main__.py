"""``python -m pipeline --input GLOB --output DIR [flags]``: one launch command for every runner.

The same as ``s2s summarize``: flags are in pipeline/options.py; Beam's own flags pass through.
"""

from pipeline.cli import summarize_main

if __name__ == "__main__":
    summarize_main()
