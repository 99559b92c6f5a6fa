"""WriteSummaries / WriteDeadLetters: Parquet, with the one schema of each defined here.

Layout of an output directory::

    <output>/summaries/part-SSSSS-of-NNNNN.parquet    one row per summarized document
    <output>/dead_letter/part-SSSSS-of-NNNNN.parquet  one row per record that was not
    <output>/_SUCCESS.json                            written last, by pipeline/output.py
    <output>/_temporary/<run id>/...                  a running job's files (see pipeline/output.py)

Beam writes each file under a temporary name and renames it when the bundle that wrote it has
committed, so a retried bundle leaves no duplicate rows. The job itself writes below
``_temporary/<run id>/``; pipeline/output.py moves the files into place only once the whole job has
succeeded, so a job that dies leaves nothing in ``summaries/`` or ``dead_letter/``. Readers
(pyarrow, Spark) skip names that start with ``_``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import WriteToParquetBatched
from apache_beam.transforms.window import GlobalWindows

from pipeline.dead_letters import DeadLetter, count_dead_letter

# Beam filesystem schemes of the local disk.
LOCAL_SCHEMES = (None, "", "file")
# The job's two outputs: the tags of their streams, and the folders they are written to.
SUMMARIES = "summaries"
DEAD_LETTER = "dead_letter"
SUCCESS_FILE = "_SUCCESS.json"
TEMPORARY_DIR = "_temporary"
FILE_PREFIX = "part"
FILE_SUFFIX = ".parquet"
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
# Bytes of rows buffered before they are written as one row group (Beam's default is 64 MiB).
ROW_GROUP_BYTES = 8 * 1024 * 1024
# Rows turned into Arrow columns at a time.
RECORD_BATCH_ROWS = 1024

N_BEST_TYPE = pa.list_(pa.struct([("summary", pa.string()), ("score", pa.float64())]))

SUMMARY_FIELDS = (
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("summary", pa.string(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("src_tokens", pa.int32(), nullable=False),
    pa.field("summary_tokens", pa.int32(), nullable=False),
    # Cut to --max_doc_chars while reading or to --max_src_tokens before the model.
    pa.field("truncated", pa.bool_(), nullable=False),
    # Bytes that were not UTF-8 were decoded as U+FFFD.
    pa.field("replaced_invalid_utf8", pa.bool_(), nullable=False),
    pa.field("model_id", pa.string(), nullable=False),
    # Quality signals (s2s_model.quality): share of summary words absent from the source,
    # content words said more than once, and flags among novel_word, repeat, truncated_source,
    # forced_end, out_of_domain (s2s_model.domain).
    pa.field("novel_words", pa.float32(), nullable=False),
    pa.field("repeated_words", pa.int32(), nullable=False),
    pa.field("flags", pa.list_(pa.string()), nullable=False),
    # sha256 of everything the row depends on but doc_id and source: what --reuse joins on
    # (see reuse.py).
    pa.field("reuse_key", pa.string(), nullable=False),
)

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ]
)


def summary_schema(*, with_n_best: bool) -> pa.Schema:
    """The summaries' schema; ``n_best`` (summary, score) lists only when n_best > 1."""
    fields = list(SUMMARY_FIELDS)
    if with_n_best:
        fields.append(pa.field("n_best", N_BEST_TYPE, nullable=False))
    return pa.schema(fields)


def summaries_dir(output: str) -> str:
    return FileSystems.join(output, SUMMARIES)


def dead_letter_dir(output: str) -> str:
    return FileSystems.join(output, DEAD_LETTER)


def success_path(output: str) -> str:
    return FileSystems.join(output, SUCCESS_FILE)


def temporary_dir(output: str) -> str:
    return FileSystems.join(output, TEMPORARY_DIR)


def attempt_dir(output: str, run_id: str) -> str:
    """Where the job of run ``run_id`` writes before its files are moved into ``output``."""
    return FileSystems.join(temporary_dir(output), run_id)


