"""Checkpoints round-trip, load without unpickling, and fail clearly when damaged."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from s2s_model import CheckpointError, DecodeConfig, Tokenizer, load_checkpoint, save_checkpoint
from s2s_model.bundled import BUNDLED_MODELS
from tests.conftest import tiny_model

SRC = torch.tensor([[5, 6, 7, 8, 9], [9, 8, 0, 0, 0]])
SRC_LEN = torch.tensor([5, 2])
TGT = torch.tensor([[1, 10, 11], [1, 12, 13]])


def copy_of(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(checkpoint, target)
    return target


@pytest.mark.parametrize(
    "overrides", [{}, {"copy": True, "coverage": True, "tie_embeddings": True, "num_layers": 2}]
)
def test_round_trip_gives_identical_outputs(
    tmp_path: Path, tiny_tokenizer: Tokenizer, overrides: dict[str, object]
) -> None:
    model = tiny_model(tiny_tokenizer.vocab_size, seed=3, **overrides)
    decode = DecodeConfig(beam_size=2, max_len=7, length_penalty="wu", coverage_beta=5.0)
    save_checkpoint(tmp_path / "m", model, tiny_tokenizer, decode=decode, metadata={"note": "x"})
    loaded = load_checkpoint(tmp_path / "m")
    assert loaded.model_config == model.config
    assert loaded.decode == decode
    assert loaded.metadata == {"note": "x"}
    assert loaded.tokenizer.to_bytes() == tiny_tokenizer.to_bytes()
    assert not loaded.model.training
    with torch.inference_mode():
        assert torch.equal(model(SRC, SRC_LEN, TGT), loaded.model(SRC, SRC_LEN, TGT))
    if model.config.tie_embeddings:
        assert loaded.model.decoder.generator.weight is loaded.model.embedding.weight


def _flatten_like_cudnn(lstm: torch.nn.LSTM) -> None:
    """Make every weight of ``lstm`` a view into one buffer, as cuDNN does on a GPU."""
    names = list(lstm._flat_weights_names)
    flat = torch.cat([getattr(lstm, n).detach().reshape(-1) for n in names])
    offset = 0
    for name in names:
        shape = getattr(lstm, name).shape
        size = shape.numel()
        setattr(lstm, name, torch.nn.Parameter(flat[offset : offset + size].view(shape)))
        offset += size


def test_weights_that_share_one_buffer_save_and_load(
    tmp_path: Path, tiny_tokenizer: Tokenizer
) -> None:
    """A model trained on a GPU has its LSTM weights flattened into one buffer by cuDNN."""
    model = tiny_model(tiny_tokenizer.vocab_size, seed=5, tie_embeddings=True)
    for module in model.modules():
        if isinstance(module, torch.nn.LSTM):
            _flatten_like_cudnn(module)
    save_checkpoint(tmp_path / "m", model, tiny_tokenizer)
    loaded = load_checkpoint(tmp_path / "m")
    with torch.inference_mode():
        assert torch.equal(model(SRC, SRC_LEN, TGT), loaded.model(SRC, SRC_LEN, TGT))
    assert loaded.model.decoder.generator.weight is loaded.model.embedding.weight


def test_fingerprint_is_stable_and_tracks_weights(tmp_path: Path, tiny_checkpoint: Path) -> None:
    first = load_checkpoint(tiny_checkpoint).fingerprint
    assert load_checkpoint(tiny_checkpoint).fingerprint == first
    other = tmp_path / "other"
    loaded = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        loaded.model.decoder.generator.bias[5] += 1.0
    save_checkpoint(other, loaded.model, loaded.tokenizer)
    assert load_checkpoint(other).fingerprint != first


def test_save_replaces_atomically_and_leaves_no_temporaries(
    tmp_path: Path, tiny_tokenizer: Tokenizer
) -> None:
    target = tmp_path / "m"
    save_checkpoint(target, tiny_model(tiny_tokenizer.vocab_size, seed=1), tiny_tokenizer)
    save_checkpoint(target, tiny_model(tiny_tokenizer.vocab_size, seed=2), tiny_tokenizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.model",
    ]


class Planted:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.model", "config.json"])
def test_a_planted_pickle_is_refused_without_running(
    tmp_path: Path, tiny_checkpoint: Path, name: str
) -> None:
    directory = copy_of(tiny_checkpoint, tmp_path)
    marker = tmp_path / "marker"
    (directory / name).write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(CheckpointError, match=name):
        load_checkpoint(directory)
    assert not marker.exists()


def test_a_torch_save_file_as_weights_is_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    directory = copy_of(tiny_checkpoint, tmp_path)
    torch.save(load_checkpoint(directory).model.state_dict(), directory / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(directory)


def test_truncated_weights(tmp_path: Path, tiny_checkpoint: Path) -> None:
    directory = copy_of(tiny_checkpoint, tmp_path)
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*corrupt"):
        load_checkpoint(directory)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.model"])
def test_missing_file_is_named(tmp_path: Path, tiny_checkpoint: Path, name: str) -> None:
    directory = copy_of(tiny_checkpoint, tmp_path)
    (directory / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name} is missing"):
        load_checkpoint(directory)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def edit_config(directory: Path, edit) -> None:  # type: ignore[no-untyped-def]
    config = json.loads((directory / "config.json").read_text())
    edit(config)
    (directory / "config.json").write_text(json.dumps(config))


def test_future_format_version(tmp_path: Path, tiny_checkpoint: Path) -> None:
    directory = copy_of(tiny_checkpoint, tmp_path)
    edit_config(directory, lambda c: c.update(format_version=99))
    with pytest.raises(CheckpointError, match=r"format version 99.*upgrade s2s-summarize"):
        load_checkpoint(directory)


def test_shape_mismatch_names_the_tensor(tmp_path: Path, tiny_checkpoint: Path) -> None:
    directory = copy_of(tiny_checkpoint, tmp_path)
    edit_config(directory, lambda c: c["model"].update(hidden_size=32))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor .* has shape"):
        load_checkpoint(directory)


def edit_weights(directory: Path, name: str, edit) -> None:  # type: ignore[no-untyped-def]
    """Rewrite tensor ``name`` of ``directory``'s weights file as ``edit(tensor)``."""
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    assert name in tensors, sorted(tensors)
    tensors[name] = edit(tensors[name])
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_a_weights_tensor_of_another_shape_is_named(tmp_path: Path, tiny_checkpoint: Path) -> None:
    directory = copy_of(tiny_checkpoint, tmp_path)
    edit_weights(directory, "decoder.generator.bias", lambda t: t[:-1].clone())
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor decoder\.generator"):
        load_checkpoint(directory)


