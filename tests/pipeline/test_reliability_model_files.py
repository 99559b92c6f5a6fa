"""Model files from elsewhere, through the command line and the pipeline's preflight.

tests/s2s_model/test_checkpoint.py proves what ``load_checkpoint`` refuses; here every damage stops
``s2s summarize`` before the job starts, in one line naming the file, and a planted pickle never
runs. A model on a remote filesystem (``memfs://``, an object store in memory) is read through
Beam's FileSystems, by the launcher and by the workers, and damage there is named the same way.
"""

from __future__ import annotations

import json
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file, save_model

from pipeline.model_handler import Seq2SeqModelHandler
from pipeline.run import PreflightError, run
from s2s_cli.main import main
from s2s_model import Summarizer, Tokenizer
from tests import memory_filesystem as memfs
from tests.conftest import make_texts, tiny_model
from tests.pipeline_fixtures import summarize_args, write_lines

FILES = ("config.json", "model.safetensors", "tokenizer.model")


class Payload:
    """Unpickling this writes ``marker``: the proof that code from a model file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "code from a model file ran"))


def _plant_pickle(name: str) -> Callable[[Path, Path], None]:
    def damage(directory: Path, marker: Path) -> None:
        (directory / name).write_bytes(pickle.dumps(Payload(marker)))

    return damage


def _truncate_weights(directory: Path, marker: Path) -> None:
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[: len(data) * 2 // 3])


def _weights_of_another_shape(directory: Path, marker: Path) -> None:
    vocab = json.loads((directory / "config.json").read_text())["model"]["vocab_size"]
    other = tiny_model(vocab, hidden_size=24)
    save_model(other, str(directory / "model.safetensors"))


def _nan_in_weights(directory: Path, marker: Path) -> None:
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    tensors["embedding.weight"][3, 5] = float("nan")
    save_file(tensors, str(path))


def _future_format(directory: Path, marker: Path) -> None:
    config = json.loads((directory / "config.json").read_text())
    config["format_version"] = 999
    (directory / "config.json").write_text(json.dumps(config))


def _tokenizer_of_another_size(directory: Path, marker: Path) -> None:
    other = Tokenizer.train(make_texts(200, seed=5), vocab_size=48)
    (directory / "tokenizer.model").write_bytes(other.to_bytes())


def _torch_save_as_weights(directory: Path, marker: Path) -> None:
    torch.save({"planted": Payload(marker)}, directory / "model.safetensors")


# name -> (damage, the file the message must name, a word of the message)
DAMAGE = {
    "pickle-as-config": (_plant_pickle("config.json"), "config.json", "not valid JSON"),
    "pickle-as-weights": (_plant_pickle("model.safetensors"), "model.safetensors", "corrupt"),
    "pickle-as-tokenizer": (_plant_pickle("tokenizer.model"), "tokenizer.model", "tokenizer"),
    "torch-save-as-weights": (_torch_save_as_weights, "model.safetensors", "corrupt"),
    "truncated-weights": (_truncate_weights, "model.safetensors", "corrupt"),
    "shape-mismatch": (_weights_of_another_shape, "model.safetensors", "has shape"),
    "nan-weights": (_nan_in_weights, "model.safetensors", "1 NaN"),
    "future-format": (_future_format, "config.json", "format version 999"),
    "tokenizer-vocab-size": (_tokenizer_of_another_size, "tokenizer.model", "48 pieces"),
}


@pytest.fixture
def own_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's directory for this test alone (local copies of remote models go there)."""
    directory = tmp_path / "tempdir"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
def remote() -> Iterator[None]:
    memfs.reset()
    yield
    memfs.reset()


