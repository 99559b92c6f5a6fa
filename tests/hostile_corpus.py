"""A hostile corpus, built at test time, with the outcome a correct run gives for every record.

Each shard is written next to the records it must produce: ``Expected(source, doc_id, outcome)``,
where ``outcome`` is ``SUMMARY`` or a dead-letter reason code; a blank line (``BLANK``) is no
record and is only counted (``skipped_blank``). Bytes that are not UTF-8, NUL bytes, byte-order
marks, empty files and lines, whitespace of every kind, a 50 MB line (plain and as a small
``.gz`` that inflates to it), a jsonl record far longer than a text line, a binary file,
truncated and fake compressed files, malformed and deeply nested JSON, wrong field types,
duplicate and odd ids, right-to-left text, emoji, combining marks, other scripts, and a shard
whose file name is not UTF-8.

Runs read it with ``--id_field id --max_doc_chars MAX_DOC_CHARS`` (``hostile_args``).
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dead_letters import safe_text
from tests.conftest import make_texts

SUMMARY = "summary"
EMPTY = "empty_document"
MALFORMED = "malformed_json"
NOT_OBJECT = "not_an_object"
MISSING = "missing_field"
WRONG_TYPE = "wrong_field_type"
UNREADABLE = "unreadable_shard"
BLANK = "blank"  # a blank line: no record, counted in skipped_blank

MAX_DOC_CHARS = 2000
# 4 bytes per character: the longest line the readers hold (sources.ReadSettings.max_line_bytes).
MAX_LINE_BYTES = MAX_DOC_CHARS * 4
BIG_LINE_BYTES = 50 * 1024 * 1024
# A jsonl record is read whole (up to sources.MAX_RECORD_BYTES) and cut: far past
# MAX_LINE_BYTES, and the same in the memory test's twin corpus (only lines are compared there).
LONG_RECORD_BYTES = 1024 * 1024
# Deep enough to exhaust Python's recursion limit, short enough to be read whole.
NESTING_DEPTH = 3000
OBJECT_NESTING_DEPTH = 1500  # '{"":' per level: 7.5 KB
BINARY_BYTES = 64 * 1024

WORDS = "the package provides a library for parsing data files "
RTL = "الحزمة توفر مكتبة لتحليل الملفات — חבילה זו מספקת ספרייה \u202eevil override\u202c"
EMOJI = "📦 package 👩‍👩‍👧‍👦 family 🇩🇪 flag 🏳️‍🌈 and skin tones 👍🏽 library"
ZALGO = "".join(c + "\u0301\u0316\u0334\u0360\u0489" * 6 for c in "package library")
SCRIPTS = [
    "这个软件包提供了用于解析数据文件的库",
    "このパッケージはデータファイルを解析するライブラリを提供します",
    "यह पैकेज डेटा फ़ाइलों को पार्स करने के लिए एक लाइब्रेरी प्रदान करता है",
    "แพ็กเกจนี้มีไลบรารีสำหรับแยกวิเคราะห์ไฟล์ข้อมูล",
    "Этот пакет предоставляет библиотеку для разбора файлов данных",
    "Αυτό το πακέτο παρέχει μια βιβλιοθήκη",
    "이 패키지는 데이터 파일을 구문 분석하는 라이브러리를 제공합니다",
]
UNICODE_BLANKS = ["\u00a0\u2003\u3000", "\u2028\u2029", "\t \x0b\x0c", "\u1680\u205f"]
# Not whitespace, but no text: controls and format characters (SentencePiece reads NUL, ZWJ).
INVISIBLE = ["\x00\x00\x00", "\x01\x02\x03\x7f", "\u200d\u200b\ufeff\u202e\u00ad"]


@dataclass(frozen=True)
class Expected:
    source: str
    doc_id: str
    outcome: str  # SUMMARY or a dead-letter reason


@dataclass
class HostileCorpus:
    root: Path
    records: list[Expected] = field(default_factory=list)
    skipped_blank: int = 0
    big_line: Path | None = None  # the 50 MB line, for the memory test to replace

    @property
    def pattern(self) -> str:
        return str(self.root / "*")

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.records)

    @property
    def summarized(self) -> int:
        return self.outcomes[SUMMARY]

    @property
    def dead_lettered(self) -> int:
        return len(self.records) - self.summarized

    def expect(self, path: Path, outcomes: list[str], ids: list[str] | None = None) -> None:
        """Records of ``path``, in order, a ``BLANK`` for each blank line; ids default to
        ``<path>:<line>``."""
        source = safe_text(str(path))
        ids = ids or [f"{source}:{n}" for n in range(1, len(outcomes) + 1)]
        for doc_id, outcome in zip(ids, outcomes, strict=True):
            if outcome == BLANK:
                self.skipped_blank += 1
            else:
                self.records.append(Expected(source, doc_id, outcome))


def hostile_args(corpus: HostileCorpus, output: Path, model: Path, *extra: str) -> list[str]:
    """argv for run(): one small window per batch and short summaries keep it quick."""
    return [
        "--input", corpus.pattern, "--output", str(output), "--model", str(model),
        "--id_field", "id", "--max_doc_chars", str(MAX_DOC_CHARS),
        "--max_len", "4", "--beam_size", "2", "--batch_window", "16",
        "--max_dead_letter_fraction", "1", *extra,
    ]  # fmt: skip


def build_hostile_corpus(root: Path, *, big_line_bytes: int = BIG_LINE_BYTES) -> HostileCorpus:
    """Write every shard under ``root``; ``big_line_bytes`` sizes the huge line (the memory
    test builds a twin with a short one)."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = HostileCorpus(root)
    _encodings(corpus)
    _blanks(corpus)
    _huge_lines(corpus, big_line_bytes)
    _binary(corpus)
    _compression(corpus)
    _json(corpus)
    _ids(corpus)
    _scripts(corpus)
    _parquet(corpus)
    _file_names(corpus)
    return corpus


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _encodings(corpus: HostileCorpus) -> None:
    lines = [
        b"caf\xe9 package library",  # Latin-1
        b"\xff\xfe p\x00a\x00c\x00k\x00",  # a UTF-16 BOM and NULs
        b"overlong \xc0\xaf slash and \xed\xa0\x80 surrogate package",  # invalid UTF-8 forms
        b"cut \xe2\x82 in the middle of a euro sign",
        b"the \x00 package \x00 with NUL bytes",
        "\ufeffBOM then the package".encode(),  # a BOM starting a later line: dropped too
        b"windows line ending package\r",
        b"a lone \r carriage return library",
    ]
    _write(corpus.root / "encodings.txt", "\ufeff".encode() + b"\n".join(lines) + b"\n")
    corpus.expect(corpus.root / "encodings.txt", [SUMMARY] * len(lines))  # a BOM on line 1


