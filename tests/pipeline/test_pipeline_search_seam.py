"""The search seam (``Summarizer.with_search``, ``run(search=)``): a stand-in search answers
every document of a real job, and two bundle threads sharing one model give the rows of one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.run import run
from s2s_model import DecodeConfig, Summarizer
from s2s_model.quality import assess
from s2s_model.stand_in import SUMMARY_PIECES, FirstPieces

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = str(ROOT / "examples" / "debian" / "part-*")
TWO_THREADS = ("--direct_num_workers", "2", "--direct_running_mode", "multi_threading")


def _rows(output: Path, search: FirstPieces, *flags: str) -> list[dict[str, Any]]:
    report = run(["--input", EXAMPLES, "--output", str(output), "--id_field", "id", *flags],
                 search=search)  # fmt: skip
    rows = pq.read_table(output / "summaries").to_pylist()
    assert report.summarized == len(rows) == report.read == 400
    return sorted(rows, key=lambda row: row["doc_id"])


@pytest.fixture(scope="module")
def bundled() -> Summarizer:
    return Summarizer.load(None)


def test_a_stand_in_answers_every_document_of_the_job(tmp_path: Path, bundled: Summarizer) -> None:
    for row in _rows(tmp_path / "out", FirstPieces(), "--batch_window", "64"):
        text = _text(row)
        source = bundled.read(text)
        expected = bundled.tokenizer.decode(source.ids[:SUMMARY_PIECES])
        assert row["summary"] == expected
        assert row["src_tokens"] == len(source.ids)
        assert row["summary_tokens"] == min(SUMMARY_PIECES, len(source.ids))
        quality = assess(expected, text, domain=bundled.domain)
        assert (row["novel_words"], row["flags"]) == (pytest.approx(quality.novel_words),
                                                      quality.flags)  # fmt: skip


def test_two_bundle_threads_sharing_the_model_give_the_rows_of_one(tmp_path: Path) -> None:
    device = FirstPieces(seconds_per_document=1e-5)
    one = _rows(tmp_path / "one", device, "--batch_window", "32")
    two = _rows(tmp_path / "two", device, "--batch_window", "32", *TWO_THREADS)
    assert two == one


def test_the_stand_in_gives_first_pieces_with_one_hypothesis_each() -> None:
    sources = [[5, 6, 7], list(range(4, 40))]
    hyps = FirstPieces(pieces=4)(sources, DecodeConfig(), max_batch_tokens=1, stats=None)
    assert [[h.tokens for h in doc] for doc in hyps] == [[[5, 6, 7]], [[4, 5, 6, 7]]]
    with pytest.raises(ValueError):
        FirstPieces(pieces=0)


def _text(row: dict[str, Any]) -> str:
    """The text of a sample-corpus row, read back from its shard (jsonl by id, text by line)."""
    path = Path(row["source"])
    if path.suffix == ".jsonl":
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["id"] == row["doc_id"]:
                return str(record["text"])
        raise KeyError(row["doc_id"])
    number = int(row["doc_id"].rsplit(":", 1)[1])
    return path.read_text(encoding="utf-8").splitlines()[number - 1]
