"""Reading training pairs: JSONL, gzipped JSONL, Parquet, text lines; errors name the record."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s2s_cli.pairs import Pair, PairsError, read_pairs, read_texts, resolve_files


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def record(text: object, summary: object) -> str:
    return json.dumps({"description": text, "synopsis": summary, "extra": 1})


def test_reads_jsonl_with_custom_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [record("doc one", "one"), "", record("doc 2", "2")])
    pairs = read_pairs(path, text_field="description", summary_field="synopsis")
    assert pairs == [Pair("doc one", "one"), Pair("doc 2", "2")]


def test_reads_gzipped_jsonl_and_respects_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i in range(5):
            handle.write(json.dumps({"text": f"doc {i}", "summary": f"s{i}"}) + "\n")
    assert read_pairs(path, limit=2) == [Pair("doc 0", "s0"), Pair("doc 1", "s1")]


def test_missing_field_names_file_and_record(tmp_path: Path) -> None:
    lines = [record("a", "b"), record("c", "d"), json.dumps({"description": "e"})]
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(PairsError, match=r"bad\.jsonl: record 3 has no field 'synopsis'"):
        read_pairs(path, text_field="description", summary_field="synopsis")


def test_default_fields_missing_suggests_the_flags(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [record("a", "b")])
    with pytest.raises(PairsError, match=r"record 1 has no field 'text'.*--text_field"):
        read_pairs(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"description": "a", "synopsis": ', "record 2 is not valid JSON"),
        ('["a", "b"]', "record 2 is a JSON list"),
        (record(None, "b"), "record 2 has a null 'description'"),
        (record(7, "b"), "record 2 field 'description' is a int, not a string"),
        (record("a", "   "), "record 2 has an empty 'synopsis'"),
    ],
)
def test_corrupt_records_raise_with_their_number(tmp_path: Path, line: str, message: str) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [record("fine", "ok"), line, record("x", "y")])
    with pytest.raises(PairsError, match=message):
        read_pairs(path, text_field="description", summary_field="synopsis")


def test_reads_parquet(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    table = pa.table({"text": ["d1", "d2", "d3"], "summary": ["s1", "s2", "s3"], "n": [1, 2, 3]})
    pq.write_table(table, path, row_group_size=2)
    assert read_pairs(path) == [Pair("d1", "s1"), Pair("d2", "s2"), Pair("d3", "s3")]


def test_parquet_null_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["d1", "d2", "d3"], "summary": ["s1", "s2", None]}), path)
    with pytest.raises(PairsError, match=r"p\.parquet: record 3 has a null 'summary'"):
        read_pairs(path)


def test_parquet_missing_column_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"body": ["d1"], "summary": ["s1"]}), path)
    with pytest.raises(PairsError, match=r"no column 'text' \(columns: \['body', 'summary'\]\)"):
        read_pairs(path)


def test_not_parquet_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    path.write_text("not parquet", encoding="utf-8")
    with pytest.raises(PairsError, match="not a readable Parquet file"):
        read_pairs(path)


def test_directory_and_glob_read_files_in_name_order(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "b.jsonl", [json.dumps({"text": "t2", "summary": "s2"})])
    write_jsonl(tmp_path / "a.jsonl", [json.dumps({"text": "t1", "summary": "s1"})])
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    assert [p.text for p in read_pairs(tmp_path)] == ["t1", "t2"]
    assert [p.name for p in resolve_files(str(tmp_path / "*.jsonl"))] == ["a.jsonl", "b.jsonl"]


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PairsError, match="no such file"):
        read_pairs(tmp_path / "nope.jsonl")


def test_read_texts_from_lines_and_jsonl(tmp_path: Path) -> None:
    lines = tmp_path / "preds.txt"
    lines.write_text("first summary\nsecond\n", encoding="utf-8")
    assert read_texts(lines) == ["first summary", "second"]
    path = write_jsonl(tmp_path / "p.jsonl", [json.dumps({"summary": "x"}), json.dumps({})])
    with pytest.raises(PairsError, match="record 2 has no field 'summary'"):
        read_texts(path)
    assert read_texts(path, limit=1) == ["x"]


def test_plain_text_cannot_supply_pairs(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("a\n", encoding="utf-8")
    with pytest.raises(PairsError, match="plain text file has no fields"):
        read_pairs(path)
