"""Parquet sinks: one schema each, read back with pyarrow; counts from the footers."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline

from pipeline.dead_letters import dead_letter
from pipeline.sinks import (
    DEAD_LETTER_SCHEMA,
    WriteDeadLetters,
    WriteSummaries,
    count_rows,
    output_files,
    summary_schema,
)

ROW = {
    "doc_id": "a:1",
    "source": "a",
    "summary": "short",
    "score": -1.5,
    "src_tokens": 12,
    "summary_tokens": 2,
    "truncated": False,
    "replaced_invalid_utf8": True,
    "model_id": "abc",
    "reuse_key": "0" * 64,
    "novel_words": 0.5,
    "repeated_words": 0,
    "flags": ["novel_word", "truncated_source"],
}


def test_n_best_column_only_when_asked() -> None:
    assert "n_best" not in summary_schema(with_n_best=False).names
    n_best = summary_schema(with_n_best=True).field("n_best").type
    assert n_best == pa.list_(pa.struct([("summary", pa.string()), ("score", pa.float64())]))


def test_rows_and_dead_letters_round_trip(tmp_path: Path) -> None:
    letter = dead_letter("b:2", "b", "malformed_json", "bad", b"{\xff" + b"x" * 5000)
    rows = [
        {**ROW, "doc_id": f"a:{i}", "n_best": [{"summary": "s", "score": -1.0}]} for i in range(5)
    ]
    with BeamPipeline() as p:
        _ = (
            p
            | "Rows" >> beam.Create(rows)
            | WriteSummaries(str(tmp_path), with_n_best=True, num_shards=2)
        )
        _ = p | "Letters" >> beam.Create([letter]) | WriteDeadLetters(str(tmp_path))
    summaries = output_files(str(tmp_path / "summaries"))
    assert len(summaries) == 2 and count_rows(summaries) == 5
    table = pq.read_table(tmp_path / "summaries")
    assert table.schema == summary_schema(with_n_best=True)
    assert sorted(table.to_pylist(), key=lambda r: r["doc_id"]) == rows
    dead = pq.read_table(tmp_path / "dead_letter")
    assert dead.schema == DEAD_LETTER_SCHEMA
    (back,) = dead.to_pylist()
    assert back["reason"] == "malformed_json" and back["raw"].startswith("{\ufffdx")
    assert len(back["raw"]) == 1000  # an excerpt, not the record


def test_no_rows_still_give_a_readable_file_with_the_schema(tmp_path: Path) -> None:
    with BeamPipeline() as p:
        _ = p | beam.Create([]) | WriteSummaries(str(tmp_path), with_n_best=False)
    files = output_files(str(tmp_path / "summaries"))
    assert len(files) == 1 and count_rows(files) == 0
    assert pq.read_table(files[0]).schema == summary_schema(with_n_best=False)


def test_output_files_ignore_beam_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "beam-temp-part-123").mkdir()
    pq.write_table(pa.table({"a": [1]}), tmp_path / "beam-temp-part-123" / "part-x.parquet")
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "part-00000-of-00001.parquet")
    (tmp_path / "notes.txt").write_text("not ours")
    files = output_files(str(tmp_path))
    assert [Path(f).name for f in files] == ["part-00000-of-00001.parquet"]
    assert count_rows(files) == 2
