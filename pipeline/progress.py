"""Progress of local runs: workers write counts to files, the launcher sums them.

Beam's local runners report metrics only when a job ends, and workers may be separate processes
(``--direct_running_mode multi_processing``), so each worker instance keeps a small file
``<progress_dir>/<pid>-<uuid>`` holding the number of documents it has finished, replaced
atomically at most every ``WRITE_INTERVAL_S``. The launcher polls the directory. Rows that
``--reuse`` carried over are done documents too; they are also counted apart, in files named
``reused-<pid>-<uuid>``. Counts from a
retried bundle are counted twice: this is a progress display, not accounting (that is the job's
metrics and the Parquet files).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

import apache_beam as beam

logger = logging.getLogger(__name__)

WRITE_INTERVAL_S = 0.5
POLL_INTERVAL_S = 1.0
REUSED_PREFIX = "reused-"

# callback(documents_done, elapsed_seconds); with_reused monitors add reused=rows carried over.
ProgressCallback = Callable[..., None]


def progress_text(done: int, elapsed: float, reused: int | None = None) -> str:
    """ "N documents done, R docs/s" ("N documents done (M reused), ..." with ``reused``)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    split = "" if reused is None else f" ({reused:,} reused)"
    return f"{done:,} documents done{split}, {rate:,.1f} docs/s"


class ReportProgress(beam.DoFn):
    """Counts the elements reaching it and reports the count into ``directory``."""

    def __init__(self, directory: str, *, prefix: str = "") -> None:
        self._directory = directory
        self._prefix = prefix
        self._path = ""
        self._count = 0
        self._written_at = 0.0

    def setup(self) -> None:
        name = f"{self._prefix}{os.getpid()}-{uuid.uuid4().hex}"
        self._path = os.path.join(self._directory, name)
        self._count = 0
        self._written_at = 0.0

    def process(self, element: Any) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._written_at >= WRITE_INTERVAL_S:
            self._write(now)

    def finish_bundle(self) -> None:
        self._write(time.monotonic())

    def _write(self, now: float) -> None:
        self._written_at = now
        temporary = f"{self._path}.tmp"
        try:
            with open(temporary, "w", encoding="ascii") as handle:
                handle.write(str(self._count))
            os.replace(temporary, self._path)
        except OSError as err:  # progress must never fail a job
            logger.debug("cannot write progress to %s: %s", self._path, err)


def documents_done(directory: str, *, reused: bool = False) -> int:
    """The sum of the counts the workers wrote into ``directory``: of documents done, or
    (``reused``) of rows carried over."""
    total = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if name.endswith(".tmp") or name.startswith(REUSED_PREFIX) != reused:
            continue
        try:
            with open(os.path.join(directory, name), encoding="ascii") as handle:
                total += int(handle.read() or 0)
        except (OSError, ValueError):
            continue
    return total


class ProgressMonitor:
    """Calls ``callback(documents_done, elapsed_seconds)`` every ``interval`` seconds while the
    ``with`` block runs, and once more at its end; ``with_reused``: with ``reused=`` (rows
    carried over by ``--reuse``) too."""

    def __init__(
        self,
        directory: str,
        callback: ProgressCallback,
        interval: float = POLL_INTERVAL_S,
        *,
        with_reused: bool = False,
    ) -> None:
        self._directory = directory
        self._callback = callback
        self._interval = interval
        self._with_reused = with_reused
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="s2s-progress", daemon=True)
        self._start = 0.0

    def __enter__(self) -> ProgressMonitor:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._report()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._report()

    def _report(self) -> None:
        try:
            done, elapsed = documents_done(self._directory), time.monotonic() - self._start
            if self._with_reused:
                reused = documents_done(self._directory, reused=True)
                # Reused rows are done documents too, but their two counts are written at
                # different moments: never show fewer done than reused.
                self._callback(max(done, reused), elapsed, reused=reused)
            else:
                self._callback(done, elapsed)
        except Exception:  # a broken display must not break the run
            logger.exception("progress callback failed")
