"""Reading a run's output back: rows for ``s2s show`` and the one-line run summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.output import write_manifest
from pipeline.show import SORTABLE, OutputNotFound, RowCounts, read_rows, row_counts, run_summary

# Two part files, as a run writes them: the rows of the first come first.
PARTS: list[list[dict[str, Any]]] = [
    [
        {"doc_id": "a", "summary": "one", "novel_words": 0.1, "flags": []},
        {"doc_id": "b", "summary": "two", "novel_words": 0.9, "flags": ["novel_word"]},
        {"doc_id": "c", "summary": "three", "novel_words": None, "flags": []},
    ],
    [
        {"doc_id": "d", "summary": "four", "novel_words": 0.5, "flags": ["repeat"]},
        {"doc_id": "e", "summary": "five", "novel_words": 0.7, "flags": ["novel_word", "repeat"]},
    ],
]
SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("summary", pa.string()),
        ("novel_words", pa.float64()),
        ("flags", pa.list_(pa.string())),
    ]
)


@pytest.fixture
def output(tmp_path: Path) -> str:
    summaries = tmp_path / "summaries"
    summaries.mkdir()
    for i, rows in enumerate(PARTS):
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        pq.write_table(table, summaries / f"part-{i:05d}-of-{len(PARTS):05d}.parquet")
    dead = tmp_path / "dead_letter"
    dead.mkdir()
    letters = pa.table({"doc_id": ["x:1"], "reason": ["malformed_json"]})
    pq.write_table(letters, dead / "part-00000-of-00001.parquet")
    return str(tmp_path)


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["doc_id"] for row in rows]


def test_the_first_rows_in_file_order(output: str) -> None:
    assert ids(read_rows(output, limit=4)) == ["a", "b", "c", "d"]
    assert ids(read_rows(output, limit=100)) == ["a", "b", "c", "d", "e"]
    assert read_rows(output, limit=1) == [PARTS[0][0]]


def test_only_the_columns_asked_for(output: str) -> None:
    rows = read_rows(output, limit=2, columns=["summary", "doc_id"])
    assert rows == [{"summary": "one", "doc_id": "a"}, {"summary": "two", "doc_id": "b"}]
    # A column the files lack is shown empty rather than refused.
    assert read_rows(output, limit=1, columns=["doc_id", "n_best"]) == [
        {"doc_id": "a", "n_best": None}
    ]


def test_flagged_rows_only(output: str) -> None:
    assert ids(read_rows(output, flag="any")) == ["b", "d", "e"]
    assert ids(read_rows(output, flag="repeat")) == ["d", "e"]
    assert ids(read_rows(output, flag="novel_word", limit=1)) == ["b"]
    # The filter needs ``flags`` even when the columns shown leave it out.
    assert read_rows(output, flag="repeat", columns=["summary"]) == [
        {"summary": "four"},
        {"summary": "five"},
    ]


def test_sorting_takes_the_largest_of_every_row(output: str) -> None:
    assert ids(read_rows(output, sort="novel_words", limit=3)) == ["b", "e", "d"]
    # An empty value sorts as 0; the sort column need not be among those shown.
    assert read_rows(output, sort="novel_words", limit=5, columns=["doc_id"])[-1] == {"doc_id": "c"}
    flagged = read_rows(output, sort="novel_words", flag="repeat", limit=1)
    assert ids(flagged) == ["e"]


def test_a_column_that_cannot_be_sorted_is_refused(output: str) -> None:
    with pytest.raises(ValueError, match="sort='summary': choose one of") as refused:
        read_rows(output, sort="summary")
    assert all(name in str(refused.value) for name in SORTABLE)


def test_dead_letters_are_read_from_their_own_directory(output: str) -> None:
    assert read_rows(output, dead_letters=True) == [{"doc_id": "x:1", "reason": "malformed_json"}]


def test_a_directory_without_output_says_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(OutputNotFound, match=r"holds no Parquet files: is .* the --output of"):
        read_rows(str(tmp_path))


def test_the_run_summary_of_an_unfinished_run_warns(output: str) -> None:
    line = run_summary(output)
    assert line.startswith(f"{output}: no _SUCCESS.json")
    assert "rows may be incomplete" in line


def test_the_run_summary_of_a_finished_run(output: str) -> None:
    manifest = {
        "counts": {"read": 12345, "summarized": 12300, "dead_lettered": 45},
        "model": {"fingerprint": "abc123"},
        "finished_at": "2026-01-02T03:04:05Z",
        "runner": "DirectRunner",
    }
    write_manifest(output, manifest)
    line = run_summary(output)
    assert line.startswith(f"{output}: 12,345 records, 12,300 summarized, 45 dead letters")
    for part in ("model abc123", "finished 2026-01-02T03:04:05Z on DirectRunner"):
        assert part in line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("model", "shown"),
    [
        ({"path": "news", "bundled": True}, "model news (bundled, abc123)"),
        ({"path": "bundled"}, "model debian (bundled, abc123)"),  # before the named models
        ({"path": "runs/m1/best", "bundled": False}, "model runs/m1/best (abc123)"),
    ],
)
def test_the_run_summary_names_the_model(output: str, model: dict[str, object], shown: str) -> None:
    manifest = {
        "counts": {"read": 1, "summarized": 1, "dead_lettered": 0},
        "model": {**model, "fingerprint": "abc123"},
        "finished_at": "2026-01-02T03:04:05Z",
        "runner": "DirectRunner",
    }
    write_manifest(output, manifest)
    assert f"; {shown}; finished" in run_summary(output)


def test_row_counts_come_from_the_footers_and_the_flags(output: str) -> None:
    assert row_counts(output) == RowCounts(total=5, matching=5)
    assert row_counts(output, flag="repeat") == RowCounts(total=5, matching=2)
    assert row_counts(output, flag="any") == RowCounts(total=5, matching=3)
    assert row_counts(output, flag="forced_end") == RowCounts(total=5, matching=0)
    assert row_counts(output, dead_letters=True) == RowCounts(total=1, matching=1)
