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
from pipeline.output import counter_totals
from pipeline.sources import (
    MAX_RECORD_BYTES,
    BlankLine,
    Document,
    ReadSettings,
    ReadShards,
    bounded_lines,
    decode_text,
    read_jsonl,
    read_lines,
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


def _lines(settings: ReadSettings, data: bytes) -> list[Document | DeadLetter | BlankLine]:
    return list(read_lines(io.BytesIO(data), "s.txt", settings))


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


def test_a_jsonl_record_longer_than_a_text_line_is_cut_not_dropped() -> None:
    """Issue 24: with --max_doc_chars=50, records past 4 x 50 bytes were malformed_json."""
    settings = ReadSettings(max_doc_chars=50, id_field="id")
    texts = make_texts(20, seed=4, min_words=60, max_words=80)
    records = [
        json.dumps({"id": f"r{i}", "text": t, "pad": "x" * 500}) for i, t in enumerate(texts)
    ]
    assert min(len(r) for r in records) > settings.max_line_bytes
    out = _jsonl(settings, *records)
    assert [(d.doc_id, d.text, d.cut) for d in out if isinstance(d, Document)] == [
        (f"r{i}", t[:50], True) for i, t in enumerate(texts)
    ]


def test_a_cut_jsonl_record_keeps_its_flags_and_whole_characters() -> None:
    settings = ReadSettings(max_doc_chars=4)
    (doc,) = _jsonl(settings, r'{"text": "\ud83d\udce6\ud83d\udce6 caf\u00e9 \ud800 end"}')
    assert isinstance(doc, Document)
    assert (doc.text, doc.cut, doc.replaced) == ("📦📦 c", True, False)  # the lone one was cut


def test_only_a_record_past_the_byte_limit_is_a_dead_letter_and_says_which_limit() -> None:
    settings = ReadSettings(max_doc_chars=5, max_record_bytes=100)
    assert settings.record_limit == 100
    under = json.dumps({"text": "y" * 80})  # 93 bytes
    over = json.dumps({"id": "big", "text": "z" * 200})
    out = _jsonl(settings, under, over, json.dumps({"text": "after"}))
    assert [type(o).__name__ for o in out] == ["Document", "DeadLetter", "Document"]
    first, dead, after = out
    assert isinstance(first, Document) and (first.text, first.cut) == ("yyyyy", True)
    assert isinstance(dead, DeadLetter)
    assert (dead.doc_id, dead.reason) == ("s.jsonl:2", "malformed_json")
    assert dead.detail.startswith("record longer than 100 bytes")
    assert "MAX_RECORD_BYTES" in dead.detail and "raise --max_doc_chars above 25" in dead.detail
    assert isinstance(after, Document) and after.doc_id == "s.jsonl:3"


def test_the_record_limit_is_tens_of_mb_and_grows_with_max_doc_chars() -> None:
    default = ReadSettings()
    assert default.record_limit == MAX_RECORD_BYTES == 32 * 1024 * 1024
    assert ReadSettings(max_doc_chars=10**7).record_limit == 4 * 10**7
    line = b'{"text": "' + b"w" * (MAX_RECORD_BYTES - 13) + b'"}'
    assert len(line) == MAX_RECORD_BYTES - 1  # with its newline: exactly the limit
    (doc, dead) = list(read_jsonl(io.BytesIO(line + b"\n" + line + b"ww\n"), "s", default))
    assert isinstance(doc, Document) and doc.cut and len(doc.text) == default.max_doc_chars
    assert isinstance(dead, DeadLetter) and "33,554,432 bytes" in dead.detail


def test_text_null_absent_and_not_a_string_say_which() -> None:
    out = _jsonl(ReadSettings(), '{"id": 1, "text": null}', '{"id": 2}', '{"text": 3}')
    details = [d.detail for d in out if isinstance(d, DeadLetter)]
    assert [d.reason for d in out if isinstance(d, DeadLetter)] == [
        "missing_field",
        "missing_field",
        "wrong_field_type",
    ]
    assert details == [
        "field 'text' is null: there is no text to summarize",
        "no field 'text' (fields: ['id'])",
        "field 'text' is int, not a string",
    ]


def test_a_byte_order_mark_starting_a_line_is_not_text() -> None:
    bom = "\ufeff".encode()
    jsonl = bom + b'{"text": "first"}\n' + bom + b'{"text": "concatenated"}\n'
    out = list(read_jsonl(io.BytesIO(jsonl), "s.jsonl", ReadSettings()))
    assert [(d.text, d.replaced) for d in out if isinstance(d, Document)] == [
        ("first", False),
        ("concatenated", False),
    ]
    lines = _lines(ReadSettings(), bom + b"one\ntwo\n")
    assert [(d.doc_id, d.text) for d in lines if isinstance(d, Document)] == [
        ("s.txt:1", "one"),
        ("s.txt:2", "two"),
    ]


BLANK_LINES = [b"", b"   ", b"\t", b" \r", "\ufeff".encode()]
NOT_BLANK = ["\u00a0", "\x0b", "\u200b"]  # invisible, but characters: records


def test_blank_lines_are_skipped_in_jsonl_and_lines_shards_and_keep_line_numbers() -> None:
    tail = [f'{{"text": "{c}"}}'.encode() for c in ("a", "b")]
    data = b"\r\n".join([tail[0], *BLANK_LINES, tail[1], b""])
    out = list(read_jsonl(io.BytesIO(data), "s.jsonl", ReadSettings()))
    blank = [o.line for o in out if isinstance(o, BlankLine)]
    assert blank == list(range(2, 2 + len(BLANK_LINES)))
    assert [(d.doc_id, d.text) for d in out if isinstance(d, Document)] == [
        ("s.jsonl:1", "a"),
        (f"s.jsonl:{len(BLANK_LINES) + 2}", "b"),
    ]
    assert len(out) == len(BLANK_LINES) + 2

    lines = [b"one", *BLANK_LINES, *(c.encode() for c in NOT_BLANK), b"two"]
    read = _lines(ReadSettings(), b"\n".join(lines))
    assert [o.line for o in read if isinstance(o, BlankLine)] == blank
    docs = [(d.doc_id, d.text) for d in read if isinstance(d, Document)]
    first_other = len(BLANK_LINES) + 2
    assert docs == [
        ("s.txt:1", "one"),
        *((f"s.txt:{first_other + i}", c) for i, c in enumerate(NOT_BLANK)),
        (f"s.txt:{len(lines)}", "two"),
    ]


def test_a_json_line_of_other_whitespace_is_no_blank_line() -> None:
    (dead,) = _jsonl(ReadSettings(), "\u00a0")
    assert isinstance(dead, DeadLetter) and dead.reason == "malformed_json"


def test_parquet_rows_and_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["x", "y", "z"], "text": ["one", None, "three"]}), path)
    with open(path, "rb") as handle:
        out = list(read_parquet(handle, str(path), ReadSettings(id_field="id")))
    assert [o.doc_id for o in out if isinstance(o, Document)] == ["x", "z"]
    assert [(o.reason, o.detail) for o in out if isinstance(o, DeadLetter)] == [
        ("missing_field", "field 'text' is null: there is no text to summarize")
    ]
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


