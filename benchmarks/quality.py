"""What the cheaper decoding costs in quality: the bundled model on its test split, exact against
``--quantize int8``, ``--shortlist N``, both, and narrower beams, with ROUGE-L, its change, the
fraction of summaries that change, and docs/s (one thread): the quality-speed frontier, also
drawn as ``frontier.png`` beside the JSON. Which int8 kernels run (torch's quantized engine, the
CPU's vector capability, VNNI) is recorded beside the figures.

    python -m benchmarks.quality [--docs N] [--threads 1]

The test split is the bundled model's own (split by source package, 1,155 documents), rebuilt from
``../shared/data/debian-descriptions`` by ``s2s corpus debian`` when ``build/debian-synopsis/data``
lacks it (``split_file`` in benchmarks/trust.py).
Writes benchmarks/results/<date>/quality.json (benchmarks/sitting.py).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.sitting import machine, result_stem, write_json
from benchmarks.trust import SUMMARY, TEXT, split_file
from s2s_model import Summarizer
from s2s_model.evaluation import rouge


@dataclass(frozen=True)
class Setting:
    name: str
    quantize: str = "none"
    shortlist: int = 0
    beam_size: int | None = None  # None: the model's


SETTINGS = [
    Setting("exact fp32"),
    Setting("int8", quantize="int8"),
    Setting("shortlist 2000", shortlist=2000),
    Setting("shortlist 4000", shortlist=4000),
    Setting("int8 + shortlist 2000", quantize="int8", shortlist=2000),
    Setting("int8 + shortlist 4000", quantize="int8", shortlist=4000),
    Setting("beam 2", beam_size=2),
    Setting("beam 1 (greedy)", beam_size=1),
    Setting("int8 + shortlist 2000, beam 2", quantize="int8", shortlist=2000, beam_size=2),
]


def run(setting: Setting, texts: list[str], threads: int) -> tuple[list[str], float]:
    """Summaries of ``texts`` under ``setting`` and the seconds they took."""
    summarizer = Summarizer.load(threads=threads, quantize=setting.quantize)
    changes = {"shortlist": setting.shortlist, "beam_size": setting.beam_size}
    decode = summarizer.decode.with_overrides(changes)
    if decode.n_best > decode.beam_size:
        decode = decode.with_overrides({"n_best": decode.beam_size})
    summarizer.summarize(texts[:8], decode)  # warm up
    start = time.perf_counter()
    summaries = [s.text for s in summarizer.summarize(texts, decode)]
    return summaries, time.perf_counter() - start


def kernels() -> dict[str, object]:
    """Which int8 and vector kernels this CPU runs."""
    import torch

    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = next((ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")), "")
    return {
        "quantized_engine": torch.backends.quantized.engine,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_vnni": "avx512_vnni" in flags.split(),
        "avx_vnni": "avx_vnni" in flags.split(),
    }


def draw_frontier(rows: list[dict[str, object]], path: Path) -> None:
    """ROUGE-L against docs/s, one labelled point per setting."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for row in rows:
        speed, score = float(row["docs_per_s"]), float(row["rougeL"])  # type: ignore[arg-type]
        axes.scatter([speed], [score])
        axes.annotate(str(row["setting"]), (speed, score), fontsize=7, xytext=(4, 2),
                      textcoords="offset points")  # fmt: skip
    axes.set(xlabel="docs/s (one thread)", ylabel="ROUGE-L (test split)",
             title="bundled model: quality against speed")  # fmt: skip
    figure.savefig(str(path), dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=None, help="first N test documents (all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    records = [json.loads(line) for line in split_file("test").read_text().splitlines()]
    records = records[: args.docs]
    texts, references = [r[TEXT] for r in records], [r[SUMMARY] for r in records]
    rows: list[dict[str, Any]] = []
    exact = None
    for setting in SETTINGS:
        summaries, seconds = run(setting, texts, args.threads)
        exact = exact or summaries
        rouge_l = rouge(references, summaries).rougeL
        rows.append(
            {
                "setting": setting.name,
                "rougeL": round(rouge_l, 2),
                "changed_fraction": round(
                    sum(a != b for a, b in zip(summaries, exact, strict=True)) / len(texts), 4
                ),
                "docs_per_s": round(len(texts) / seconds, 1),
            }
        )
    for row in rows:
        row["rougeL_change"] = round(float(row["rougeL"]) - float(rows[0]["rougeL"]), 2)
    result = {
        "machine": machine(),
        "docs": len(texts),
        "threads": args.threads,
        "kernels": kernels(),
        "rows": rows,
    }
    stem = result_stem("quality")  # the plot of quality-2.json is frontier-2.png
    write_json(stem.with_suffix(".json"), result)
    draw_frontier(
        rows, stem.with_name(stem.name.replace("quality", "frontier")).with_suffix(".png")
    )
    print(f"bundled model, {len(texts)} test documents, {args.threads} thread(s)")
    print(f"{'setting':24} {'ROUGE-L':>8} {'change':>7} {'changed':>8} {'docs/s':>7}")
    for row in rows:
        print(
            f"{row['setting']:24} {row['rougeL']:8.2f} {row['rougeL_change']:+7.2f}"
            f" {row['changed_fraction']:8.1%} {row['docs_per_s']:7.1f}"
        )


if __name__ == "__main__":
    main()
