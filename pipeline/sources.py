"""ReadShards: text, lines, jsonl and Parquet shards -> Document(doc_id, source, text).

Every record read becomes exactly one element of one PCollection: a ``Document``, or a
``DeadLetter`` for a record that cannot become one. Dead letters travel in the same stream as
documents down to the sinks, because Beam's local FnApiRunner materializes every multi-input
``Flatten`` in memory: one stream (and no Flatten) keeps a million-line shard in bounded memory,
and makes "one output per record" hold by construction.

A shard that cannot be opened, or breaks part-way (a truncated ``.gz``), keeps the records read
before the break and adds one dead letter for the rest.

Long records are cut, not dropped: a text is cut to ``max_doc_chars`` characters and flagged
``cut`` (the ``truncated`` column), whatever the format. Memory stays bounded whatever the
shard:

- a line of a ``lines`` shard (and a ``file`` shard) is read to ``max_doc_chars`` x 4 bytes, the
  most UTF-8 needs for the text kept; the rest of a longer line is skipped unread into memory;
- a jsonl record must be parsed whole to find its text, so it is read whole up to a byte limit
  of its own, ``MAX_RECORD_BYTES`` (32 MiB; 4 x ``max_doc_chars`` where that is more, so raising
  ``--max_doc_chars`` never refuses a record it could read). A reader holds one record at a
  time, and at the peak its bytes, its decoded text and the parsed object: 3 to 9 x the
  record's size (Python stores text in 1, 2 or 4 bytes a character, after its widest one).
  Only a record past the limit is a dead letter (``malformed_json``, its detail naming the
  limit); the rest of its line is skipped a MiB at a time. A constant, not a flag: a 32 MiB
  line is no document but a dump or a missing newline, and a fixed figure is what workers
  are sized by;
- Parquet is read a batch of ``PARQUET_BATCH_ROWS`` rows at a time, each cell whole (pyarrow
  holds a column chunk at a time, so the file's row groups bound memory), and cut.

Blank lines (nothing but spaces, tabs and byte-order marks) of ``lines`` and jsonl shards are no
records: they are skipped and counted (the ``skipped_blank`` counter and manifest count), never
dead letters, and line numbers in ids still count them. A line holding anything else, even only
invisible characters, is a record. A UTF-8 byte-order mark that starts a line (line 1 of a file
saved with one, or of each file concatenated into a shard) is not text, and is dropped.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import logging
import posixpath
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple, cast

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics

from pipeline import dead_letters as dl
from pipeline.dead_letters import METRICS_NAMESPACE, DeadLetter, safe_text

logger = logging.getLogger(__name__)

UTF8_MAX_BYTES_PER_CHAR = 4
MAX_RECORD_BYTES = 32 * 1024 * 1024  # the longest jsonl record parsed; see the docstring
SKIP_CHUNK_BYTES = 1024 * 1024  # the rest of an over-long line is skipped this much at a time
PARQUET_BATCH_ROWS = 1024
UTF8_BOM = "\ufeff"
# A blank line: leading byte-order marks, then only spaces, tabs and carriage returns (JSON's
# whitespace within a line). Matched in place: a long line that is not blank costs no copy.
_BLANK_LINE = re.compile(rb"(?:\xef\xbb\xbf)*[ \t\r]*")
SKIPPED_BLANK_COUNTER = "skipped_blank"
_DECOMPRESSORS: dict[str, Callable[[BinaryIO], BinaryIO]] = {
    ".gz": lambda raw: cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb")),
    ".bz2": lambda raw: cast(BinaryIO, bz2.BZ2File(raw, mode="rb")),
}
_FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class Document(NamedTuple):
    """One document to summarize. ``cut``: shortened to ``max_doc_chars`` while reading;
    ``replaced``: bytes that were not UTF-8 were decoded as U+FFFD."""

    doc_id: str
    source: str
    text: str
    cut: bool = False
    replaced: bool = False


Record = Document | DeadLetter  # what every step up to the sinks carries, one per record read


class BlankLine(NamedTuple):
    """A blank line of a shard: no record; the readers yield it only to have it counted."""

    source: str
    line: int


@dataclass(frozen=True)
class ReadSettings:
    """How shards are parsed; small and picklable, it travels to the workers."""

    input_format: str = "auto"
    text_field: str = "text"
    id_field: str | None = None
    max_doc_chars: int = 100_000
    max_record_bytes: int = MAX_RECORD_BYTES

    @property
    def max_line_bytes(self) -> int:
        """The most of a text line that is read: enough UTF-8 for ``max_doc_chars``."""
        return self.max_doc_chars * UTF8_MAX_BYTES_PER_CHAR

    @property
    def record_limit(self) -> int:
        """The longest jsonl record (in bytes) that is parsed; a longer one is a dead letter."""
        return max(self.max_record_bytes, self.max_line_bytes)


def shard_format(path: str, input_format: str) -> str:
    """The format of ``path``: ``input_format`` itself unless it is 'auto'."""
    if input_format != "auto":
        return input_format
    stem, ext = posixpath.splitext(path.lower())
    if ext in _DECOMPRESSORS:
        ext = posixpath.splitext(stem)[1]
    return _FORMAT_BY_EXTENSION.get(ext, "lines")


@contextlib.contextmanager
def open_shard(path: str) -> Iterator[BinaryIO]:
    """A binary stream of ``path`` on any Beam filesystem, decompressed by extension."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(
            FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        )
        ext = posixpath.splitext(path.lower())[1]
        decompressor = _DECOMPRESSORS.get(ext)
        yield stack.enter_context(decompressor(raw)) if decompressor else raw


