"""Failover on this machine: a worker killed in the middle of a real run of the pipeline.

Two ways of running workers in separate processes, each on a corpus of four shards:

- Beam's portable path, as Flink and Spark use it: the local job service and an external worker
  pool, each its own process; the pool starts the SDK worker. (Beam 2.77's local job service
  runs FnApiRunner with one worker per environment, whatever --direct_num_workers says, so this
  job has one SDK worker.)
- Two SDK worker processes: FnApiRunner's multi_processing mode with --direct_num_workers 2, the
  mode of deploy/kubernetes/cronjob.yaml.

A worker is SIGKILLed while it reads a shard, i.e. while it decodes. The job must then either
finish with every document exactly once, or fail with a one-line error and no _SUCCESS.json; a
re-run to the same --output must then finish with every document exactly once. Everything
started is stopped (process groups) and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from s2s_model import Tokenizer, save_checkpoint
from tests.conftest import make_texts, tiny_model
from tests.portable_services import job_service_and_pool as portable_services
from tests.portable_services import stop, venv_env

SHARDS = 4
DOCS_PER_SHARD = 250
KILL_TIMEOUT_S = 120
RUN_TIMEOUT_S = 240
POLL_S = 0.1
# Short fixed-length summaries with a small beam: enough decoding that a worker spends seconds
# inside a shard, little enough that the whole test takes about a minute.
DECODE_FLAGS = ["--min_len", "20", "--max_len", "20", "--beam_size", "4", "--batch_window", "64"]


@dataclass(frozen=True)
class Corpus:
    root: Path
    ids: frozenset[str]

    @property
    def pattern(self) -> str:
        return str(self.root / "*.jsonl")


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random model a little larger than tiny_checkpoint, so that decoding takes seconds."""
    tokenizer = Tokenizer.train(make_texts(400), vocab_size=64)
    model = tiny_model(tokenizer.vocab_size, embed_dim=32, hidden_size=128, num_layers=2)
    directory = tmp_path_factory.mktemp("ckpt") / "small"
    save_checkpoint(directory, model, tokenizer)
    return directory


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    root = tmp_path / "corpus"
    root.mkdir()
    ids = set()
    for shard in range(SHARDS):
        texts = make_texts(DOCS_PER_SHARD, seed=100 + shard, min_words=20, max_words=60)
        lines = []
        for i, text in enumerate(texts):
            ids.add(f"s{shard}-{i}")
            lines.append(json.dumps({"id": f"s{shard}-{i}", "text": text}) + "\n")
        (root / f"part-{shard}.jsonl").write_text("".join(lines), encoding="utf-8")
    return Corpus(root, frozenset(ids))


# -- processes ---------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def sdk_workers(root: int) -> list[int]:
    """Live Python SDK worker processes below ``root`` (not the shells that start them)."""
    tree, pending, found = _children(), [root], []
    while pending:
        for child in tree.get(pending.pop(), []):
            pending.append(child)
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            shell = os.path.basename(argv[0]).endswith(b"sh")
            worker = any(b"sdk_worker_main" in a or b"SdkHarness" in a for a in argv)
            if worker and not shell and state != "Z":
                found.append(child)
    return found


