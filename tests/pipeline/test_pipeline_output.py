"""The commit protocol: counts from the files checked against the job's counters, the
dead-letter limit, files moved into place, the manifest written last; on a local disk and on an
object store (``memfs://``)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline

from pipeline.output import (
    RunFailed,
    account,
    check_dead_letters,
    clear_output,
    counter_totals,
    promote,
    read_manifest,
    write_manifest,
)
from tests import memory_filesystem as memfs


@pytest.fixture
def memory_store() -> Iterator[str]:
    memfs.reset()
    yield "memfs://bucket/out"
    memfs.reset()


def put_parquet(path: str, rows: int) -> None:
    """A Parquet file of ``rows`` rows at ``path`` (any Beam filesystem)."""
    buffer = io.BytesIO()
    pq.write_table(pa.table({"doc_id": [f"d{i}" for i in range(rows)]}), buffer)
    parent = FileSystems.split(path)[0]
    if not FileSystems.exists(parent):
        FileSystems.mkdirs(parent)
    with FileSystems.create(path) as handle:
        handle.write(buffer.getvalue())


def job_files(attempt: str, *, summaries: tuple[int, ...], dead: tuple[int, ...]) -> None:
    """What a finished job leaves in its attempt directory: part files of these row counts."""
    for directory, counts in (("summaries", summaries), ("dead_letter", dead)):
        for i, rows in enumerate(counts):
            put_parquet(f"{attempt}/{directory}/part-{i:05d}-of-{len(counts):05d}.parquet", rows)


def exists(path: str) -> bool:
    return bool(FileSystems.exists(path))


def test_counts_come_from_the_files_and_agree_with_the_counters(tmp_path: Path) -> None:
    attempt = str(tmp_path / "attempt")
    job_files(attempt, summaries=(3, 4), dead=(2,))
    counters = {
        "records_read": 9,
        "documents_reused": 5,
        "dead_letters_malformed_json": 2,
        "source_tokens_attended": 30,
        "padded_source_tokens_attended": 40,
    }
    accounting = account(attempt, counters)
    counts = accounting["counts"]
    assert (counts["read"], counts["summarized"], counts["dead_lettered"]) == (9, 7, 2)
    assert (counts["reused"], counts["decoded"]) == (5, 2)
    assert accounting["dead_letters_by_reason"] == {"malformed_json": 2}
    assert accounting["padding_efficiency"] == 0.75
    assert accounting["files"] == {
        "summaries": [
            "summaries/part-00000-of-00002.parquet",
            "summaries/part-00001-of-00002.parquet",
        ],
        "dead_letter": ["dead_letter/part-00000-of-00001.parquet"],
    }
    assert accounting["counters"] == dict(sorted(counters.items()))


def test_a_record_read_but_never_written_fails_the_run(tmp_path: Path) -> None:
    attempt = str(tmp_path / "attempt")
    job_files(attempt, summaries=(3,), dead=(1,))
    with pytest.raises(RunFailed, match=r"10 records read but 3 summaries \+ 1 dead letters"):
        account(attempt, {"records_read": 10})


def test_without_metrics_the_files_are_the_counts(tmp_path: Path) -> None:
    attempt = str(tmp_path / "attempt")
    job_files(attempt, summaries=(2,), dead=())
    accounting = account(attempt, None)
    counts = accounting["counts"]
    assert (counts["read"], counts["summarized"], counts["dead_lettered"]) == (2, 2, 0)
    assert (counts["reused"], counts["decoded"]) == (None, None)  # counters, which are missing
    assert accounting["padding_efficiency"] is None
    assert accounting["dead_letters_by_reason"] == {}


def accounting_of(read: int, dead: int) -> dict[str, dict[str, int]]:
    return {"counts": {"read": read, "dead_lettered": dead}}


def test_too_many_dead_letters_fail_the_run_with_the_flag_to_change() -> None:
    check_dead_letters(accounting_of(10, 1), 0.1, "out")  # at the limit: fine
    with pytest.raises(RunFailed) as failed:
        check_dead_letters(accounting_of(10, 2), 0.1, "out")
    message = str(failed.value)
    assert "2 of 10 records (20.0%)" in message
    assert "--max_dead_letter_fraction=0.1" in message
    assert "out/dead_letter/" in message


def test_an_empty_input_is_no_failure_but_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.output"):
        check_dead_letters(accounting_of(0, 0), 0.0, "out")
    assert "held no records" in caplog.text


@pytest.mark.parametrize("store", ["local", "object"])
def test_promote_moves_the_part_files_into_place_and_clears_the_attempts(
    store: str, tmp_path: Path, memory_store: str
) -> None:
    output = str(tmp_path / "out") if store == "local" else memory_store
    attempt = f"{output}/_temporary/run-1"
    job_files(attempt, summaries=(2, 1), dead=(1,))
    put_parquet(f"{attempt}/summaries/beam-temp-x/part-00009-of-00010.parquet", 5)  # unfinished
    promote(attempt, output)
    assert exists(f"{output}/summaries/part-00000-of-00002.parquet")
    assert exists(f"{output}/summaries/part-00001-of-00002.parquet")
    assert exists(f"{output}/dead_letter/part-00000-of-00001.parquet")
    assert not exists(f"{output}/summaries/part-00009-of-00010.parquet")
    assert not FileSystems.match([f"{output}/_temporary/**"])[0].metadata_list
    assert account(output, None)["counts"]["summarized"] == 3


@pytest.mark.parametrize("store", ["local", "object"])
def test_clearing_removes_the_marker_and_every_file_of_earlier_runs(
    store: str, tmp_path: Path, memory_store: str
) -> None:
    output = str(tmp_path / "out") if store == "local" else memory_store
    job_files(output, summaries=(1,), dead=(1,))
    put_parquet(f"{output}/_temporary/run-0/summaries/part-00000-of-00001.parquet", 1)
    write_manifest(output, {"counts": {}})
    put_parquet(f"{output}/notes/mine.parquet", 1)  # not ours: left alone
    clear_output(output)
    assert read_manifest(output) is None
    for directory in ("summaries", "dead_letter", "_temporary"):
        assert not FileSystems.match([f"{output}/{directory}/**"])[0].metadata_list
    assert exists(f"{output}/notes/mine.parquet")
    clear_output(output)  # nothing left to clear: no error


def test_the_manifest_is_renamed_into_place(tmp_path: Path) -> None:
    output = str(tmp_path)
    assert read_manifest(output) is None
    manifest = {"counts": {"read": 3}, "runner": "DirectRunner"}
    write_manifest(output, manifest)
    assert read_manifest(output) == manifest
    assert [p.name for p in tmp_path.iterdir()] == ["_SUCCESS.json"]  # no temporary left
    assert json.loads((tmp_path / "_SUCCESS.json").read_text(encoding="utf-8")) == manifest


def test_counter_totals_read_our_namespace_only() -> None:
    def count(element: int) -> int:
        Metrics.counter("s2s", "records_read").inc()
        Metrics.counter("s2s", "dead_letters").inc(element % 2)
        Metrics.counter("elsewhere", "records_read").inc(100)
        return element

    pipeline = BeamPipeline()
    _ = pipeline | beam.Create([1, 2, 3]) | beam.Map(count)
    result = pipeline.run()
    result.wait_until_finish()
    assert counter_totals(result) == {"records_read": 3, "dead_letters": 2}


def test_a_runner_without_metrics_gives_no_counters() -> None:
    class NoMetrics:
        def metrics(self) -> object:
            raise NotImplementedError("this runner keeps no metrics")

    assert counter_totals(NoMetrics()) is None  # type: ignore[arg-type]
