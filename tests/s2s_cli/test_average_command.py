"""``s2s average`` through click's CliRunner (the library: tests/s2s_model/test_averaging.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from s2s_cli.main import main
from s2s_model.tokenizer import Tokenizer
from tests.s2s_model.test_averaging import make_run


@pytest.fixture()
def run(tmp_path: Path, tiny_tokenizer: Tokenizer) -> Path:
    return make_run(tmp_path, tiny_tokenizer)


def test_s2s_average_with_run_and_last(run: Path) -> None:
    result = CliRunner().invoke(
        main, ["average", "--run", str(run), "--last", "2", "--output", str(run / "avg")]
    )
    assert result.exit_code == 0, result.output
    assert "averaged 2 checkpoints (steps [800, 1200])" in result.output
    config = json.loads((run / "avg" / "config.json").read_text())
    assert [c["step"] for c in config["metadata"]["averaged"]["checkpoints"]] == [800, 1200]


def test_s2s_average_errors_are_one_line(run: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["average", "--run", str(run), "--last", "9", "--output", "x"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "holds 4 step checkpoints" in result.output
    both = runner.invoke(main, ["average", "a", "b", "--run", str(run), "--last", "2",
                                "--output", "x"])  # fmt: skip
    assert both.exit_code == 2 and "not both" in both.output
    neither = runner.invoke(main, ["average", "--output", "x"])
    assert neither.exit_code == 2 and "--run RUN --last N" in neither.output
