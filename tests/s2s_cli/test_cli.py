"""The s2s command line through click's CliRunner: runs, tables, and every pre-flight error."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import s2s_cli.main as cli
from pipeline.show import SORTABLE, read_rows
from s2s_cli.main import format_table, main
from s2s_model.quality import FLAGS
from tests.conftest import make_texts
from tests.pipeline_fixtures import write_lines

FAST = ["--max_len", "5", "--beam_size", "2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """An output directory of a finished run: 7 lines, one of them with no text (a no-break
    space) and one blank."""
    root = tmp_path_factory.mktemp("cli")
    corpus = write_lines(root / "in.txt", [*make_texts(5, seed=21), "\u00a0", ""])
    output = root / "out"
    result = invoke(
        "summarize", str(corpus), "--output", str(output), "--model", str(tiny_checkpoint),
        "--max_dead_letter_fraction", "0.5", *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return output


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_summarize_counts_an_empty_line_as_a_dead_letter_and_a_blank_one_apart(
    finished: Path,
) -> None:
    manifest = json.loads((finished / "_SUCCESS.json").read_text())
    assert manifest["counts"] == {
        "read": 6,
        "summarized": 5,
        "dead_lettered": 1,
        "reused": 0,
        "decoded": 5,
        "skipped_blank": 1,
    }


def test_summarize_reports_counts_and_where(tmp_path: Path, tiny_checkpoint: Path) -> None:
    corpus = write_lines(tmp_path / "in.txt", make_texts(3, seed=22))
    output = tmp_path / "out"
    result = invoke(
        "summarize", "--output", str(output), str(corpus), "--model", str(tiny_checkpoint), *FAST
    )
    assert result.exit_code == 0, result.output
    assert "3 records: 3 summarized, 0 dead letters" in result.stdout
    assert str(output) in result.stdout
    assert (output / "_SUCCESS.json").exists()


def test_show_prints_summaries_and_dead_letters(finished: Path) -> None:
    result = invoke("show", str(finished), "--limit", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "6 records, 5 summarized, 1 dead letters" in lines[0]
    assert lines[1].split() == ["doc_id", "summary", "score", "src_tokens", "novel_words", "flags"]
    assert len(lines) == 2 + 1 + 2 + 1  # run line, header, rule, two rows, what was shown
    assert lines[-1] == "showing 2 of 5 summaries"
    dead = invoke("show", str(finished), "--dead_letters")
    assert dead.exit_code == 0, dead.output
    assert "empty_document" in dead.stdout and "in.txt:6" in dead.stdout


def test_show_filters_and_sorts_by_the_quality_columns(finished: Path) -> None:
    rows = read_rows(str(finished), limit=100)
    assert len(rows) == 5
    for row in rows:
        assert set(row["flags"]) <= set(FLAGS) and 0.0 <= row["novel_words"] <= 1.0
        assert ("forced_end" in row["flags"]) == (row["summary_tokens"] == 5)  # FAST: max_len 5
    by_novelty = read_rows(str(finished), limit=3, sort="novel_words", columns=["doc_id"])
    expected = sorted(rows, key=lambda row: -row["novel_words"])[:3]
    assert [r["doc_id"] for r in by_novelty] == [r["doc_id"] for r in expected]
    for flag in (*FLAGS, "any"):
        flagged = read_rows(str(finished), limit=100, flag=flag)
        wanted = [r for r in rows if (flag in r["flags"] if flag != "any" else r["flags"])]
        assert [r["doc_id"] for r in flagged] == [r["doc_id"] for r in wanted]
    result = invoke("show", str(finished), "--flag", "forced_end", "--sort", "novel_words")
    assert result.exit_code == 0, result.output
    forced = sum("forced_end" in r["flags"] for r in rows)
    assert len(result.stdout.splitlines()) == 3 + forced + 1
    assert result.stdout.splitlines()[-1] == (
        f"showing {forced} of 5 summaries ({forced} match --flag forced_end), those with the"
        " largest novel_words"
    )
    refused = CliRunner().invoke(main, ["show", str(finished), "--dead_letters", "--flag", "any"])
    assert refused.exit_code == 2 and "apply to summaries" in refused.output


def test_the_cli_spells_the_flags_and_sort_columns_as_the_library() -> None:
    assert cli.FLAGS == FLAGS and cli.SORTABLE == SORTABLE


def test_show_on_a_directory_without_output_fails_cleanly(tmp_path: Path) -> None:
    result = invoke("show", str(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "holds no Parquet files" in result.output


def test_format_table_cuts_long_cells() -> None:
    table = format_table([{"a": "x" * 50, "b": 1.23456}], ("a", "b"), width=20)
    header, rule, row = table.splitlines()
    assert header.split() == ["a", "b"]
    assert row.split() == ["x" * 19 + "…", "1.235"]
    assert len(rule.split()[0]) == 20


def _corrupt_model(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    return broken


PREFLIGHT_ERRORS = {
    "typo in a flag": (["--beam_sise", "3"], "unknown flag --beam_sise: did you mean --beam_size?"),
    "bad flag value": (["--max_batch_tokens", "0"], "--max_batch_tokens: 0 must be at least 1"),
    "bad choice": (["--device", "tpu"], "invalid choice: 'tpu'"),
    "bad decode combination": (["--n_best", "5"], "bad decode flags: n_best=5"),
    "missing model": (["--model", "{tmp}/nowhere"], "cannot load model {tmp}/nowhere"),
    "corrupt model": (["--model", "{corrupt}"], "model.safetensors is not a readable"),
    "glob matching nothing": (["--input", "{tmp}/none-*.txt"], "matches no file"),
    "no output": (["--output", ""], "no output directory"),
    "int8 with bf16": (
        ["--quantize", "int8", "--precision", "bf16"],
        "quantize int8 and precision bf16 do not combine",
    ),
    "int8 on a GPU": (["--quantize", "int8", "--device", "cuda"], "int8 runs on the CPU only"),
    # Its value would have become a second input: issue 13.
    "unknown flag with a value": (["--frobnicate", "{tmp}/in.txt"], "unknown flag --frobnicate"),
    "unknown flag near one of ours": (["--beam_sise", "{tmp}/in.txt"], "did you mean --beam_size?"),
}


@pytest.mark.parametrize("case", sorted(PREFLIGHT_ERRORS))
def test_preflight_errors_are_one_line_before_any_work(
    case: str, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    flags, message = PREFLIGHT_ERRORS[case]
    values = {"tmp": str(tmp_path), "corrupt": str(_corrupt_model(tmp_path, tiny_checkpoint))}
    corpus = write_lines(tmp_path / "in.txt", ["the package"])
    output = tmp_path / "out"
    base = [str(corpus), "--output", str(output), "--model", str(tiny_checkpoint)]
    result = invoke("summarize", *base, *[f.format(**values) for f in flags])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert message.format(**values) in result.output
    assert not output.exists(), "work started before the error"


def test_finished_output_without_overwrite_is_a_preflight_error(finished: Path) -> None:
    before = sorted(p.name for p in (finished / "summaries").iterdir())
    result = invoke("summarize", "in.txt", "--output", str(finished))
    assert result.exit_code == 2
    assert "already holds a finished run" in result.output and "--overwrite" in result.output
    assert sorted(p.name for p in (finished / "summaries").iterdir()) == before


def test_a_skipped_scheduled_run_says_so(finished: Path) -> None:
    before = (finished / "_SUCCESS.json").read_text()
    result = invoke("summarize", "in.txt", "--output", str(finished), "--if_finished", "skip")
    assert result.exit_code == 0, result.output
    assert "already finished: nothing to do" in result.output
    assert "records:" not in result.output
    assert (finished / "_SUCCESS.json").read_text() == before


def test_summarize_help_lists_the_pipeline_flags() -> None:
    result = invoke("summarize", "--help")
    assert result.exit_code == 0
    for flag in ("--input_format", "--max_batch_tokens", "--beam_size", "--no_ban_unk"):
        assert flag in result.stdout


def test_python_m_pipeline_fails_in_one_line_without_traceback(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "--input", str(tmp_path / "none*"), "--output", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1].startswith("Error: --input")


def test_cuda_without_a_gpu_fails_before_any_work(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    corpus = write_lines(tmp_path / "in.txt", ["the package"])
    output = tmp_path / "out"
    result = invoke(
        "summarize", str(corpus), "--output", str(output), "--model", str(tiny_checkpoint),
        "--device", "cuda",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert "device 'cuda' asked for" in result.output and "--device cpu" in result.output
    assert not output.exists(), "work started before the error"


def test_python_m_pipeline_refuses_an_unknown_flag_with_a_value(tmp_path: Path) -> None:
    other = write_lines(tmp_path / "other.txt", ["not an input"])
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "in.txt", "--output", str(tmp_path / "out"),
         "--frobnicate", str(other)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("Error: unknown flag --frobnicate") and "Traceback" not in completed.stderr
    )


def test_the_console_script_freezes_the_heap_on_its_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """So the interpreter's exit does not walk torch's and Beam's objects (0.45 s a command)."""
    monkeypatch.setattr(sys, "argv", ["s2s", "--version"])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as done:
            cli.entry()
        assert done.value.code == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_help_shows_defaults_and_sensible_switches() -> None:
    result = CliRunner().invoke(main, ["evaluate", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--no_repeat_words / --allow_repeat_words" in result.output
    assert "--no_no_repeat_words" not in result.output
    assert "[default: summary]" in result.output
    train = CliRunner().invoke(main, ["train", "--help"], terminal_width=200)
    assert "[default: auto]" in train.output
