"""Faults during a run (tests/fault_injection.py): a transient inference error, out-of-memory,
a bundle that raises, a worker process killed, the launcher killed. Either the run completes
with every document exactly once, or it fails clearly with no ``_SUCCESS.json`` and no Parquet
among the outputs; a re-run to the same output is then exact."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from pipeline import run as run_module
from pipeline.model_handler import InferenceFailure, Seq2SeqModelHandler, is_out_of_memory
from pipeline.run import RunFailed, run
from pipeline.sources import Document
from s2s_model import DecodeConfig, Source, Summarizer, Summary
from tests import fault_injection
from tests.conftest import make_texts
from tests.fault_injection import (
    COLOSSAL,
    DRIVER,
    FAULTS_DIR_ENV,
    KILL_AT_ENV,
    KILL_BEFORE_PROMOTE_ENV,
    fired,
)
from tests.pipeline_fixtures import summarize_args, write_lines

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300
DECODE = DecodeConfig(beam_size=2, max_len=6)  # what summarize_args asks for


@dataclass
class Corpus:
    pattern: str
    texts: dict[str, str]  # doc_id -> text


def _corpus(root: Path, shards: int, per_shard: int, *, extra: Sequence[str] = ()) -> Corpus:
    root.mkdir(parents=True)
    texts: dict[str, str] = {}
    for shard in range(shards):
        lines = make_texts(per_shard, seed=300 + shard)
        if shard == 0:
            lines += list(extra)
        path = write_lines(root / f"part-{shard}.txt", lines)
        texts.update({f"{path}:{n}": text for n, text in enumerate(lines, 1)})
    return Corpus(str(root / "*.txt"), texts)


@pytest.fixture
def faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "faults"
    directory.mkdir()
    monkeypatch.setenv(FAULTS_DIR_ENV, str(directory))
    return directory


def _expected(model: Path, texts: dict[str, str]) -> dict[str, Summary]:
    ids = sorted(texts)
    summaries = Summarizer.load(model).summarize([texts[i] for i in ids], DECODE)
    return dict(zip(ids, summaries, strict=True))


def _rows(output: Path) -> list[dict]:
    return pq.read_table(output / "summaries").to_pylist()


def _dead(output: Path) -> list[dict]:
    directory = output / "dead_letter"
    return pq.read_table(directory).to_pylist() if list(directory.glob("*.parquet")) else []


def _assert_exact(output: Path, expected: dict[str, Summary]) -> None:
    """Every document once, with the summary the model gives it alone; nothing else."""
    rows = _rows(output)
    assert Counter(r["doc_id"] for r in rows) == Counter(list(expected)), "lost or duplicated"
    for row in rows:
        assert row["summary"] == expected[row["doc_id"]].text
        assert row["score"] == pytest.approx(expected[row["doc_id"]].score, abs=1e-5)
    manifest = json.loads((output / "_SUCCESS.json").read_text())
    listed = {*manifest["files"]["summaries"], *manifest["files"]["dead_letter"]}
    on_disk = {str(p.relative_to(output)) for p in output.rglob("*") if p.is_file()}
    assert on_disk == listed | {"_SUCCESS.json"}, "stale or temporary files in the output"


def _assert_nothing_among_outputs(output: Path) -> None:
    """A failed run: no manifest, and no file at all where readers look."""
    assert not (output / "_SUCCESS.json").exists()
    for directory in ("summaries", "dead_letter"):
        assert [p for p in (output / directory).rglob("*") if p.is_file()] == []


def test_a_transient_inference_error_is_retried_without_duplicates(
    tmp_path: Path, tiny_checkpoint: Path, faults: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path / "corpus", shards=2, per_shard=20)
    monkeypatch.setattr(run_module, "Seq2SeqModelHandler", fault_injection.TransientOnFirstAttempt)
    output = tmp_path / "out"
    report = run(summarize_args([corpus.pattern], output, tiny_checkpoint, "--batch_window", "8"))
    assert fired("transient") == 1
    assert report.dead_lettered == 0 and report.summarized == len(corpus.texts)
    counters = report.manifest["counters"]
    assert counters.get("batch_splits", 0) + counters.get("document_retries", 0) >= 1
    _assert_exact(output, _expected(tiny_checkpoint, corpus.texts))


def test_out_of_memory_splits_the_batch_and_dead_letters_only_a_document_alone(
    tmp_path: Path, tiny_checkpoint: Path, faults: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path / "corpus", shards=2, per_shard=15, extra=[f"the {COLOSSAL} package"])
    monkeypatch.setattr(run_module, "Seq2SeqModelHandler", fault_injection.OutOfMemoryAbove)
    output = tmp_path / "out"
    report = run(summarize_args([corpus.pattern], output, tiny_checkpoint, "--batch_window", "16"))
    (colossal_id,) = [i for i, t in corpus.texts.items() if COLOSSAL in t]
    (letter,) = _dead(output)
    assert (letter["doc_id"], letter["reason"]) == (colossal_id, "out_of_memory")
    assert "OutOfMemoryError: CUDA out of memory" in letter["detail"]
    counters = report.manifest["counters"]
    assert counters["out_of_memory_errors"] == fired("oom") > 2
    assert counters["batch_splits"] >= 2 and counters["document_retries"] == 1
    rows = {r["doc_id"]: r for r in _rows(output)}
    expected = _expected(tiny_checkpoint, {i: t for i, t in corpus.texts.items() if i in rows})
    assert set(rows) == set(corpus.texts) - {colossal_id}
    assert all(rows[i]["summary"] == s.text for i, s in expected.items())


class _SizedOom:
    """Runs out of memory for more than ``limit`` texts; records every call's size."""

    fingerprint = "fake"
    device = "cpu"

    def __init__(self, limit: int, error: Exception) -> None:
        self.limit, self.error = limit, error
        self.calls: list[int] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def read(self, text: str) -> Source:
        return Source(text, [5] * self.count_tokens(text), False)

    def summarize_sources(
        self, sources: Sequence[Source], decode: DecodeConfig | None = None, **options: object
    ) -> list[Summary]:
        return self.summarize([s.text for s in sources], decode, **options)

    def summarize(
        self, texts: Sequence[str], decode: DecodeConfig | None = None, **options: object
    ) -> list[Summary]:
        self.calls.append(len(texts))
        if len(texts) > self.limit:
            raise self.error
        return [Summary(t, -1.0, [5], [(t, -1.0)], 1, False) for t in texts]


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"
        ),
        MemoryError(),
    ],
    ids=["cuda", "cpu-allocator", "python"],
)
def test_out_of_memory_halves_the_window_until_it_fits(error: Exception) -> None:
    model = _SizedOom(limit=3, error=error)
    docs = [Document(f"d{i}", "s", f"word{i} text") for i in range(12)]
    results = list(Seq2SeqModelHandler().run_inference(docs, model))  # type: ignore[arg-type]
    assert model.calls == [12, 6, 3, 3, 6, 3, 3]
    assert sorted(r.example.doc_id for r in results) == sorted(d.doc_id for d in docs)  # type: ignore[attr-defined]
    assert not [r for r in results if isinstance(r.inference, InferenceFailure)]
    assert is_out_of_memory(error)