def _reading(pid: int, directory: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{directory}/"):
                return True
        except OSError:
            continue
    return False


def kill_a_worker_mid_run(
    root: int, corpus: Corpus, launcher: subprocess.Popen[str], *, workers: int
) -> int:
    """SIGKILL one SDK worker below ``root`` while it holds a shard open (it reads shards as it
    decodes them), once ``workers`` of them are up. Returns the killed pid."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while time.monotonic() < deadline:
        assert launcher.poll() is None, "the job ended before a worker could be killed mid-run"
        alive = sdk_workers(root)
        busy = [pid for pid in alive if _reading(pid, corpus.root)]
        if len(alive) >= workers and busy:
            os.kill(busy[0], signal.SIGKILL)
            return busy[0]
        time.sleep(POLL_S)
    raise AssertionError(f"no SDK worker read a shard within {KILL_TIMEOUT_S} s")


def _launch(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=cwd,
        env=venv_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(launcher: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = launcher.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.communicate()
        raise AssertionError(f"the job neither finished nor failed in {RUN_TIMEOUT_S} s") from None
    return launcher.returncode, stderr


# -- outcomes ----------------------------------------------------------------------------------


def summarized_ids(output: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for path in sorted((output / "summaries").glob("*.parquet")):
        ids.update(pq.read_table(path, columns=["doc_id"]).column("doc_id").to_pylist())
    return ids


def assert_complete(output: Path, corpus: Corpus) -> None:
    manifest = json.loads((output / "_SUCCESS.json").read_text())
    assert manifest["counts"] == {
        "read": len(corpus.ids),
        "summarized": len(corpus.ids),
        "dead_lettered": 0,
        "reused": 0,
        "decoded": len(corpus.ids),
        "skipped_blank": 0,
    }
    ids = summarized_ids(output)
    assert set(ids) == corpus.ids, "documents missing or foreign"
    assert max(ids.values()) == 1, "a document was written twice"


def assert_complete_or_failed_clearly(
    returncode: int, stderr: str, output: Path, corpus: Corpus
) -> str:
    """'completed' or 'failed'; anything else fails the test."""
    if returncode == 0:
        assert_complete(output, corpus)
        return "completed"
    assert not (output / "_SUCCESS.json").exists(), "a failed run left _SUCCESS.json"
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "failed" in last, stderr[-2000:]
    return "failed"


# -- the two ways ------------------------------------------------------------------------------


@pytest.fixture
def job_service_and_pool(tmp_path: Path) -> Iterator[tuple[int, int, int]]:
    """(job service port, worker pool port, worker pool pid), both stopped afterwards."""
    with portable_services(tmp_path / "services") as services:
        yield services.job_port, services.pool_port, services.pool_pid


def _args(corpus: Corpus, output: Path, model: Path, *extra: str) -> list[str]:
    return ["--input", corpus.pattern, "--output", str(output), "--model", str(model),
            "--id_field", "id", "--device", "cpu", *DECODE_FLAGS, *extra]  # fmt: skip


@pytest.mark.slow
def test_portable_worker_killed_mid_run_then_rerun_completes(
    job_service_and_pool: tuple[int, int, int],
    corpus: Corpus,
    small_checkpoint: Path,
    tmp_path: Path,
) -> None:
    job_port, pool_port, pool_pid = job_service_and_pool
    output = tmp_path / "out"
    argv = _args(
        corpus, output, small_checkpoint, "--runner", "PortableRunner",
        "--job_endpoint", f"localhost:{job_port}", "--environment_type", "EXTERNAL",
        "--environment_config", f"localhost:{pool_port}",
    )  # fmt: skip
    launcher = _launch(argv, tmp_path)
    try:
        kill_a_worker_mid_run(pool_pid, corpus, launcher, workers=1)
        returncode, stderr = _finish(launcher)
    finally:
        stop(launcher)
    outcome = assert_complete_or_failed_clearly(returncode, stderr, output, corpus)

    rerun = _launch(argv, tmp_path)
    try:
        returncode, stderr = _finish(rerun)
    finally:
        stop(rerun)
    assert returncode == 0, f"re-run after the kill ({outcome}): {stderr[-2000:]}"
    assert_complete(output, corpus)


@pytest.mark.slow
def test_one_of_two_worker_processes_killed_mid_run(
    corpus: Corpus, small_checkpoint: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    argv = _args(
        corpus, output, small_checkpoint, "--direct_running_mode", "multi_processing",
        "--direct_num_workers", "2",
    )  # fmt: skip
    launcher = _launch(argv, tmp_path)
    try:
        kill_a_worker_mid_run(launcher.pid, corpus, launcher, workers=2)
        returncode, stderr = _finish(launcher)
    finally:
        stop(launcher)
    assert_complete_or_failed_clearly(returncode, stderr, output, corpus)