def decode_text(data: bytes, *, cut: bool = False) -> tuple[str, bool]:
    """UTF-8 text of ``data`` and whether undecodable bytes were replaced.

    ``cut``: ``data`` was cut at a byte limit, so a character split at its end is dropped
    rather than counted as a bad byte.
    """
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError as err:
        if cut and err.reason == "unexpected end of data":
            return decode_text(data[: err.start])
        return data.decode("utf-8", "replace"), True


def bounded_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[bytes, bool]]:
    """(line without its newline, was it longer than ``limit`` bytes) for each line.

    Never holds more than ``limit`` bytes of one line: the rest of a longer line is skipped,
    ``SKIP_CHUNK_BYTES`` at a time.
    """
    while True:
        line = stream.readline(limit)
        if not line:
            return
        cut = False
        if line.endswith(b"\n"):
            line = line.rstrip(b"\r\n")  # rebound: only the stripped copy stays alive
        elif len(line) < limit:
            line = line.rstrip(b"\r")  # the last line, without a newline
        else:
            cut = _skip_rest_of_line(stream, min(limit, SKIP_CHUNK_BYTES))
        yield line, cut


def is_blank_line(line: bytes) -> bool:
    """Nothing but byte-order marks, spaces, tabs and carriage returns (or nothing at all)."""
    return _BLANK_LINE.fullmatch(line) is not None


def _skip_rest_of_line(stream: BinaryIO, chunk: int) -> bool:
    skipped = False
    while True:
        rest = stream.readline(chunk)
        if rest in (b"", b"\n", b"\r\n"):
            return skipped
        skipped = True
        if rest.endswith(b"\n"):
            return skipped


def _cut(text: str, settings: ReadSettings) -> tuple[str, bool]:
    if len(text) > settings.max_doc_chars:
        return text[: settings.max_doc_chars], True
    return text, False


def _text_document(
    doc_id: str, path: str, data: bytes, cut: bool, settings: ReadSettings
) -> Document:
    text, replaced = decode_text(data, cut=cut)
    text, shortened = _cut(text.lstrip(UTF8_BOM), settings)
    return Document(doc_id, path, text, cut or shortened, replaced)


