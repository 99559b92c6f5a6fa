"""The model package stays pure PyTorch: importing it loads no Beam, click or pyarrow."""

import subprocess
import sys

FORBIDDEN = ("apache_beam", "click", "pyarrow")


def test_import_s2s_model_loads_no_pipeline_libraries() -> None:
    code = (
        "import sys, s2s_model\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_the_check_would_catch_a_forbidden_import() -> None:
    code = (
        "import sys, s2s_model, click\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "click" in result.stdout
