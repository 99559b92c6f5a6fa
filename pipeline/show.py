"""Reading a run's output back for people: rows for ``s2s show`` and a one-line run summary."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.output import read_manifest
from pipeline.sinks import dead_letter_dir, output_files, summaries_dir
from s2s_model.bundled import model_name
from s2s_model.errors import S2SError


class OutputNotFound(S2SError):
    """The directory holds no output of ``s2s summarize``."""


# Columns ``s2s show --sort`` can order by (largest first) and the value that means "flagged".
SORTABLE = ("novel_words", "repeated_words", "score", "src_tokens", "summary_tokens")
ANY_FLAG = "any"
# Rows read at once while counting the flagged ones.
FLAG_SCAN_BATCH = 65_536


def read_rows(
    output: str,
    *,
    dead_letters: bool = False,
    limit: int = 10,
    columns: Sequence[str] = (),
    flag: str | None = None,
    sort: str | None = None,
) -> list[dict[str, Any]]:
    """The first ``limit`` rows (of ``columns``, all when empty) of a run's summaries or dead
    letters, reading no more of the files than that.

    ``flag`` keeps only summaries carrying that quality flag (``"any"``: any flag); ``sort``
    returns the ``limit`` rows with the largest values of that column (see ``SORTABLE``), which
    reads every row.
    """
    if sort is not None and sort not in SORTABLE:
        raise ValueError(f"sort={sort!r}: choose one of {SORTABLE}")
    directory = dead_letter_dir(output) if dead_letters else summaries_dir(output)
    files = output_files(directory)
    if not files:
        raise OutputNotFound(
            f"{directory} holds no Parquet files: is {output} the --output of s2s summarize?"
        )
    needed = [*columns, *(["flags"] if flag else []), *([sort] if sort else [])] if columns else []
    rows = (
        row for row in _rows(files, needed, max(limit, 1)) if flag is None or _flagged(row, flag)
    )
    if sort is not None:
        chosen = heapq.nlargest(limit, rows, key=lambda row: row.get(sort) or 0)
    else:
        chosen = [row for _, row in zip(range(limit), rows, strict=False)]
    return [{c: row.get(c) for c in columns} if columns else row for row in chosen]


def row_counts(output: str, *, dead_letters: bool = False, flag: str | None = None) -> RowCounts:
    """How many rows the run's summaries (or dead letters) hold, from the files' footers, and,
    with ``flag``, how many carry it (which reads the ``flags`` column of every row)."""
    directory = dead_letter_dir(output) if dead_letters else summaries_dir(output)
    files = output_files(directory)
    total = 0
    for path in files:
        with FileSystems.open(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    if flag is None:
        return RowCounts(total, total)
    matching = sum(_flagged(row, flag) for row in _rows(files, ["flags"], FLAG_SCAN_BATCH))
    return RowCounts(total, matching)


@dataclass(frozen=True)
class RowCounts:
    """Rows in all, and those that match the filter (all of them without one)."""

    total: int
    matching: int


def _rows(files: Sequence[str], columns: Sequence[str], batch_size: int) -> Iterator[dict]:
    """Every row of ``files`` (only ``columns`` the files hold; all when none), lazily."""
    for path in files:
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            wanted = list(dict.fromkeys(c for c in columns if c in parquet.schema_arrow.names))
            for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted or None):
                yield from batch.to_pylist()


def _flagged(row: dict[str, Any], flag: str) -> bool:
    flags = row.get("flags") or []
    return bool(flags) if flag == ANY_FLAG else flag in flags


def run_summary(output: str) -> str:
    """One line about the run in ``output``: its counts and model, or that it did not finish."""
    manifest = read_manifest(output)
    if manifest is None:
        return (
            f"{output}: no _SUCCESS.json, the run did not finish (or is still running);"
            " rows may be incomplete"
        )
    counts = manifest["counts"]
    return (
        f"{output}: {counts['read']:,} records, {counts['summarized']:,} summarized,"
        f" {counts['dead_lettered']:,} dead letters; {_model(manifest['model'])};"
        f" finished {manifest['finished_at']} on {manifest['runner']}"
    )


def _model(model: dict[str, Any]) -> str:
    """``model news (bundled, 0123abcd...)`` or ``model runs/m1/best (0123abcd...)``; older runs
    recorded the default bundled model as ``bundled``."""
    path, fingerprint = model.get("path"), model["fingerprint"]
    if path is None:
        return f"model {fingerprint}"
    if model.get("bundled") or path == "bundled":
        return f"model {model_name(None) if path == 'bundled' else path} (bundled, {fingerprint})"
    return f"model {path} ({fingerprint})"
