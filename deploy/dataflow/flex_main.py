"""The Flex Template's entry file (FLEX_TEMPLATE_PYTHON_PY_FILE): ``python -m pipeline``.

The template launcher runs ``python flex_main.py --name=value ...`` with one ``--name=value``
per parameter. Switches arrive as ``--overwrite=true``; ``launcher_argv`` turns them back into
``--overwrite`` (see flex_template.py). Without ``--runner`` the pipeline would run on the
launcher VM itself, so DataflowRunner is the default here. The rest is ``python -m pipeline``.
"""

from __future__ import annotations

import runpy
import sys

from flex_template import launcher_argv

DEFAULT_RUNNER = "--runner=DataflowRunner"


def main() -> None:
    argv = launcher_argv(sys.argv[1:])
    if not any(token == "--runner" or token.startswith("--runner=") for token in argv):
        argv.append(DEFAULT_RUNNER)
    sys.argv = ["python -m pipeline", *argv]
    runpy.run_module("pipeline", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