def test_other_errors_are_not_out_of_memory() -> None:
    assert not is_out_of_memory(ValueError("out of memory"))  # not an allocation failure
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_a_bundle_that_raises_fails_the_run_and_leaves_no_output(
    tmp_path: Path, tiny_checkpoint: Path, faults: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path / "corpus", shards=2, per_shard=10)
    output = tmp_path / "out"
    argv = summarize_args([corpus.pattern], output, tiny_checkpoint, "--batch_window", "4")
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "Seq2SeqModelHandler", fault_injection.RaiseInBundle)
        with pytest.raises(RunFailed, match="injected bundle failure"):
            run(argv)
    _assert_nothing_among_outputs(output)
    assert not (output / "_temporary").exists(), "the failed job's files were not removed"
    run(argv)
    _assert_exact(output, _expected(tiny_checkpoint, corpus.texts))


def _launch(handler: str, argv: list[str], faults: Path, **env: str) -> dict:
    """``run(argv)`` in a fresh launcher process with ``handler``; its one JSON line, or
    {"killed": signal} when the launcher itself died."""
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, f"tests.fault_injection:{handler}", *argv],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), FAULTS_DIR_ENV: str(faults), **env},
    )
    if done.returncode < 0:
        return {"killed": -done.returncode}
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_a_killed_worker_process_fails_the_run_clearly_or_completes_exactly(
    tmp_path: Path, tiny_checkpoint: Path, faults: Path
) -> None:
    # The 5th model call, over both processes: rows of earlier windows are on their way to
    # the sinks. (tests/pipeline/test_scale_out.py kills a worker from outside, while it reads.)
    kill_at = 5
    corpus = _corpus(tmp_path / "corpus", shards=4, per_shard=30)
    output = tmp_path / "out"
    argv = summarize_args(
        [corpus.pattern], output, tiny_checkpoint, "--batch_window", "8",
        "--direct_num_workers", "2", "--direct_running_mode", "multi_processing",
    )  # fmt: skip
    outcome = _launch("KillProcessAtCall", argv, faults, **{KILL_AT_ENV: str(kill_at)})
    assert fired("killed") == 1, "no worker was killed"
    expected = _expected(tiny_checkpoint, corpus.texts)
    if outcome.get("ok"):
        _assert_exact(output, expected)
    else:
        assert "killed" not in outcome, "the launcher died with its worker"
        assert re.search(r"the job failed: .*a worker process died", outcome["error"]), outcome
        _assert_nothing_among_outputs(output)
    run(argv)  # the re-run, with no fault, to the same output
    _assert_exact(output, expected)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["mid-job", "before-promotion"])
def test_a_killed_launcher_leaves_nothing_among_the_outputs_and_the_rerun_is_exact(
    tmp_path: Path, tiny_checkpoint: Path, faults: Path, when: str
) -> None:
    # The in-process runner: the process that dies is the launcher itself, at the 6th model
    # call, or once the job has written every file (below _temporary/) but before they move.
    corpus = _corpus(tmp_path / "corpus", shards=3, per_shard=20)
    output = tmp_path / "out"
    argv = summarize_args([corpus.pattern], output, tiny_checkpoint, "--batch_window", "4")
    env = {KILL_AT_ENV: "6"} if when == "mid-job" else {KILL_BEFORE_PROMOTE_ENV: "1"}
    handler = "KillProcessAtCall" if when == "mid-job" else "Seq2SeqModelHandler"
    outcome = _launch(handler, argv, faults, **env)
    assert outcome == {"killed": 9}
    _assert_nothing_among_outputs(output)
    if when == "before-promotion":
        held = [p for p in (output / "_temporary").rglob("*.parquet")]
        assert len(held) >= 2, "the finished job's files wait below _temporary/"
    run(argv)
    _assert_exact(output, _expected(tiny_checkpoint, corpus.texts))
