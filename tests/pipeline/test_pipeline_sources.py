"""ReadShards: formats, compression, ids, bounded lines and dead letters for bad records."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from typing import NoReturn

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import combiners

from pipeline.dead_letters import DeadLetter
from pipeline.sources import (
    Document,
    ReadSettings,
    ReadShards,
    bounded_lines,
    decode_text,
    read_jsonl,
    read_parquet,
    shard_format,
)
from tests.conftest import make_texts


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/b.txt", "lines"),
        ("a/b.txt.gz", "lines"),
        ("b.JSONL", "jsonl"),
        ("b.ndjson.bz2", "jsonl"),
        ("gs://x/b.parquet", "parquet"),
        ("noext", "lines"),
    ],
)
def test_auto_format_by_extension(path: str, expected: str) -> None:
    assert shard_format(path, "auto") == expected
    assert shard_format(path, "file") == "file"


def test_bounded_lines_never_hold_more_than_the_limit() -> None:
    data = b"short\r\n" + b"x" * 25 + b"\n" + b"y" * 10 + b"\nlast"
    lines = list(bounded_lines(io.BytesIO(data), 10))
    assert lines == [(b"short", False), (b"x" * 10, True), (b"y" * 10, False), (b"last", False)]


def test_decode_text_flags_replacement_but_not_a_character_cut_at_the_limit() -> None:
    assert decode_text(b"caf\xe9") == ("caf\ufffd", True)
    assert decode_text("café".encode()[:-1], cut=True) == ("caf", False)
    assert decode_text("café".encode()) == ("café", False)


def _jsonl(settings: ReadSettings, *lines: str) -> list[object]:
    data = "".join(f"{line}\n" for line in lines).encode()
    return list(read_jsonl(io.BytesIO(data), "s.jsonl", settings))


def test_jsonl_ids_text_and_each_bad_record() -> None:
    settings = ReadSettings(id_field="id", text_field="body")
    out = _jsonl(
        settings,
        json.dumps({"id": "a", "body": "text a"}),
        json.dumps({"id": 7, "body": "text b"}),
        json.dumps({"body": "no id"}),
        json.dumps({"id": "d", "body": 3}),
        "{oops",
        json.dumps({"id": "f"}),
    )
    docs = [o for o in out if isinstance(o, Document)]
    assert [(d.doc_id, d.text) for d in docs] == [
        ("a", "text a"),
        ("7", "text b"),
        ("s.jsonl:3", "no id"),
    ]
    dead = [o for o in out if isinstance(o, DeadLetter)]
    assert len(docs) + len(dead) == len(out)
    assert [(d.doc_id, d.reason) for d in dead] == [
        ("d", "wrong_field_type"),
        ("s.jsonl:5", "malformed_json"),
        ("f", "missing_field"),
    ]
    assert dead[1].raw == "{oops"


def test_jsonl_lone_surrogates_are_replaced_and_flagged() -> None:
    (doc,) = _jsonl(ReadSettings(), '{"text": "a \\ud800 b"}')
    assert isinstance(doc, Document) and doc.replaced
    doc.text.encode("utf-8")  # writable as Parquet


def test_long_documents_are_cut_and_flagged() -> None:
    settings = ReadSettings(max_doc_chars=5)
    (doc,) = _jsonl(settings, json.dumps({"text": "abcdefgh"}))
    assert isinstance(doc, Document) and (doc.text, doc.cut) == ("abcde", True)


def test_parquet_rows_and_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["x", "y", "z"], "text": ["one", None, "three"]}), path)
    with open(path, "rb") as handle:
        out = list(read_parquet(handle, str(path), ReadSettings(id_field="id")))
    assert [o.doc_id for o in out if isinstance(o, Document)] == ["x", "z"]
    assert [o.reason for o in out if isinstance(o, DeadLetter)] == ["missing_field"]
    with open(path, "rb") as handle:
        out = list(read_parquet(handle, str(path), ReadSettings(text_field="body")))
    assert [o.reason if isinstance(o, DeadLetter) else o for o in out] == ["missing_field"] * 3


def test_read_shards_in_a_pipeline(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first\nsecond\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as handle:
        handle.write("zipped\n")
    (tmp_path / "c.txt").write_bytes(b"\xffbad\n")
    (tmp_path / "whole.md").write_text("line one\nline two\n")
    cut = gzip.compress("".join(f"{t}\n" for t in make_texts(400, seed=3)).encode())
    (tmp_path / "d.txt.gz").write_bytes(cut[: len(cut) // 2])
    patterns = [str(tmp_path / "*.txt*"), str(tmp_path / "a.txt")]  # a.txt matched twice
    with BeamPipeline() as p:
        read = p | "Lines" >> ReadShards(patterns)
        docs = (
            read
            | beam.Filter(lambda r: isinstance(r, Document))
            | beam.Map(lambda d: (d.doc_id.rsplit("/", 1)[1], d.text, d.replaced))
        )
        dead = (
            read
            | "DeadOnly" >> beam.Filter(lambda r: isinstance(r, DeadLetter))
            | beam.Map(lambda d: (d.source.rsplit("/", 1)[1], d.reason))
        )
        whole = p | "Files" >> ReadShards(
            [str(tmp_path / "*.md")], ReadSettings(input_format="file")
        )
        texts = whole | "WholeText" >> beam.Map(lambda d: d.text)
        # lines of the broken shard before the break are kept; how many depends on gzip
        kept = (
            docs | beam.Filter(lambda d: d[0].startswith("d.txt.gz")) | combiners.Count.Globally()
        )
        others = docs | beam.Filter(lambda d: not d[0].startswith("d.txt.gz"))
        assert_that(
            others,
            equal_to(
                [
                    ("a.txt:1", "first", False),
                    ("a.txt:2", "second", False),
                    ("b.txt.gz:1", "zipped", False),
                    ("c.txt:1", "\ufffdbad", True),
                ]
            ),
            label="Documents",
        )
        assert_that(dead, equal_to([("d.txt.gz", "unreadable_shard")]), label="DeadLetters")
        assert_that(texts, equal_to(["line one\nline two\n"]), label="WholeFile")
        assert_that(
            kept, lambda counts: counts[0] > 0 or _fail("no line before the break"), label="Kept"
        )


def _fail(message: str) -> NoReturn:
    raise AssertionError(message)


def test_unopenable_shard_is_one_dead_letter(tmp_path: Path) -> None:
    settings = ReadSettings()
    from pipeline.sources import _ReadShardFn

    out = list(_ReadShardFn(settings).process(str(tmp_path / "vanished.txt")))
    (letter,) = out
    assert isinstance(letter, DeadLetter) and letter.reason == "unreadable_shard"
    assert "after 0 records" in letter.detail


def test_a_file_name_that_is_not_utf8_travels_as_bytes() -> None:
    from pipeline.sources import from_portable_path, portable_path

    odd = os.fsdecode(b"/data/caf\xe9.txt")  # how Python holds a Latin-1 file name
    assert isinstance(portable_path(odd), bytes)
    assert from_portable_path(portable_path(odd)) == odd
    assert portable_path("gs://b/ü.txt") == "gs://b/ü.txt"
