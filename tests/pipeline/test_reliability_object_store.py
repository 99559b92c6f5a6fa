"""The whole job with input, model and output on an object store (``memfs://``, with GCS's
semantics: no directories, prefix deletes, rename = copy + delete): a finished run holds exactly
its files and manifest, a failed run leaves no object under the output, and a re-run or a
skipped scheduled run behave as on a local disk."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import run as run_module
from pipeline.run import RunFailed, run
from tests import fault_injection
from tests import memory_filesystem as memfs
from tests.conftest import make_texts
from tests.fault_injection import FAULTS_DIR_ENV

OUTPUT = "memfs://bucket/out/2030-01-02"
TEXTS = {f"memfs://bucket/corpus/part-{s}.txt": make_texts(12, seed=80 + s) for s in range(3)}


@pytest.fixture
def bucket(tiny_checkpoint: Path) -> Iterator[None]:
    memfs.reset()
    for path in tiny_checkpoint.iterdir():
        memfs.put(f"memfs://bucket/models/tiny/{path.name}", path.read_bytes())
    for name, texts in TEXTS.items():
        memfs.put(name, "".join(f"{t}\n" for t in texts).encode())
    yield
    memfs.reset()


def _argv(*extra: str) -> list[str]:
    return [
        "--input", "memfs://bucket/corpus/*.txt", "--output", OUTPUT,
        "--model", "memfs://bucket/models/tiny", "--max_len", "5", "--beam_size", "2",
        "--batch_window", "8", *extra,
    ]  # fmt: skip


def _objects_under(prefix: str) -> list[str]:
    return sorted(p for p in memfs.OBJECTS if p.startswith(prefix.rstrip("/") + "/"))


def _summary_ids() -> list[str]:
    ids: list[str] = []
    for path in _objects_under(f"{OUTPUT}/summaries"):
        table = pq.read_table(io.BytesIO(memfs.OBJECTS[path]))
        ids += table.column("doc_id").to_pylist()
    return ids


def _assert_finished(read: int) -> None:
    manifest = json.loads(memfs.OBJECTS[f"{OUTPUT}/_SUCCESS.json"])
    listed = {f"{OUTPUT}/{name}" for kind in ("summaries", "dead_letter")
              for name in manifest["files"][kind]}  # fmt: skip
    assert set(_objects_under(OUTPUT)) == listed | {f"{OUTPUT}/_SUCCESS.json"}
    assert manifest["counts"]["read"] == read
    expected = [f"{path}:{n}" for path, texts in TEXTS.items() for n in range(1, len(texts) + 1)]
    assert sorted(_summary_ids()) == sorted(expected)


def test_the_whole_job_on_an_object_store(bucket: None) -> None:
    report = run(_argv())
    assert report.summarized == sum(len(t) for t in TEXTS.values())
    _assert_finished(report.read)


def test_a_failed_run_leaves_no_object_and_a_rerun_is_exact(
    bucket: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memfs.put(f"{OUTPUT}/summaries/part-00003-of-00009.parquet", b"left by an older run")
    memfs.put(f"{OUTPUT}/_temporary/old-run/summaries/part-x.parquet", b"left by a killed one")
    monkeypatch.setenv(FAULTS_DIR_ENV, str(tmp_path))
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "Seq2SeqModelHandler", fault_injection.RaiseInBundle)
        with pytest.raises(RunFailed, match="injected bundle failure"):
            run(_argv())
    assert _objects_under(OUTPUT) == [], "a failed run left objects under the output"
    report = run(_argv())
    _assert_finished(report.read)
    skipped = run(_argv("--if_finished", "skip"))
    assert skipped.skipped and skipped.manifest == report.manifest
