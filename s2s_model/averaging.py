"""Checkpoint averaging: the element-wise mean of several checkpoints' weights.

OpenNMT-py's ``average_models`` and fairseq's ``scripts/average_checkpoints.py``: the mean of the
last few checkpoints of one run is often a better model than any of them. Checkpoints must share
the architecture (``ModelConfig``) and the tokenizer, which only checkpoints of one training run
do. Floating tensors are summed in fp32 and cast back to their own dtype; the result keeps the
newest checkpoint's tokenizer, decode settings and metadata, and records in ``metadata
["averaged"]`` what was averaged. Checkpoints are read one at a time: memory holds two models.

A training run keeps periodic checkpoints as ``RUN/checkpoints/step-<8-digit step>/``, each a
normal checkpoint directory; :func:`last_checkpoints` finds the newest of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from s2s_model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from s2s_model.errors import S2SError

CHECKPOINTS_DIR = "checkpoints"
STEP_DIR = re.compile(r"^step-(\d{8})$")
METADATA_KEY = "averaged"


class AveragingError(S2SError, ValueError):
    """Checkpoints that cannot be averaged; the message names them and the fix."""

    exit_code = 2


def step_dir_name(step: int) -> str:
    """The directory name of the periodic checkpoint at update ``step``: ``step-00001200``."""
    return f"step-{step:08d}"


def step_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Every ``step-<8 digits>`` directory in ``folder`` (RUN/checkpoints), oldest first."""
    root = Path(folder)
    found = sorted(
        (int(match.group(1)), path)
        for path in (root.iterdir() if root.is_dir() else [])
        if path.is_dir() and (match := STEP_DIR.match(path.name))
    )
    return [path for _, path in found]


def last_checkpoints(run: str | os.PathLike[str], n: int) -> list[Path]:
    """The ``n`` newest ``RUN/checkpoints/step-*`` directories, oldest first."""
    root = Path(run) / CHECKPOINTS_DIR
    found = step_checkpoints(root)
    if len(found) < n:
        raise AveragingError(
            f"{root} holds {len(found)} step checkpoints (step-<8 digits>/), {n} needed: train"
            " longer, average fewer, or name the checkpoint directories yourself"
        )
    return found[-n:]


def average_checkpoints(
    directories: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> dict[str, Any]:
    """Average the checkpoints in ``directories`` (the last is the newest) into ``output``.

    Returns what was averaged, as saved in the output's ``metadata["averaged"]``.
    """
    paths = [Path(d) for d in directories]
    _check_paths(paths, Path(output))
    first = load_checkpoint(paths[0])
    sums = _fp32(first)
    sources = [_source(paths[0], first)]
    newest = first
    for path in paths[1:]:
        newest = load_checkpoint(path)
        _check_compatible(paths[0], first, path, newest)
        for name, tensor in _fp32(newest).items():
            sums[name] += tensor
        sources.append(_source(path, newest))
    averaged = _mean(sums, len(paths), newest)
    newest.model.load_state_dict(averaged)
    record = {"checkpoints": sources}
    metadata = {**newest.metadata, METADATA_KEY: record}
    save_checkpoint(output, newest.model, newest.tokenizer, decode=newest.decode, metadata=metadata)
    return record


def _check_paths(paths: list[Path], output: Path) -> None:
    if len(paths) < 2:
        raise AveragingError(
            f"averaging needs at least two checkpoints, got {len(paths)}: name more"
        )
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) < len(resolved):
        raise AveragingError("a checkpoint is named twice: name each one once")
    if output.resolve() in resolved:
        raise AveragingError(
            f"--output {output} is one of the checkpoints being averaged: write elsewhere"
        )


def _fp32(checkpoint: Checkpoint) -> dict[str, Tensor]:
    """The model's floating tensors by name, as fp32 copies (the running sums start here)."""
    state = checkpoint.model.state_dict()
    return {k: v.detach().float().clone() for k, v in state.items() if v.is_floating_point()}


def _check_compatible(first_path: Path, first: Checkpoint, path: Path, other: Checkpoint) -> None:
    """Same architecture and tokenizer, or a one-line error naming the difference."""
    mine, theirs = first.model_config.to_dict(), other.model_config.to_dict()
    differences = [f"{k} {mine[k]!r} vs {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]
    if differences:
        raise AveragingError(
            f"{path} and {first_path} have different architectures ({', '.join(differences)}):"
            " only checkpoints of one training run can be averaged"
        )
    if other.tokenizer.to_bytes() != first.tokenizer.to_bytes():
        raise AveragingError(
            f"{path} and {first_path} have different tokenizers: only checkpoints of one"
            " training run can be averaged"
        )


def _mean(sums: dict[str, Tensor], count: int, newest: Checkpoint) -> dict[str, Tensor]:
    """The averaged state dict: floating tensors in their own dtype, the rest the newest's."""
    state = newest.model.state_dict()
    with torch.no_grad():
        return {
            name: (sums[name] / count).to(tensor.dtype) if name in sums else tensor
            for name, tensor in state.items()
        }


def _source(path: Path, checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "path": str(path),
        "fingerprint": checkpoint.fingerprint,
        "step": checkpoint.metadata.get("step"),
    }
