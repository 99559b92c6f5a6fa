"""Checkpoints as plain data: ``config.json`` + ``model.safetensors`` + ``tokenizer.model``.

Loading never unpickles anything: weights are read by safetensors as tensors only, the config is
JSON and the tokenizer is a SentencePiece protobuf. Saving writes a temporary directory beside
the target and renames it into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from s2s_model.config import DecodeConfig, ModelConfig
from s2s_model.errors import S2SError
from s2s_model.model import Seq2Seq
from s2s_model.tokenizer import TextTokenizer, load_tokenizer

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.model"
FINGERPRINT_CHARS = 16


class CheckpointError(S2SError, ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


@dataclass
class Checkpoint:
    model: Seq2Seq
    tokenizer: TextTokenizer
    decode: DecodeConfig
    fingerprint: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: Seq2Seq,
    tokenizer: TextTokenizer,
    *,
    decode: DecodeConfig | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` and ``tokenizer`` to ``directory`` atomically (replacing it if present)."""
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.vocab_size} pieces but the model expects"
            f" vocab_size={model.config.vocab_size}"
        )
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file(_weights(model), str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        (staging / TOKENIZER_FILE).write_bytes(tokenizer.to_bytes())
        config = {
            "format_version": FORMAT_VERSION,
            "model": model.config.to_dict(),
            "tokenizer": _tokenizer_section(tokenizer),
            "decode": (decode or DecodeConfig()).to_dict(),
            "metadata": metadata or {},
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        _replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _tokenizer_section(tokenizer: TextTokenizer) -> dict[str, Any]:
    """The config's ``tokenizer``: kind, size, and ``lowercase`` when set (older readers and
    checkpoints without it: false)."""
    section: dict[str, Any] = {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size}
    if getattr(tokenizer, "lowercase", False):
        section["lowercase"] = True
    return section


def _weights(model: Seq2Seq) -> dict[str, torch.Tensor]:
    """Each distinct weight once, as its own contiguous CPU tensor.

    A tied weight (one parameter under two names) is saved under its first name only; loading
    fills its aliases (``_is_alias``). Every tensor is copied out on its own: on a GPU, cuDNN
    flattens an LSTM's weights into one shared buffer, and safetensors refuses to save views.
    """
    weights: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        weights[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return weights


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is swapped out, then removed."""
    if not target.exists():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: str | os.PathLike[str], *, device: str = "cpu") -> Checkpoint:
    """Load a checkpoint directory; the model comes back in eval mode on ``device``."""
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(
            f"model directory {root} does not exist: pass a checkpoint directory made by"
            " `s2s train` (config.json, model.safetensors, tokenizer.model)"
        )
    config = _read_config(root / CONFIG_FILE)
    model_config = _model_config(root / CONFIG_FILE, config)
    section = config.get("tokenizer", {})
    kind = str(section.get("kind", "sentencepiece"))
    lowercase = section.get("lowercase", False) is True
    tokenizer = _read_tokenizer(root / TOKENIZER_FILE, kind, model_config, lowercase)
    model = Seq2Seq(model_config)
    _read_weights(root / WEIGHTS_FILE, model)
    model.to(device).eval()
    try:
        decode = DecodeConfig.from_dict(config.get("decode", {}))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{root / CONFIG_FILE}: bad 'decode' section: {err}") from None
    return Checkpoint(
        model=model,
        tokenizer=tokenizer,
        decode=decode,
        fingerprint=_fingerprint(root),
        metadata=dict(config.get("metadata", {})),
    )


def upgrade_config(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring an older format's config up to FORMAT_VERSION (the one place formats change)."""
    version = config.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(
            f"{path} has no integer 'format_version': it is not an s2s checkpoint"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version}, newer than this s2s-summarize reads"
            f" ({FORMAT_VERSION}): upgrade s2s-summarize"
        )
    if version < 1:
        raise CheckpointError(f"{path} has unknown format version {version}")
    return config


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; re-save it")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}): re-save the checkpoint") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object: re-save the checkpoint")
    return upgrade_config(config, path)


def _model_config(path: Path, config: dict[str, Any]) -> ModelConfig:
    try:
        return ModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path}: bad 'model' section ({err}): re-save the checkpoint"
        ) from None


def _read_tokenizer(
    path: Path, kind: str, model_config: ModelConfig, lowercase: bool
) -> TextTokenizer:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; re-save it")
    try:
        tokenizer = load_tokenizer(kind, path.read_bytes(), lowercase=lowercase)
    except (RuntimeError, ValueError, OSError) as err:
        raise CheckpointError(f"{path} is not a usable {kind} tokenizer ({err})") from None
    if tokenizer.vocab_size != model_config.vocab_size:
        raise CheckpointError(
            f"{path} has {tokenizer.vocab_size} pieces but config.json says vocab_size="
            f"{model_config.vocab_size}: the tokenizer belongs to another model"
        )
    return tokenizer


def _read_weights(path: Path, model: Seq2Seq) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; re-save it")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({err}): it is corrupt or not a"
            " weights file; re-save or re-download the checkpoint"
        ) from None
    expected = model.state_dict()
    for name, tensor in tensors.items():
        if name in expected and expected[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)} but config.json needs"
                f" {tuple(expected[name].shape)}: weights and config do not belong together"
            )
        _check_finite(path, name, tensor)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not _is_alias(model, m, tensors)]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: missing tensors {missing[:5]} / unexpected tensors {unexpected[:5]}:"
            " weights and config.json do not belong together"
        )


def _check_finite(path: Path, name: str, tensor: torch.Tensor) -> None:
    """Refuse a weight holding NaN or inf. Such a model loads, then fails inside the search on
    every document, one at a time, with an internal error (issue 24): refused here, it fails
    before any work, in one line that names the file.

    One pass over each floating tensor: a few milliseconds for the bundled model.
    """
    if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
        return
    nan, inf = int(tensor.isnan().sum()), int(tensor.isinf().sum())
    raise CheckpointError(
        f"{path}: tensor {name} holds {nan} NaN and {inf} infinite values (of"
        f" {tensor.numel()}): the weights are broken (did training diverge?); retrain, or use"
        " an earlier checkpoint"
    )


def _is_alias(model: Seq2Seq, name: str, tensors: dict[str, torch.Tensor]) -> bool:
    """True when ``name`` shares storage with a tensor that was loaded (tied weights)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    if name not in params:
        return False
    ptr = params[name].data_ptr()
    return any(n in tensors and params[n].data_ptr() == ptr for n in params if n != name)


def _fingerprint(root: Path) -> str:
    """Stable hash of the weights, config and tokenizer files: the provenance of a summary."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
        digest.update(name.encode())
        with open(root / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:FINGERPRINT_CHARS]