@pytest.mark.parametrize(
    ("name", "value", "counts"),
    [
        ("decoder.generator.weight", float("nan"), "1 NaN and 0 infinite"),
        ("embedding.weight", float("inf"), "0 NaN and 1 infinite"),
        ("decoder.generator.bias", float("-inf"), "0 NaN and 1 infinite"),
    ],
)
def test_weights_that_are_not_finite_are_refused_at_load(
    tmp_path: Path, tiny_checkpoint: Path, name: str, value: float, counts: str
) -> None:
    """Such a model would load, then fail every document one at a time (issue 24)."""
    directory = copy_of(tiny_checkpoint, tmp_path)

    def plant(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        tensor.view(-1)[tensor.numel() // 2] = value
        return tensor

    edit_weights(directory, name, plant)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(directory)
    message = str(refused.value)
    assert message.startswith(f"{directory / 'model.safetensors'}: tensor {name} holds {counts}")
    assert "\n" not in message


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_each_bundled_model_loads_with_finite_fp32_weights_and_a_domain(name: str) -> None:
    checkpoint = load_checkpoint(BUNDLED_MODELS[name].directory)
    assert all(torch.isfinite(p).all() for p in checkpoint.model.parameters())
    assert {p.dtype for p in checkpoint.model.parameters()} == {torch.float32}
    assert 0.0 < checkpoint.metadata["domain"]["threshold"] < 1.0


def test_tokenizer_of_another_vocabulary(tmp_path: Path, tiny_checkpoint: Path) -> None:
    directory = copy_of(tiny_checkpoint, tmp_path)
    other = Tokenizer.train(["alpha beta gamma delta"] * 50, vocab_size=20)
    (directory / "tokenizer.model").write_bytes(other.to_bytes())
    with pytest.raises(CheckpointError, match=r"tokenizer\.model has .* pieces"):
        load_checkpoint(directory)


def test_bad_json(tmp_path: Path, tiny_checkpoint: Path) -> None:
    directory = copy_of(tiny_checkpoint, tmp_path)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        load_checkpoint(directory)


def test_a_lowercasing_tokenizer_is_saved_and_reads_capitals_as_lower_case(
    tmp_path: Path,
) -> None:
    texts = ["the jail in the state was stormed by a crowd of people"] * 40
    tokenizer = Tokenizer.train(texts, vocab_size=30, lowercase=True)
    save_checkpoint(tmp_path / "m", tiny_model(tokenizer.vocab_size), tokenizer)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["tokenizer"]["lowercase"] is True
    loaded = load_checkpoint(tmp_path / "m").tokenizer
    assert isinstance(loaded, Tokenizer) and loaded.lowercase
    assert loaded.encode("The JAIL was Stormed") == loaded.encode("the jail was stormed")
    plain = Tokenizer.from_bytes(tokenizer.to_bytes())
    assert plain.encode("The JAIL") != plain.encode("the jail")  # the flag does the work
