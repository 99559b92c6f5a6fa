"""Where a benchmark's figures go: one folder per sitting, and nothing ever overwritten.

A sitting is the UTC date of the run: ``benchmarks/results/2026-11-30/decode.json``. Running the
same benchmark again that day writes ``decode-2.json`` beside the first instead of replacing it,
so a figure that README or RESULTS.md cites stays in the file it names (tests/test_figures.py
checks them there). A run's JSON and its plots carry one number: ``sweeps-2.json`` with
``sweeps-2.png``, ``quality-2.json`` with ``frontier-2.png``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def sitting_folder(root: Path = RESULTS) -> Path:
    """Today's folder (UTC), created."""
    folder = root / time.strftime("%Y-%m-%d", time.gmtime())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def result_stem(name: str, *, folder: Path | None = None) -> Path:
    """The first unused ``name``, ``name-2``, ... in ``folder`` (default: today's), without a
    suffix: no file of any suffix has that stem yet, so a run's JSON and its plots stay together."""
    folder = folder or sitting_folder()
    run = 1
    while True:
        stem = folder / (name if run == 1 else f"{name}-{run}")
        if not any(folder.glob(f"{stem.name}.*")):
            return stem
        run += 1


def write_json(path: Path, data: object) -> Path:
    """Write ``data`` to ``path`` through a temporary name, so a killed run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def machine() -> dict[str, object]:
    """The machine and the time of a run, to tell one sitting from another."""
    import torch

    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "loadavg_at_end": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
