"""Beam's portable path on this machine: the local job service and an external worker pool, each
a separate process in its own process group, always stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Services:
    job_port: int
    pool_port: int
    pool_pid: int


def venv_env() -> dict[str, str]:
    """The environment with this venv first on PATH: the worker pool starts SDK workers as
    plain `python` from PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def start_module(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python -m ARGS` in its own process group (stopping it stops its workers)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=cwd,
            env=venv_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[Any]) -> None:
    """TERM, then KILL, the process group of ``process``."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("localhost", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def job_service_and_pool(directory: Path) -> Iterator[Services]:
    """Start both in ``directory`` (logs there); both are stopped on the way out."""
    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "job.port"
    pool_port = free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        started.append(
            start_module(
                ["apache_beam.runners.portability.local_job_service_main", "--port", "0",
                 "--port_file", str(port_file)],
                directory, directory / "job.log",
            )
        )  # fmt: skip
        started.append(
            start_module(
                ["apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool_port)],
                directory,
                directory / "pool.log",
            )
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text() and accepts(pool_port)):
            assert time.monotonic() < deadline, "the job service or worker pool did not start"
            assert all(p.poll() is None for p in started), "a service process died at start"
            time.sleep(0.2)
        yield Services(int(port_file.read_text()), pool_port, started[1].pid)
    finally:
        for process in started:
            stop(process)
    assert all(p.poll() is not None for p in started)