def test_parquet_cells_longer_than_a_text_line_are_cut_and_flagged(tmp_path: Path) -> None:
    path = tmp_path / "long.parquet"
    long_text = "library " * 1000
    pq.write_table(pa.table({"text": [long_text, "short"]}), path)
    with open(path, "rb") as handle:
        out = list(read_parquet(handle, str(path), ReadSettings(max_doc_chars=20)))
    assert [(d.text, d.cut) for d in out if isinstance(d, Document)] == [
        (long_text[:20], True),
        ("short", False),
    ]


def test_blank_lines_are_counted_apart_from_records_read(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "one"}\n\n  \n{"text": "two"}\n\n')
    (tmp_path / "b.txt").write_bytes(b"three\n\r\n\tfour\n")
    pipeline = BeamPipeline()
    read = pipeline | ReadShards([str(tmp_path / "*")])
    texts = read | beam.Map(lambda r: (r.doc_id.rsplit("/", 1)[1], r.text))
    assert_that(
        texts,
        equal_to(
            [
                ("a.jsonl:1", "one"),
                ("a.jsonl:4", "two"),
                ("b.txt:1", "three"),
                ("b.txt:3", "\tfour"),
            ]
        ),
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = counter_totals(result)
    assert counters is not None
    assert (counters["records_read"], counters["skipped_blank"]) == (4, 4)


def test_a_broken_shard_names_the_first_line_lost_counting_blank_lines(tmp_path: Path) -> None:
    from pipeline.sources import _ReadShardFn

    lines = "".join(f"{t}\n\n" for t in make_texts(400, seed=6)).encode()
    whole = gzip.compress(lines)
    path = tmp_path / "broken.txt.gz"
    path.write_bytes(whole[: len(whole) // 2])
    kept = 0
    with gzip.open(path, "rb") as handle, pytest.raises(EOFError):
        for _ in handle:
            kept += 1
    out = list(_ReadShardFn(ReadSettings()).process(str(path)))
    *docs, letter = out
    assert all(isinstance(d, Document) for d in docs)
    assert len(docs) == (kept + 1) // 2  # every other line is blank
    assert isinstance(letter, DeadLetter) and letter.reason == "unreadable_shard"
    assert letter.doc_id == f"{path}:{kept + 1}-"


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