def output_files(directory: str) -> list[str]:
    """The finished Parquet files in ``directory`` (Beam's temporary files excluded)."""
    pattern = FileSystems.join(directory, f"{FILE_PREFIX}-*{FILE_SUFFIX}")
    # Beam's '*' stops at '/': files in Beam's temporary subdirectories do not match.
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def count_rows(paths: Iterable[str]) -> int:
    """Rows in Parquet files, from their footers alone."""
    total = 0
    for path in paths:
        with FileSystems.open(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def dead_letter_row(letter: DeadLetter) -> dict[str, Any]:
    """The Parquet row of a dead letter, counted by reason on the way."""
    count_dead_letter(letter.reason)
    return letter._asdict()


class RowsToTables(beam.DoFn):
    """Rows (dicts holding every column of ``schema``) -> Arrow tables of about
    ``row_group_bytes``, each written as one row group.

    What Beam's ``WriteToParquet`` does before its sink, with a row taken as one tuple
    (``itemgetter``) instead of column by column through the schema: that step cost a
    summarized document more than the rest of writing it (benchmarks/host_bench.py).
    """

    def __init__(self, schema: pa.Schema, row_group_bytes: int = ROW_GROUP_BYTES) -> None:
        self._schema = schema
        self._row_group_bytes = row_group_bytes
        self._columns = itemgetter(*schema.names)
        self._rows: list[tuple[Any, ...]] = []
        self._batches: list[pa.RecordBatch] = []
        self._bytes = 0

    def start_bundle(self) -> None:
        self._rows, self._batches, self._bytes = [], [], 0

    def process(self, row: dict[str, Any]) -> Iterator[pa.Table]:
        self._rows.append(self._columns(row))
        if len(self._rows) >= RECORD_BATCH_ROWS:
            self._to_batch()
            if self._bytes >= self._row_group_bytes:
                yield self._table()

    def finish_bundle(self) -> Iterator[Any]:
        if self._rows:
            self._to_batch()
        if self._batches:
            yield GlobalWindows.windowed_value_at_end_of_window(self._table())

    def _to_batch(self) -> None:
        if len(self._schema) == 1:  # itemgetter of one name gives the value, not a tuple
            columns: list[Any] = [self._rows]
        else:
            columns = list(zip(*self._rows, strict=True))
        arrays = [
            pa.array(values, type=field.type)
            for values, field in zip(columns, self._schema, strict=True)
        ]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self._schema)
        self._batches.append(batch)
        self._bytes += batch.nbytes
        self._rows = []

    def _table(self) -> pa.Table:
        table = pa.Table.from_batches(self._batches, schema=self._schema)
        self._batches, self._bytes = [], 0
        return table


class _WriteParquet(beam.PTransform):
    def __init__(self, directory: str, schema: pa.Schema, *, num_shards: int, codec: str) -> None:
        super().__init__()
        self._directory = directory
        self._schema = schema
        self._num_shards = num_shards
        self._codec = codec

    def expand(self, rows: beam.pvalue.PCollection) -> beam.pvalue.PCollection:
        return (
            rows
            | "ToTables" >> beam.ParDo(RowsToTables(self._schema))
            | "WriteParquet"
            >> WriteToParquetBatched(
                FileSystems.join(self._directory, FILE_PREFIX),
                self._schema,
                codec=self._codec,
                file_name_suffix=FILE_SUFFIX,
                num_shards=self._num_shards,
                shard_name_template=SHARD_TEMPLATE,
            )
        )


class WriteSummaries(_WriteParquet):
    """Summary rows (dicts matching ``summary_schema``) -> ``<output>/summaries/``."""

    def __init__(
        self, output: str, *, with_n_best: bool, num_shards: int = 0, codec: str = "zstd"
    ) -> None:
        super().__init__(
            summaries_dir(output),
            summary_schema(with_n_best=with_n_best),
            num_shards=num_shards,
            codec=codec,
        )


class WriteDeadLetters(beam.PTransform):
    """DeadLetters -> ``<output>/dead_letter/``."""

    def __init__(self, output: str, *, codec: str = "zstd") -> None:
        super().__init__()
        self._output = output
        self._codec = codec

    def expand(self, letters: beam.pvalue.PCollection) -> beam.pvalue.PCollection:
        return (
            letters
            | "ToRows" >> beam.Map(dead_letter_row)
            | "Write"
            >> _WriteParquet(
                dead_letter_dir(self._output),
                DEAD_LETTER_SCHEMA,
                num_shards=0,
                codec=self._codec,
            )
        )
