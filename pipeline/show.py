"""Reading a run's output back for people: rows for ``s2s show`` and a one-line run summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.output import read_manifest
from pipeline.sinks import dead_letter_dir, output_files, summaries_dir
from s2s_model.errors import S2SError


class OutputNotFound(S2SError):
    """The directory holds no output of ``s2s summarize``."""


def read_rows(
    output: str, *, dead_letters: bool = False, limit: int = 10, columns: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The first ``limit`` rows (of ``columns``, all when empty) of a run's summaries or dead
    letters, reading no more of the files than that."""
    directory = dead_letter_dir(output) if dead_letters else summaries_dir(output)
    files = output_files(directory)
    if not files:
        raise OutputNotFound(
            f"{directory} holds no Parquet files: is {output} the --output of s2s summarize?"
        )
    rows: list[dict[str, Any]] = []
    for path in files:
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            wanted = [c for c in columns if c in parquet.schema_arrow.names] or None
            for batch in parquet.iter_batches(batch_size=max(limit, 1), columns=wanted):
                rows += batch.to_pylist()[: limit - len(rows)]
                if len(rows) >= limit:
                    return rows
    return rows


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
        f" {counts['dead_lettered']:,} dead letters; model {manifest['model']['fingerprint']};"
        f" finished {manifest['finished_at']} on {manifest['runner']}"
    )