def _blanks(corpus: HostileCorpus) -> None:
    _write(corpus.root / "empty.txt", b"")  # no records at all
    _write(corpus.root / "newlines.txt", b"\n\n\r\n\n")
    corpus.expect(corpus.root / "newlines.txt", [BLANK] * 4)
    # Blank: nothing but spaces, tabs and a BOM. Other whitespace and invisible characters make
    # a record, with no text.
    lines = ["", *UNICODE_BLANKS, "the package", *INVISIBLE, " \t ", "\ufeff", "   "]
    path = _write(corpus.root / "blank.txt", "\n".join(lines).encode())  # no final newline
    corpus.expect(
        path,
        [
            SUMMARY if line == "the package" else BLANK if line.strip(" \t\ufeff") == "" else EMPTY
            for line in lines
        ],
    )


def _huge_lines(corpus: HostileCorpus, size: int) -> None:
    big = corpus.root / "huge-line.txt"
    _write_line(big, WORDS.encode(), size, b"the package after it")
    corpus.big_line = big
    corpus.expect(big, [SUMMARY, SUMMARY])
    # The same line in 50 KB of gzip (a small file that inflates to 50 MB), and a JSON record
    # far longer than a text line may be, read whole and cut.
    bomb = corpus.root / "bomb.txt.gz"
    _write_line(bomb, b"a", size, b"the package after the bomb")
    corpus.expect(bomb, [SUMMARY, SUMMARY])
    record = corpus.root / "huge-record.jsonl.gz"
    _write_line(record, WORDS.encode(), LONG_RECORD_BYTES,
                b'{"id": "after-huge", "text": "the package"}',
                head=b'{"id": "huge", "text": "', tail=b'"}')  # fmt: skip
    corpus.expect(record, [SUMMARY, SUMMARY], ["huge", "after-huge"])


