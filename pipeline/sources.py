"""ReadShards: text, lines, jsonl and Parquet shards -> Document(doc_id, source, text).

Every record read becomes exactly one element of one PCollection: a ``Document``, or a
``DeadLetter`` for a record that cannot become one. Dead letters travel in the same stream as
documents down to the sinks, because Beam's local FnApiRunner materializes every multi-input
``Flatten`` in memory: one stream (and no Flatten) keeps a million-line shard in bounded memory,
and makes "one output per record" hold by construction.

A shard that cannot be opened, or breaks part-way (a truncated ``.gz``), keeps the records read
before the break and adds one dead letter for the rest. Memory stays bounded whatever the shard:
lines are read with a byte limit (``max_doc_chars`` x 4, the most UTF-8 needs), Parquet a row
batch at a time.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import logging
import posixpath
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
PARQUET_BATCH_ROWS = 1024
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


@dataclass(frozen=True)
class ReadSettings:
    """How shards are parsed; small and picklable, it travels to the workers."""

    input_format: str = "auto"
    text_field: str = "text"
    id_field: str | None = None
    max_doc_chars: int = 100_000

    @property
    def max_line_bytes(self) -> int:
        return self.max_doc_chars * UTF8_MAX_BYTES_PER_CHAR


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

    Never holds more than ``limit`` bytes of one line: the rest of a longer line is skipped.
    """
    while True:
        line = stream.readline(limit)
        if not line:
            return
        if line.endswith(b"\n"):
            yield line.rstrip(b"\r\n"), False
        elif len(line) < limit:
            yield line.rstrip(b"\r"), False  # the last line, without a newline
        else:
            yield line, _skip_rest_of_line(stream, limit)


def _skip_rest_of_line(stream: BinaryIO, limit: int) -> bool:
    skipped = False
    while True:
        rest = stream.readline(limit)
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
    text, shortened = _cut(text.lstrip("\ufeff"), settings)
    return Document(doc_id, path, text, cut or shortened, replaced)


def read_lines(stream: BinaryIO, path: str, settings: ReadSettings) -> Iterator[Record]:
    """A document per line, id ``<shard>:<line>`` (1-based)."""
    for number, (line, cut) in enumerate(bounded_lines(stream, settings.max_line_bytes), 1):
        yield _text_document(f"{path}:{number}", path, line, cut, settings)


def read_file(stream: BinaryIO, path: str, settings: ReadSettings) -> Iterator[Record]:
    """The whole shard as one document, id ``<shard>``."""
    data = stream.read(settings.max_line_bytes)
    cut = bool(stream.read(1))
    yield _text_document(path, path, data, cut, settings)


def read_jsonl(stream: BinaryIO, path: str, settings: ReadSettings) -> Iterator[Record]:
    """A JSON object per line; text from ``text_field``, id from ``id_field``."""
    for number, (line, cut) in enumerate(bounded_lines(stream, settings.max_line_bytes), 1):
        fallback_id = f"{path}:{number}"
        if cut:
            detail = (
                f"line longer than {settings.max_line_bytes} bytes (4 x --max_doc_chars):"
                " raise --max_doc_chars to read it"
            )
            yield dl.dead_letter(fallback_id, path, dl.MALFORMED_JSON, detail, line)
            continue
        text, replaced = decode_text(line)
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as err:
            yield dl.dead_letter(
                fallback_id, path, dl.MALFORMED_JSON, f"{type(err).__name__}: {err}", line
            )
            continue
        yield _record_document(record, fallback_id, path, replaced, line, settings)


def read_parquet(stream: BinaryIO, path: str, settings: ReadSettings) -> Iterator[Record]:
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
    value = record.get(settings.text_field)
    if value is None:
        detail = f"no field {settings.text_field!r} (fields: {sorted(record)[:20]})"
        return dl.dead_letter(doc_id, path, dl.MISSING_FIELD, detail, raw)
    if isinstance(value, bytes):
        value, replaced = decode_text(value)
    if not isinstance(value, str):
        detail = f"field {settings.text_field!r} is {type(value).__name__}, not a string"
        return dl.dead_letter(doc_id, path, dl.WRONG_FIELD_TYPE, detail, raw)
    clean = safe_text(value)
    text, cut = _cut(clean, settings)
    return Document(doc_id, path, text, cut, replaced or clean != value)


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

    def process(self, shard: str | bytes) -> Iterator[Record]:
        self._shards.inc()
        path = from_portable_path(shard)
        label = safe_text(path)  # what ids and the source column say: always valid UTF-8
        reader = _READERS[shard_format(path, self._settings.input_format)]
        records = 0
        try:
            with open_shard(path) as stream:
                for output in reader(stream, label, self._settings):
                    records += 1
                    self._records.inc()
                    yield output
        except Exception as err:  # any way a shard can break: OSError, EOFError, ArrowInvalid
            logger.warning("shard %s broke after %d records: %s", label, records, err)
            self._records.inc()
            yield dl.dead_letter(
                f"{label}:{records + 1}-",
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


__all__ = ["DeadLetter", "Document", "ReadSettings", "ReadShards", "Record"]
