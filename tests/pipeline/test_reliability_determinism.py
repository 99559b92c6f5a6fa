"""The same corpus gives the same summaries and scores whatever the run: again, with other batch
token budgets and windows, without refilling, and with two worker processes."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.run import run
from tests.conftest import make_texts
from tests.pipeline_fixtures import write_lines

DOCUMENTS = 300
SCORE_TOLERANCE = 1e-5


def _args(corpus: Path, output: Path, model: Path, *extra: str) -> list[str]:
    return [
        "--input", str(corpus / "*.txt"), "--output", str(output), "--model", str(model),
        "--device", "cpu",
        "--beam_size", "3", "--max_len", "8", "--length_penalty", "wu", "--alpha", "0.6",
        "--max_src_tokens", "48", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three shards of short and long documents (some cut by --max_src_tokens)."""
    root = tmp_path_factory.mktemp("determinism")
    texts = make_texts(DOCUMENTS - 30, seed=71) + make_texts(
        30, seed=72, min_words=60, max_words=90
    )
    for shard in range(3):
        write_lines(root / f"shard-{shard}.txt", texts[shard::3])
    return root


def _summaries(output: Path) -> dict[str, tuple[str, float, bool]]:
    rows = pq.read_table(output / "summaries").to_pylist()
    assert len(rows) == len({r["doc_id"] for r in rows}) == DOCUMENTS
    return {r["doc_id"]: (r["summary"], r["score"], r["truncated"]) for r in rows}


@pytest.fixture(scope="module")
def baseline(
    corpus: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, float, bool]]:
    output = tmp_path_factory.mktemp("baseline") / "out"
    run(_args(corpus, output, tiny_checkpoint))
    return _summaries(output)


def _assert_same(
    got: dict[str, tuple[str, float, bool]], baseline: dict[str, tuple[str, float, bool]]
) -> None:
    assert got.keys() == baseline.keys()
    texts = [doc for doc in baseline if got[doc][0] != baseline[doc][0]]
    assert texts == [], f"{len(texts)} summaries differ, e.g. {texts[:3]}"
    worst = max(abs(got[doc][1] - baseline[doc][1]) for doc in baseline)
    assert worst <= SCORE_TOLERANCE, f"a score moved by {worst}"
    assert all(got[doc][2] == baseline[doc][2] for doc in baseline)


def test_the_corpus_is_varied(baseline: dict[str, tuple[str, float, bool]]) -> None:
    """The comparison means something: many distinct summaries, some cut sources."""
    assert len({summary for summary, _, _ in baseline.values()}) > 20
    assert 0 < sum(truncated for _, _, truncated in baseline.values()) < DOCUMENTS


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--max_batch_tokens", "97", "--batch_window", "7"],
        ["--max_batch_tokens", "100000", "--batch_window", "300"],
        ["--no_refill"],
        ["--no_refill", "--max_batch_tokens", "150", "--batch_window", "13"],
    ],
    ids=["again", "small-budget", "one-batch", "no-refill", "no-refill-small-budget"],
)
def test_same_summaries_and_scores_whatever_the_batching(
    flags: list[str],
    corpus: Path,
    tiny_checkpoint: Path,
    tmp_path: Path,
    baseline: dict[str, tuple[str, float, bool]],
) -> None:
    run(_args(corpus, tmp_path / "out", tiny_checkpoint, *flags))
    _assert_same(_summaries(tmp_path / "out"), baseline)


@pytest.mark.slow
def test_same_summaries_and_scores_with_two_worker_processes(
    corpus: Path,
    tiny_checkpoint: Path,
    tmp_path: Path,
    baseline: dict[str, tuple[str, float, bool]],
) -> None:
    flags = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
    run(_args(corpus, tmp_path / "out", tiny_checkpoint, "--batch_window", "32", *flags))
    _assert_same(_summaries(tmp_path / "out"), baseline)