def read_lines(stream: BinaryIO, path: str, settings: ReadSettings) -> Iterator[Record | BlankLine]:
    """A document per line that is not blank, id ``<shard>:<line>`` (1-based)."""
    for number, (line, cut) in enumerate(bounded_lines(stream, settings.max_line_bytes), 1):
        if not cut and is_blank_line(line):
            yield BlankLine(path, number)
        else:
            yield _text_document(f"{path}:{number}", path, line, cut, settings)


def read_file(stream: BinaryIO, path: str, settings: ReadSettings) -> Iterator[Record | BlankLine]:
    """The whole shard as one document, id ``<shard>``."""
    data = stream.read(settings.max_line_bytes)
    cut = bool(stream.read(1))
    yield _text_document(path, path, data, cut, settings)


def read_jsonl(stream: BinaryIO, path: str, settings: ReadSettings) -> Iterator[Record | BlankLine]:
    """A JSON object per line that is not blank; text from ``text_field``, id from
    ``id_field``. A record is read whole up to ``settings.record_limit`` bytes."""
    for number, (line, cut) in enumerate(bounded_lines(stream, settings.record_limit), 1):
        if not cut and is_blank_line(line):
            yield BlankLine(path, number)
        else:
            yield _json_record(line, cut, f"{path}:{number}", path, settings)


def _json_record(
    line: bytes, cut: bool, fallback_id: str, path: str, settings: ReadSettings
) -> Record:
    """One jsonl line as a record. The decoded text and the parsed object live only here: what
    leaves is the document, cut to ``max_doc_chars``."""
    if cut:
        return dl.dead_letter(fallback_id, path, dl.MALFORMED_JSON, _too_long(settings), line)
    text, replaced = decode_text(line)
    try:
        record = json.loads(text.lstrip(UTF8_BOM))
    except (ValueError, RecursionError) as err:
        detail = f"{type(err).__name__}: {err}"
        return dl.dead_letter(fallback_id, path, dl.MALFORMED_JSON, detail, line)
    return _record_document(record, fallback_id, path, replaced, line, settings)


def _too_long(settings: ReadSettings) -> str:
    limit = settings.record_limit
    return (
        f"record longer than {limit:,} bytes, the most one jsonl record may hold"
        " (pipeline.sources.MAX_RECORD_BYTES, or 4 x --max_doc_chars where that is more): not"
        f" parsed; split the record, or raise --max_doc_chars above"
        f" {limit // UTF8_MAX_BYTES_PER_CHAR:,} to read it"
    )


def read_parquet(
    stream: BinaryIO, path: str, settings: ReadSettings
) -> Iterator[Record | BlankLine]:
    """A document per row; text from ``text_field``, id from ``id_field``."""
    import pyarrow.parquet as pq  # heavy; only workers reading Parquet pay for it

    parquet = pq.ParquetFile(stream)
    names = set(parquet.schema_arrow.names)
    if settings.text_field not in names:
        detail = f"shard has no column {settings.text_field!r} (columns: {sorted(names)})"
        for number in range(1, parquet.metadata.num_rows + 1):
            yield dl.dead_letter(f"{path}:{number}", path, dl.MISSING_FIELD, detail, "")
        return
    columns = [settings.text_field]
    if settings.id_field and settings.id_field in names:
        columns.append(settings.id_field)
    number = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        for record in batch.to_pylist():
            number += 1
            yield _record_document(record, f"{path}:{number}", path, False, record, settings)


