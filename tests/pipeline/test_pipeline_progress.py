"""Progress of local runs: workers' count files, their sum, and the monitor that reports it."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline

from pipeline.progress import REUSED_PREFIX, ProgressMonitor, ReportProgress, documents_done


def report(directory: Path, elements: int, *, prefix: str = "") -> None:
    """One worker instance seeing ``elements`` elements in one bundle."""
    reporter = ReportProgress(str(directory), prefix=prefix)
    reporter.setup()
    reporter.start_bundle()
    for element in range(elements):
        reporter.process(element)
    reporter.finish_bundle()


def test_the_workers_counts_are_summed(tmp_path: Path) -> None:
    report(tmp_path, 3)
    report(tmp_path, 4)
    report(tmp_path, 2, prefix=REUSED_PREFIX)
    assert documents_done(str(tmp_path)) == 7
    assert documents_done(str(tmp_path), reused=True) == 2
    assert not list(tmp_path.glob("*.tmp")), "each count file is replaced, never left half"


def test_half_written_and_unreadable_files_are_skipped(tmp_path: Path) -> None:
    report(tmp_path, 5)
    (tmp_path / "123-abc.tmp").write_text("40", encoding="ascii")  # being written
    (tmp_path / "456-def").write_text("not a number", encoding="ascii")
    (tmp_path / "789-ghi").write_text("", encoding="ascii")  # created, not yet written
    assert documents_done(str(tmp_path)) == 5


def test_no_directory_means_nothing_done(tmp_path: Path) -> None:
    assert documents_done(str(tmp_path / "missing")) == 0


def test_progress_never_fails_a_job(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pipeline.progress"):
        report(tmp_path / "missing", 3)  # cannot write: logged, not raised
    assert "cannot write progress" in caplog.text


def test_a_pipeline_step_reports_every_element(tmp_path: Path) -> None:
    with BeamPipeline() as p:
        _ = p | beam.Create(range(7)) | beam.ParDo(ReportProgress(str(tmp_path)))
    assert documents_done(str(tmp_path)) == 7


def test_the_monitor_reports_while_running_and_once_at_the_end(tmp_path: Path) -> None:
    calls: list[tuple[int, float]] = []
    reported = threading.Event()

    def callback(done: int, elapsed: float) -> None:
        calls.append((done, elapsed))
        reported.set()

    with ProgressMonitor(str(tmp_path), callback, interval=0.01):
        assert reported.wait(10), "a report while the block runs"
        report(tmp_path, 6)
    final_done, final_elapsed = calls[-1]
    assert final_done == 6
    assert final_elapsed >= calls[0][1] >= 0.0


def test_reused_rows_are_reported_apart_and_never_above_done(tmp_path: Path) -> None:
    calls: list[tuple[int, dict[str, Any]]] = []
    report(tmp_path, 2, prefix=REUSED_PREFIX)  # reused rows counted before the decoded ones
    with ProgressMonitor(
        str(tmp_path), lambda done, _, **kw: calls.append((done, kw)), 60.0, with_reused=True
    ):
        pass
    assert calls == [(2, {"reused": 2})]


def test_a_failing_display_does_not_fail_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(done: int, elapsed: float) -> None:
        raise RuntimeError("terminal gone")

    monitor = ProgressMonitor(str(tmp_path), broken, interval=0.01)
    with caplog.at_level(logging.ERROR, logger="pipeline.progress"), monitor:
        report(tmp_path, 1)
    assert "progress callback failed" in caplog.text
    assert "terminal gone" in caplog.text
