"""The trainer state beside the ``last`` checkpoint: everything a resumed run needs to continue
exactly where it stopped (position, history, optimizer moments, random states), as JSON plus
safetensors: nothing is unpickled when a run resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from s2s_model.atomic import atomic_write
from s2s_model.config import TrainConfig

STATE_FILE = "trainer_state.json"
STATE_TENSORS_FILE = "trainer_state.safetensors"
STATE_VERSION = 1
CPU_RNG = "rng.torch"
CUDA_RNG = "rng.cuda"


@dataclass
class TrainerState:
    """Everything but tensors that a resumed run needs to continue exactly where it stopped."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed: float = 0.0
    best_score: float | None = None
    best_step: int = 0
    bad_validations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_curve: list[list[float]] = field(default_factory=list)
    data_digest: str = ""


def save_trainer_state(
    output: Path,
    state: TrainerState,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    *,
    device: str,
) -> None:
    """Write the tensors, then the JSON that refers to them (each atomically). The random
    states of the CPU and, when training there, the GPU are saved: dropout on a GPU draws from
    the GPU's generator, so an exact resume needs it too."""
    tensors = _optimizer_tensors(optimizer)
    tensors[CPU_RNG] = torch.get_rng_state()
    if device.startswith("cuda"):
        tensors[CUDA_RNG] = torch.cuda.get_rng_state()
    atomic_write(output / STATE_TENSORS_FILE, lambda path: save_file(tensors, str(path)))
    saved = {
        "version": STATE_VERSION,
        "state": dataclasses.asdict(state),
        "train_config": config.to_dict(),
        "param_groups": _param_groups(optimizer),
    }
    text = json.dumps(saved, indent=1)
    atomic_write(output / STATE_FILE, lambda path: path.write_text(text, encoding="utf-8"))


def read_trainer_state(output: Path) -> dict[str, Any]:
    """The JSON part of the state saved in ``output`` (position, history, config)."""
    saved: dict[str, Any] = json.loads((output / STATE_FILE).read_text(encoding="utf-8"))
    return saved


def restore_tensors(
    output: Path, optimizer: torch.optim.Optimizer, param_groups: list[dict[str, Any]], device: str
) -> None:
    """Load the optimizer's moments and the random states saved in ``output``."""
    tensors = load_file(str(output / STATE_TENSORS_FILE))
    per_param: dict[int, dict[str, Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            per_param.setdefault(int(index), {})[key] = tensor.to(device)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in param_groups]
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    torch.set_rng_state(tensors[CPU_RNG])
    if CUDA_RNG in tensors and device.startswith("cuda"):
        torch.cuda.set_rng_state(tensors[CUDA_RNG])


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Adam's per-parameter tensors as flat names ``state.<param index>.<key>``."""
    tensors = {}
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            tensor = value if isinstance(value, Tensor) else torch.tensor(value)
            tensors[f"state.{index}.{key}"] = tensor.detach().cpu().contiguous()
    return tensors


def _param_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    groups = optimizer.state_dict()["param_groups"]
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in groups]


def data_digest(pairs: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for text, summary in pairs:
        digest.update(f"{len(text)}:{text}{len(summary)}:{summary}".encode())
    return digest.hexdigest()[:16]