def _damaged_copy(case: str, tmp_path: Path, tiny_checkpoint: Path) -> tuple[Path, Path, str, str]:
    """A copy of the tiny checkpoint damaged as ``case`` says: (model, marker, file, words)."""
    damage, name, words = DAMAGE[case]
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    marker = tmp_path / "marker"
    damage(model, marker)
    return model, marker, name, words


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_model_fails_in_one_line_naming_the_file_before_any_work(
    case: str, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    model, marker, name, words = _damaged_copy(case, tmp_path, tiny_checkpoint)
    corpus = write_lines(tmp_path / "in.txt", ["the package"])
    output = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["summarize", str(corpus), "--output", str(output), "--model", str(model)],
        catch_exceptions=False,
    )
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert f"{model / name}" in result.output and words in result.output
    assert not output.exists(), "work started before the error"
    assert not marker.exists(), "code from a model file ran"


def test_pickles_planted_beside_the_checkpoint_are_never_opened(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    marker = tmp_path / "marker"
    for name in ("pytorch_model.bin", "optimizer.pt", "training_args.pkl", "__init__.py"):
        (model / name).write_bytes(pickle.dumps(Payload(marker)))
    corpus = write_lines(tmp_path / "in.txt", make_texts(3, seed=1))
    report = run(summarize_args([str(corpus)], tmp_path / "out", model))
    assert report.summarized == 3
    assert not marker.exists(), "code from a model file ran"


def _upload(checkpoint: Path, prefix: str) -> None:
    for path in checkpoint.iterdir():
        memfs.put(f"{prefix}/{path.name}", path.read_bytes())


def test_a_remote_model_is_read_through_beam_filesystems_by_launcher_and_workers(
    tmp_path: Path, tiny_checkpoint: Path, remote: None, own_tempdir: Path
) -> None:
    _upload(tiny_checkpoint, "memfs://models/tiny")
    corpus = write_lines(tmp_path / "in.txt", make_texts(4, seed=2))
    output = tmp_path / "out"
    report = run(summarize_args([str(corpus)], output, "memfs://models/tiny"))
    # Once by the launcher's preflight; the in-process worker takes the launcher's copy.
    for name in FILES:
        assert memfs.OPENED.count(f"memfs://models/tiny/{name}") == 1
    # A worker in another process (Dataflow's) loads it itself, through the same filesystem.
    Seq2SeqModelHandler("memfs://models/tiny").load_model()
    for name in FILES:
        assert memfs.OPENED.count(f"memfs://models/tiny/{name}") == 2
    fingerprint = Summarizer.load(tiny_checkpoint).fingerprint
    assert report.manifest["model"]["fingerprint"] == fingerprint
    assert {r["model_id"] for r in pq.read_table(output / "summaries").to_pylist()} == {fingerprint}
    assert list(own_tempdir.iterdir()) == [], "local copies of the remote model were left"


@pytest.mark.parametrize("case", ["pickle-as-weights", "tokenizer-vocab-size", "future-format"])
def test_a_damaged_remote_model_is_named_by_its_remote_path(
    case: str, tmp_path: Path, tiny_checkpoint: Path, remote: None, own_tempdir: Path
) -> None:
    model, marker, name, words = _damaged_copy(case, tmp_path, tiny_checkpoint)
    _upload(model, "memfs://models/bad")
    corpus = write_lines(tmp_path / "in.txt", ["the package"])
    output = tmp_path / "out"
    with pytest.raises(PreflightError) as raised:
        run(summarize_args([str(corpus)], output, "memfs://models/bad"))
    message = str(raised.value)
    assert f"memfs://models/bad/{name}" in message and words in message
    assert "\n" not in message and str(own_tempdir) not in message
    assert not output.exists() and not marker.exists()
    assert list(own_tempdir.iterdir()) == []


def test_a_missing_remote_model_fails_before_any_work(
    tmp_path: Path, remote: None, own_tempdir: Path
) -> None:
    corpus = write_lines(tmp_path / "in.txt", ["the package"])
    with pytest.raises(PreflightError, match=r"memfs://models/none/config\.json is missing"):
        run(summarize_args([str(corpus)], tmp_path / "out", "memfs://models/none"))
    assert list(own_tempdir.iterdir()) == []
