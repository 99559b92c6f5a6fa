"""The portable path that Flink, Spark and Dataflow use: Beam's local job service plus an
external worker pool, each a separate process started in an unrelated directory, so modules or
settings that do not reach the workers fail here. Everything started is stopped, whatever
happens."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline_fixtures import build_dirty_corpus, summarize_args

START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("localhost", port), timeout=1):
            return True
    except OSError:
        return False


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    # The worker pool launches SDK workers as `python` from PATH: put this venv first.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its workers
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
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


@pytest.fixture
def portable_services(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(job service port, worker pool port), both processes stopped afterwards."""
    services = tmp_path / "services"
    services.mkdir()
    port_file = services / "job.port"
    pool_port = _free_port()
    started = []
    try:
        started.append(
            _start(
                ["apache_beam.runners.portability.local_job_service_main", "--port", "0",
                 "--port_file", str(port_file)],
                services, services / "job.log",
            )
        )  # fmt: skip
        started.append(
            _start(
                ["apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool_port)],
                services,
                services / "pool.log",
            )
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text() and _accepts(pool_port)):
            assert time.monotonic() < deadline, "the job service or worker pool did not start"
            assert all(p.poll() is None for p in started), "a service process died at start"
            time.sleep(0.2)
        yield int(port_file.read_text()), pool_port
    finally:
        for process in started:
            _stop(process)
    assert all(p.poll() is not None for p in started)


@pytest.mark.slow
def test_dirty_corpus_through_job_service_and_external_workers(
    portable_services: tuple[int, int], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    job_port, pool_port = portable_services
    corpus = build_dirty_corpus(tmp_path / "corpus")
    output = tmp_path / "out"
    argv = summarize_args(
        [corpus.pattern], output, tiny_checkpoint, "--id_field", "id",
        "--max_dead_letter_fraction", "0.5", "--runner", "PortableRunner",
        "--job_endpoint", f"localhost:{job_port}", "--environment_type", "EXTERNAL",
        "--environment_config", f"localhost:{pool_port}",
    )  # fmt: skip
    launcher = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=tmp_path,
    )
    assert launcher.returncode == 0, launcher.stderr[-3000:]
    manifest = json.loads((output / "_SUCCESS.json").read_text())
    assert manifest["runner"] == "PortableRunner"
    assert manifest["counts"] == {
        "read": corpus.read,
        "summarized": corpus.summarized,
        "dead_lettered": sum(corpus.reasons.values()),
    }
    # The counters came back from the workers through the job service.
    assert manifest["dead_letters_by_reason"] == dict(corpus.reasons)
