"""Preflight: every problem with the output folder is one line before any work, and a folder of
the user's own files is never cleared without ``--overwrite``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import HARMLESS_BEAM_WARNINGS
from pipeline.preflight import PreflightError, RunPlan, parse, preflight
from pipeline.run import run
from tests.conftest import make_texts
from tests.pipeline_fixtures import summarize_args, write_lines


def _plan(tmp_path: Path, model: Path, output: Path, *extra: str) -> RunPlan:
    shard = write_lines(tmp_path / "in.txt", make_texts(3))
    return preflight(parse(summarize_args([str(shard)], output, model, *extra)))


def test_an_output_that_is_a_file_is_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    output = tmp_path / "out.parquet"
    output.write_text("mine")
    with pytest.raises(PreflightError, match=r"--output .*out\.parquet is a file: give a folder"):
        _plan(tmp_path, tiny_checkpoint, output)
    assert output.read_text() == "mine"


def test_an_output_below_a_file_is_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PreflightError, match=r"is below a file \(.*notes\.txt\)"):
        _plan(tmp_path, tiny_checkpoint, tmp_path / "notes.txt" / "run" / "out")


def test_an_output_this_user_cannot_write_is_refused(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access

    def access(path: object, mode: int) -> bool:  # root passes every permission bit: pretend
        return Path(str(path)) != locked and real_access(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr("pipeline.preflight.os.access", access)
    with pytest.raises(PreflightError, match=r"cannot be written: .*locked is not writable"):
        _plan(tmp_path, tiny_checkpoint, locked / "new" / "out")


def test_a_folder_of_the_users_own_files_is_refused_and_left_alone(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    output = tmp_path / "out"
    (output / "summaries").mkdir(parents=True)
    mine = [output / "summaries" / "draft.parquet", output / "notes.txt"]
    for path in mine:
        path.write_text("mine")
    with pytest.raises(PreflightError, match=r"holds files that no run wrote \(notes\.txt, summ"):
        _plan(tmp_path, tiny_checkpoint, output)
    assert all(path.read_text() == "mine" for path in mine)


def test_overwrite_writes_beside_the_users_files(tmp_path: Path, tiny_checkpoint: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    shard = write_lines(tmp_path / "in.txt", make_texts(3))
    report = run(summarize_args([str(shard)], output, tiny_checkpoint, "--overwrite"))
    assert report.summarized == 3
    assert (output / "notes.txt").read_text() == "mine"


def test_what_runs_write_is_not_foreign(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """An unfinished run's leftovers (and a desktop's hidden files) do not stop the next run."""
    output = tmp_path / "out"
    for name in ("summaries/part-00000-of-00002.parquet", "dead_letter/part-00001.parquet",
                 "_temporary/20260101T000000Z-abcd/summaries/x.tmp", ".DS_Store"):  # fmt: skip
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        (output / name).write_text("left over")
    plan = _plan(tmp_path, tiny_checkpoint, output)
    assert plan.output == str(output)


def test_the_command_line_says_it_in_one_line(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.write_text("mine")
    shard = write_lines(tmp_path / "in.txt", make_texts(2))
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", str(shard), "--output", str(output)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    errors = [line for line in completed.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: --output {output} is a file: give a folder (it is made if missing)"]
    assert "Traceback" not in completed.stderr
    assert [text for text in HARMLESS_BEAM_WARNINGS if text in completed.stderr] == []
