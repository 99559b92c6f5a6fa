"""Where a model runs: the device a setting resolves to, refused loudly when it cannot be had.

A job asked to run on a GPU that quietly ran on the CPU would report success at a fraction of
the speed and with other numerics: ``resolve_device('cuda')`` without a usable GPU raises
``DeviceError`` instead, before any work. ``'auto'`` takes the GPU when torch can use one and
logs its choice either way.
"""

from __future__ import annotations

import logging
import os
import platform
from typing import Any

import torch

from s2s_model.config import DEVICES
from s2s_model.errors import S2SError

logger = logging.getLogger(__name__)


class DeviceError(S2SError, ValueError):
    """The device asked for cannot be used here; the message says what torch sees."""

    exit_code = 2


def cuda_status(available: bool) -> str:
    """What torch sees of CUDA (``available``: ``torch.cuda.is_available()``), in one phrase."""
    build = torch.version.cuda
    if build is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if not available:
        return (
            f"torch {torch.__version__} (CUDA {build}) finds no usable GPU (no device, or a"
            " driver older than this CUDA build needs)"
        )
    return f"torch {torch.__version__} (CUDA {build}) sees {torch.cuda.get_device_name(0)}"


def resolve_device(device: str) -> str:
    """'cpu' | 'cuda' | 'auto' -> 'cpu' or 'cuda'; 'cuda' without a usable GPU raises.

    Asks torch once ('cpu' asks nothing): a launcher resolves its workers' device once and
    passes the answer on, and a ``Summarizer`` resolves its own once."""
    if device not in DEVICES:
        raise ValueError(f"device={device!r}: choose one of {DEVICES}")
    if device == "cpu":
        return "cpu"
    available = torch.cuda.is_available()
    if available:
        if device == "auto":
            logger.info("device 'auto': using the GPU (%s)", cuda_status(available))
        return "cuda"
    if device == "cuda":
        raise DeviceError(
            f"device 'cuda' asked for, but {cuda_status(available)}: install a CUDA build of"
            " torch that the driver supports (deploy/README.md), or use --device cpu or auto"
        )
    logger.info("device 'auto': using the CPU (%s)", cuda_status(available))
    return "cpu"


def device_info(device: str) -> dict[str, Any]:
    """What ran: the device, the GPU's name, the torch and CUDA versions (for the manifest)."""
    on_gpu = device.startswith("cuda")
    return {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if on_gpu else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def hardware(device: str) -> dict[str, Any]:
    """The machine a model was trained on, for its metadata."""
    info: dict[str, Any] = {
        "device": device,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
