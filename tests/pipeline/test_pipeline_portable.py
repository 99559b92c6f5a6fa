"""The portable path that Flink, Spark and Dataflow use: Beam's local job service plus an
external worker pool, each a separate process started in an unrelated directory, so modules or
settings that do not reach the workers fail here. Everything started is stopped, whatever
happens."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline_fixtures import build_dirty_corpus, summarize_args
from tests.portable_services import job_service_and_pool

RUN_TIMEOUT_S = 300


@pytest.fixture
def portable_services(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(job service port, worker pool port), both processes stopped afterwards."""
    with job_service_and_pool(tmp_path / "services") as services:
        yield services.job_port, services.pool_port


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
    assert manifest["counts"] == corpus.counts
    # The counters came back from the workers through the job service.
    assert manifest["dead_letters_by_reason"] == dict(corpus.reasons)
