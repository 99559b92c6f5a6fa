"""Sweeps: decode docs/s against the batch token budget and against the beam size, on the fixed
work's reference model (one thread, 128 documents, exactly 30 tokens), plotted as PNG.

    python -m benchmarks.sweeps [--docs 128]

Writes benchmarks/results/<date>/sweeps.json and sweeps.png (benchmarks/sitting.py).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.sitting import machine, result_stem, write_json
from benchmarks.workload import FIXED, documents, reference_model
from s2s_model.search import search_documents

BUDGETS = (1500, 3000, 6000, 12000, 24000)
BEAMS = (1, 2, 4, 8)


def docs_per_s(docs: list[torch.Tensor], budget: int, beam: int) -> float:
    model = reference_model()
    config = replace(FIXED, beam_size=beam)
    start = time.perf_counter()
    search_documents(model, docs, config, max_batch_tokens=budget)
    return len(docs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    docs = documents(args.docs)
    by_budget = {b: round(docs_per_s(docs, b, FIXED.beam_size), 2) for b in BUDGETS}
    by_beam = {k: round(docs_per_s(docs, 6000, k), 2) for k in BEAMS}
    result = {
        "machine": machine(),
        "docs": args.docs,
        "threads": 1,
        "by_budget": by_budget,
        "by_beam": by_beam,
    }
    stem = result_stem("sweeps")
    write_json(stem.with_suffix(".json"), result)
    plot(by_budget, by_beam, stem.with_suffix(".png"))
    print(json.dumps(result, indent=2))


def plot(by_budget: dict[int, float], by_beam: dict[int, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(list(by_budget), list(by_budget.values()), marker="o")
    left.set(xscale="log", xlabel="max_batch_tokens (docs x longest source)", ylabel="docs/s")
    left.set_xticks(list(by_budget), [str(b) for b in by_budget])
    left.minorticks_off()
    left.set_title("token budget (beam 4)")
    right.plot(list(by_beam), list(by_beam.values()), marker="o")
    right.set(xlabel="beam size", ylabel="docs/s", title="beam size (budget 6000)")
    fig.suptitle("fixed work: 30 tokens per document, 1 thread")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