def _record_document(
    record: Any, fallback_id: str, path: str, replaced: bool, raw: Any, settings: ReadSettings
) -> Document | DeadLetter:
    if not isinstance(record, dict):
        detail = f"expected a JSON object, got {type(record).__name__}"
        return dl.dead_letter(fallback_id, path, dl.NOT_AN_OBJECT, detail, raw)
    doc_id = _record_id(record, fallback_id, settings)
    if settings.text_field not in record:
        detail = f"no field {settings.text_field!r} (fields: {sorted(record)[:20]})"
        return dl.dead_letter(doc_id, path, dl.MISSING_FIELD, detail, raw)
    value = record[settings.text_field]
    if value is None:
        detail = f"field {settings.text_field!r} is null: there is no text to summarize"
        return dl.dead_letter(doc_id, path, dl.MISSING_FIELD, detail, raw)
    if isinstance(value, bytes):
        value, replaced = decode_text(value)
    if not isinstance(value, str):
        detail = f"field {settings.text_field!r} is {type(value).__name__}, not a string"
        return dl.dead_letter(doc_id, path, dl.WRONG_FIELD_TYPE, detail, raw)
    text, cut = _cut(value, settings)  # first: the rest of a long text is never copied
    clean = safe_text(text)
    return Document(doc_id, path, clean, cut, replaced or clean != text)


def _record_id(record: dict[str, Any], fallback_id: str, settings: ReadSettings) -> str:
    if not settings.id_field:
        return fallback_id
    value = record.get(settings.id_field)
    if isinstance(value, str) and value:
        return safe_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return fallback_id


_READERS = {"lines": read_lines, "file": read_file, "jsonl": read_jsonl, "parquet": read_parquet}


def portable_path(path: str) -> str | bytes:
    """``path`` as Beam can encode it. Beam's coders write ``str`` as UTF-8, and a local file
    name that is not UTF-8 reaches Python with surrogate escapes (PEP 383), which would fail
    the whole job: such a path travels as its bytes instead."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape")
    return path


def from_portable_path(shard: str | bytes) -> str:
    return shard.decode("utf-8", "surrogateescape") if isinstance(shard, bytes) else shard


class _ReadShardFn(beam.DoFn):
    """Path -> its records, as Documents and DeadLetters."""

    def __init__(self, settings: ReadSettings) -> None:
        self._settings = settings
        self._records = Metrics.counter(METRICS_NAMESPACE, "records_read")
        self._shards = Metrics.counter(METRICS_NAMESPACE, "shards_read")
        self._blank = Metrics.counter(METRICS_NAMESPACE, SKIPPED_BLANK_COUNTER)

    def process(self, shard: str | bytes) -> Iterator[Record]:
        self._shards.inc()
        path = from_portable_path(shard)
        label = safe_text(path)  # what ids and the source column say: always valid UTF-8
        reader = _READERS[shard_format(path, self._settings.input_format)]
        records = blank = 0
        try:
            with open_shard(path) as stream:
                for output in reader(stream, label, self._settings):
                    if isinstance(output, BlankLine):
                        blank += 1
                        self._blank.inc()
                        continue
                    records += 1
                    self._records.inc()
                    yield output
        except Exception as err:  # any way a shard can break: OSError, EOFError, ArrowInvalid
            logger.warning("shard %s broke after %d records: %s", label, records, err)
            self._records.inc()
            yield dl.dead_letter(
                f"{label}:{records + blank + 1}-",  # the first line (or row) lost
                label,
                dl.UNREADABLE_SHARD,
                f"{type(err).__name__}: {err} (after {records} records; the rest of the shard"
                " is lost)",
                "",
            )


class ReadShards(beam.PTransform):
    """Globs -> one Document or DeadLetter per record.

    Shards are matched, de-duplicated (two globs may match one file) and reshuffled, so that
    each worker reads whole shards and shards spread over the workers.
    """

    def __init__(self, patterns: Sequence[str], settings: ReadSettings | None = None) -> None:
        super().__init__()
        self._patterns = list(patterns)
        self._settings = settings or ReadSettings()

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.PCollection:
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "MatchShards" >> fileio.MatchAll()
            | "ShardPaths" >> beam.Map(lambda metadata: portable_path(metadata.path))
            | "DistinctShards" >> beam.Distinct()
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadRecords" >> beam.ParDo(_ReadShardFn(self._settings))
        )


__all__ = ["BlankLine", "DeadLetter", "Document", "ReadSettings", "ReadShards", "Record"]
