"""The output commit protocol: a job writes below ``<output>/_temporary/<run id>/``; its rows are
counted and checked, then moved into ``summaries/`` and ``dead_letter/``, and ``_SUCCESS.json`` is
written last. A run that fails anywhere leaves no ``_SUCCESS.json``, so no reader ever mixes
two runs or trusts half of one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.runner import PipelineResult

from pipeline.dead_letters import METRICS_NAMESPACE, REASONS, REUSED_COUNTER
from pipeline.sinks import (
    DEAD_LETTER,
    LOCAL_SCHEMES,
    SUMMARIES,
    count_rows,
    dead_letter_dir,
    output_files,
    success_path,
    summaries_dir,
    temporary_dir,
)
from pipeline.sources import SKIPPED_BLANK_COUNTER
from s2s_model.errors import S2SError, one_line

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 2  # 2: summary rows carry reuse_key; counts hold reused and decoded


class RunFailed(S2SError):
    """The job ran but its output must not be trusted; no _SUCCESS.json was written."""


def _remove_tree(directory: str) -> None:
    """Delete ``directory`` and everything below it, if it exists.

    Local: the directory itself, even empty (Beam deletes a path without '/' recursively, and
    reads a path ending in '/' as the glob 'dir/*', which fails on an empty directory).
    Object stores: every object under the prefix ('dir/'; the directory is no object)."""
    if FileSystems.get_scheme(directory) in LOCAL_SCHEMES:
        if FileSystems.exists(directory):
            FileSystems.delete([directory.rstrip("/")])
    elif FileSystems.match([FileSystems.join(directory, "**")])[0].metadata_list:
        FileSystems.delete([directory.rstrip("/") + "/"])


def clear_output(output: str) -> None:
    """Remove _SUCCESS.json (first), then every summary and dead-letter file of earlier runs,
    and what unfinished runs left in ``_temporary/``."""
    marker = success_path(output)
    if FileSystems.exists(marker):
        FileSystems.delete([marker])
    _remove_tree(summaries_dir(output))
    _remove_tree(dead_letter_dir(output))
    _remove_tree(temporary_dir(output))


def discard_attempt(output: str, attempt: str) -> None:
    """Best effort: remove a failed job's files (the next run clears what this cannot)."""
    try:
        _remove_tree(attempt)
        _remove_tree(temporary_dir(output))
    except Exception as err:  # a failed cleanup must not hide why the job failed
        logger.warning("could not remove %s: %s", attempt, one_line(err))


def promote(attempt: str, output: str) -> None:
    """Move the finished job's Parquet files from ``attempt`` into ``output``'s directories."""
    for directory in (SUMMARIES, DEAD_LETTER):
        sources = output_files(FileSystems.join(attempt, directory))
        if not sources:
            continue
        target = FileSystems.join(output, directory)
        if not FileSystems.exists(target):
            FileSystems.mkdirs(target)  # local filesystems need it; object stores ignore it
        names = [FileSystems.split(path)[1] for path in sources]
        FileSystems.rename(sources, [FileSystems.join(target, name) for name in names])
    _remove_tree(temporary_dir(output))


def counter_totals(result: PipelineResult) -> dict[str, int] | None:
    """The job's counters in our namespace (committed where the runner has them), or None
    where the runner reports no metrics."""
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception as err:  # runners without metrics support raise various errors
        logger.warning("the runner reports no metrics (%s): counts come from the files", err)
        return None
    totals: dict[str, int] = {}
    for counter in counters["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


def _relative(paths: Sequence[str], output: str) -> list[str]:
    prefix = output.rstrip("/") + "/"
    return [p[len(prefix) :] if p.startswith(prefix) else p for p in paths]


def account(output: str, counters: dict[str, int] | None) -> dict[str, Any]:
    """Counts from the Parquet footers, checked against the job's records_read counter.

    ``read`` counts records, and every record is one summary row or one dead-letter row: ``read
    == summarized + dead_lettered``. ``skipped_blank`` counts the blank lines of lines and jsonl
    shards, which are no records: apart from ``read``, never in the dead-letter fraction (None
    where the runner reports no metrics: the files do not hold them).

    ``output`` is where the job wrote (a run's attempt directory); file names are relative to
    it, which is where they are once promoted."""
    summary_files = output_files(summaries_dir(output))
    dead_files = output_files(dead_letter_dir(output))
    summarized = count_rows(summary_files)
    dead_lettered = count_rows(dead_files)
    read = summarized + dead_lettered
    if counters is not None and "records_read" in counters:
        read = counters["records_read"]
        if read != summarized + dead_lettered:
            raise RunFailed(
                f"accounting mismatch: {read} records read but {summarized} summaries +"
                f" {dead_lettered} dead letters written to {output} (kept there to diagnose)"
            )
    by_reason = {r: counters.get(f"dead_letters_{r}", 0) for r in REASONS} if counters else {}
    padded = (counters or {}).get("padded_source_tokens_attended", 0)
    attended = (counters or {}).get("source_tokens_attended", 0)
    return {
        "counters": dict(sorted((counters or {}).items())),
        "padding_efficiency": round(attended / padded, 4) if padded else None,
        "counts": {
            "read": read,
            "summarized": summarized,
            "dead_lettered": dead_lettered,
            **reuse_counts(summarized, counters),
            "skipped_blank": None if counters is None else counters.get(SKIPPED_BLANK_COUNTER, 0),
        },
        "dead_letters_by_reason": {r: n for r, n in by_reason.items() if n},
        "files": {
            "summaries": _relative(summary_files, output),
            "dead_letter": _relative(dead_files, output),
        },
    }


def reuse_counts(summarized: int, counters: dict[str, int] | None) -> dict[str, int | None]:
    """``reused`` (rows carried over by --reuse) and ``decoded`` (rows decoded): None where the
    runner reports no metrics."""
    if counters is None:
        return {"reused": None, "decoded": None}
    reused = counters.get(REUSED_COUNTER, 0)
    return {"reused": reused, "decoded": summarized - reused}


def check_dead_letters(accounting: dict[str, Any], limit: float, output: str) -> None:
    counts = accounting["counts"]
    if not counts["read"]:
        logger.warning("the input held no records")
        return
    fraction = counts["dead_lettered"] / counts["read"]
    if fraction > limit:
        raise RunFailed(
            f"{counts['dead_lettered']} of {counts['read']} records ({fraction:.1%}) became dead"
            f" letters, above --max_dead_letter_fraction={limit}: see"
            f" {dead_letter_dir(output)}/ for the reasons"
        )


def write_manifest(output: str, manifest: dict[str, Any]) -> None:
    """Write _SUCCESS.json under a temporary name, then rename it into place."""
    final = success_path(output)
    temporary = final + ".tmp"
    with FileSystems.create(temporary, mime_type="application/json") as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
    FileSystems.rename([temporary], [final])


def read_manifest(output: str) -> dict[str, Any] | None:
    """The manifest of a finished run in ``output``, or None."""
    path = success_path(output)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        manifest: dict[str, Any] = json.loads(handle.read().decode("utf-8"))
    return manifest