def _write_line(
    path: Path, unit: bytes, size: int, next_line: bytes, *, head: bytes = b"", tail: bytes = b""
) -> None:
    """``head`` + ``unit`` repeated to ``size`` bytes + ``tail`` as one line, then
    ``next_line``; gzip-compressed when ``path`` ends in .gz. Written in chunks."""
    opener = gzip.open if path.suffix == ".gz" else open
    chunk = unit * ((1 << 20) // len(unit))
    with opener(path, "wb") as handle:
        handle.write(head)
        left = size
        while left > 0:
            handle.write(chunk[:left])
            left -= len(chunk)
        handle.write(tail + b"\n" + next_line + b"\n")


def _binary(corpus: HostileCorpus) -> None:
    """Random bytes read as lines: each line is summarized, or has nothing readable in it, or
    is blank (the empty lines among the noise)."""
    data = b"\x89PNG\r\n\x1a\n" + random.Random(7).randbytes(BINARY_BYTES)
    data = data.replace(b"\n", b"\n" * 3, 5)  # a few empty lines among the noise
    path = _write(corpus.root / "random.bin", data)
    lines = data.split(b"\n")
    lines = lines[:-1] if data.endswith(b"\n") else lines
    assert max(len(line) for line in lines) < MAX_LINE_BYTES  # no line is cut
    assert not any(line.startswith("\ufeff".encode()) for line in lines)  # nor starts with a BOM
    corpus.expect(path, [_blank_or_any(line) for line in lines])


def _blank_or_any(line: bytes) -> str:
    """A line of random bytes: blank when it holds nothing but spaces, tabs and carriage
    returns; else summarized, or a record with nothing readable in it."""
    return BLANK if not line.strip(b" \t\r") else f"{SUMMARY}|{EMPTY}"


def _compression(corpus: HostileCorpus) -> None:
    texts = make_texts(300, seed=41)
    for suffix, compress in (("gz", gzip.compress), ("bz2", bz2.compress)):
        whole = compress("".join(f"{t}\n" for t in texts).encode())
        cut = _write(corpus.root / f"truncated.txt.{suffix}", whole[: len(whole) // 2])
        kept = _lines_before_break(cut)
        source = safe_text(str(cut))
        corpus.expect(
            cut,
            [SUMMARY] * kept + [UNREADABLE],
            [f"{source}:{n}" for n in range(1, kept + 1)] + [f"{source}:{kept + 1}-"],
        )
    fake = _write(corpus.root / "not-really.txt.gz", b"plain text pretending to be gzip\n")
    corpus.expect(fake, [UNREADABLE], [f"{safe_text(str(fake))}:1-"])
    _write(corpus.root / "empty.txt.gz", b"")  # zero bytes: no records, no error
    fake_parquet = _write(corpus.root / "not-really.parquet", b"PAR1 but not parquet")
    corpus.expect(fake_parquet, [UNREADABLE], [f"{safe_text(str(fake_parquet))}:1-"])


def _lines_before_break(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else bz2.open
    count = 0
    try:
        with opener(path, "rb") as handle:
            for _ in handle:
                count += 1
    except EOFError:
        return count
    raise AssertionError(f"{path} is not truncated")


def _json(corpus: HostileCorpus) -> None:
    path = corpus.root / "hostile.jsonl"
    cases: list[tuple[str, str]] = [
        ('{"text": "the package"}', SUMMARY),
        ("{not json", MALFORMED),
        ('{"text": "trailing comma",}', MALFORMED),
        ("{'text': 'single quotes'}", MALFORMED),
        ('{"text": "unterminated', MALFORMED),
        ("", BLANK),
        ("   ", BLANK),
        ("\t\r", BLANK),
        ("\u00a0", MALFORMED),  # not JSON whitespace
        ('{"text": "two"} {"text": "objects"}', MALFORMED),
        ("[" * NESTING_DEPTH + "]" * NESTING_DEPTH, MALFORMED),
        ('{"":' * OBJECT_NESTING_DEPTH + "1" + "}" * OBJECT_NESTING_DEPTH, MALFORMED),
        ('{"text": ' + "[" * NESTING_DEPTH + "]" * NESTING_DEPTH + "}", MALFORMED),
        ('{"text": ' + "[" * 50 + '"deep"' + "]" * 50 + "}", WRONG_TYPE),
        ('"just a string"', NOT_OBJECT),
        ("null", NOT_OBJECT),
        ("42", NOT_OBJECT),
        ("[{}]", NOT_OBJECT),
        ("{}", MISSING),
        ('{"text": null}', MISSING),  # the field is there, but null
        ('{"Text": "wrong case"}', MISSING),
        ('{"text": 42}', WRONG_TYPE),
        ('{"text": 1e400}', WRONG_TYPE),
        ('{"text": NaN}', WRONG_TYPE),
        ('{"text": true}', WRONG_TYPE),
        ('{"text": ["a", "list"]}', WRONG_TYPE),
        ('{"text": {"nested": "object"}}', WRONG_TYPE),
        ('{"text": ""}', EMPTY),
        ('{"text": "\\u0000\\u0000"}', EMPTY),
        ('{"text": "\\t\\n\\r "}', EMPTY),
        ('{"text": "first", "text": "the package, duplicate key"}', SUMMARY),
        ('{"text": "escaped \\ud83d\\udce6 emoji and a lone \\udc00 surrogate"}', SUMMARY),
        ('{"text": "newline\\ninside the package\\u2028record"}', SUMMARY),
        ('\ufeff{"text": "a BOM before the object"}', SUMMARY),  # as concatenated files have
    ]
    lines = [line.encode() for line, _ in cases]
    lines.append(b'{"text": "invalid \xff\xfe UTF-8 inside a string package"}')
    outcomes = [outcome for _, outcome in cases] + [SUMMARY]
    _write(path, b"\n".join(lines) + b"\n")
    corpus.expect(path, outcomes)


def _ids(corpus: HostileCorpus) -> None:
    path = corpus.root / "ids.ndjson"
    source = safe_text(str(path))
    records = [
        ({"id": "dup", "text": "the package"}, "dup"),
        ({"id": "dup", "text": "the library"}, "dup"),  # a duplicate id is kept, not merged
        ({"id": 7, "text": "the package"}, "7"),
        ({"id": 12345678901234567890123, "text": "big"}, "12345678901234567890123"),
        ({"id": 1.5, "text": "float id"}, f"{source}:5"),
        ({"id": True, "text": "bool id"}, f"{source}:6"),
        ({"id": "", "text": "empty id"}, f"{source}:7"),
        ({"id": ["x"], "text": "list id"}, f"{source}:8"),
        ({"id": None, "text": "null id"}, f"{source}:9"),
        ({"id": "x\ud800y", "text": "lone surrogate in the id"}, "x?y"),
        ({"id": "גבחנ‏-rtl", "text": "right to left id"}, "גבחנ‏-rtl"),
        ({"id": "a/b:c\nd", "text": "separators in the id"}, "a/b:c\nd"),
        ({"id": "x" * 5000, "text": "a long id"}, "x" * 5000),
    ]
    data = "".join(json.dumps(r) + "\n" for r, _ in records).encode()
    _write(path, data)
    corpus.expect(path, [SUMMARY] * len(records), [i for _, i in records])


def _scripts(corpus: HostileCorpus) -> None:
    texts = [RTL, EMOJI, ZALGO, *SCRIPTS, "x" * (MAX_DOC_CHARS * 3)]
    path = corpus.root / "scripts.txt"
    path.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
    corpus.expect(path, [SUMMARY] * len(texts))
    path = corpus.root / "whole-document.jsonl"  # one JSON record holding many scripts
    whole = " ".join([RTL, EMOJI, ZALGO, *SCRIPTS])
    # Saved with a BOM on line 1 (as Windows editors do), and a blank line at the end.
    path.write_text(json.dumps({"id": "all-scripts", "text": whole}) + "\n\n", "utf-8-sig")
    corpus.expect(path, [SUMMARY, BLANK], ["all-scripts", f"{safe_text(str(path))}:2"])


def _parquet(corpus: HostileCorpus) -> None:
    path = corpus.root / "types.parquet"
    table = pa.table(
        {
            "id": pa.array(["p1", "p2", "p3", None]),
            "text": pa.array([b"bytes \xff package", b"the library", None, b""], pa.binary()),
        }
    )
    pq.write_table(table, path)
    source = safe_text(str(path))
    corpus.expect(path, [SUMMARY, SUMMARY, MISSING, EMPTY], ["p1", "p2", "p3", f"{source}:4"])
    path = corpus.root / "int-text.parquet"
    pq.write_table(pa.table({"text": pa.array([1, 2], pa.int64())}), path)
    corpus.expect(path, [WRONG_TYPE, WRONG_TYPE])
    whole = (corpus.root / "int-text.parquet").read_bytes()
    cut = _write(corpus.root / "cut.parquet", whole[: len(whole) // 2])
    corpus.expect(cut, [UNREADABLE], [f"{safe_text(str(cut))}:1-"])


def _file_names(corpus: HostileCorpus) -> None:
    odd = corpus.root / "spaces, ümlauts & [brackets] %41.txt"
    odd.write_text("the package\n", encoding="utf-8")
    corpus.expect(odd, [SUMMARY])
    raw = os.fsencode(corpus.root) + b"/latin1-\xe9-name.txt"  # a name that is not UTF-8
    with open(raw, "wb") as handle:
        handle.write(b"the package\n")
    corpus.expect(Path(os.fsdecode(raw)), [SUMMARY])
