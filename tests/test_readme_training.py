"""README's two-minute training run, as written there, with a shorter budget: it must end within
its ``--max_time`` and leave a ``best/`` that ``s2s summarize`` uses."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from s2s_cli.main import main

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 20
# The README's scratch folders, moved into the test's own.
SCRATCH = re.compile(r"^(runs|out)/")


def readme_commands() -> list[list[str]]:
    """The ``s2s`` commands of README's first block that runs ``s2s train --max_time 2m``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        if "--max_time 2m" in block:
            lines = block.replace("\\\n", " ").splitlines()
            return [shlex.split(line)[1:] for line in lines if line.startswith("s2s ")]
    raise AssertionError("README.md has no block with `s2s train ... --max_time 2m`")


@pytest.mark.usefixtures("one_thread")
def test_the_readme_training_run_keeps_its_budget_and_its_model_summarizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_args, summarize_args = readme_commands()
    assert train_args[0] == "train" and summarize_args[0] == "summarize"
    monkeypatch.chdir(ROOT)

    def local(args: list[str]) -> list[str]:
        return [SCRATCH.sub(f"{tmp_path}/\\1/", arg) for arg in args]

    shorter = [f"{BUDGET_S}s" if arg == "2m" else arg for arg in local(train_args)]
    started = time.monotonic()
    trained = CliRunner().invoke(main, shorter)
    wall = time.monotonic() - started
    assert trained.exit_code == 0, trained.output
    assert "stopped (max_time)" in trained.output and "step " in trained.output
    assert wall <= 1.25 * BUDGET_S, trained.output
    summarized = CliRunner().invoke(main, local(summarize_args))
    assert summarized.exit_code == 0, summarized.output
    output = Path(local(summarize_args)[local(summarize_args).index("--output") + 1])
    success = json.loads((output / "_SUCCESS.json").read_text(encoding="utf-8"))
    assert success["counts"]["summarized"] == 100, success["counts"]
