"""Decode benchmark: the fixed work (beam 4, exactly 30 tokens, 1,000 Debian-length documents,
sorted batches of 64) for each variant, in fresh processes, interleaved, best and median of N.

    python -m benchmarks.decode [--rounds 3] [--docs 1000] [--opennmt]

Prints a table and writes benchmarks/results/<date>/decode.json (benchmarks/sitting.py). With
--opennmt, OpenNMT-py's own timing script (../shared/anchors/opennmt/bench_decode.py, in its
virtualenv) runs the same work interleaved with ours.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.sitting import RESULTS, machine, result_stem, write_json

SHARED = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "opennmt"
ONMT_VENV = Path(os.environ.get("ONMT_VENV", Path.home() / "s2s-anchors" / "onmt-venv"))
ANCHOR_DATA = Path(os.environ.get("ANCHOR_DATA", Path.home() / "s2s-anchors" / "debian"))
SHORTLIST = 2000
# OpenNMT-py 3.5.1 checkpoints hold pickled options: its own loader needs this (its venv only).
ONMT_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


@dataclass(frozen=True)
class Variant:
    name: str
    threads: int
    processes: int = 1
    quantize: str = "none"
    shortlist: int = 0


VARIANTS = [
    Variant("fp32, 1 thread", threads=1),
    Variant("fp32, 2 threads", threads=2),
    Variant("fp32, 2 processes x 1 thread", threads=1, processes=2),
    Variant(
        "int8 + shortlist, 2 processes x 1 thread",
        threads=1,
        processes=2,
        quantize="int8",
        shortlist=SHORTLIST,
    ),
]


def worker(variant: Variant, docs: int, part: int) -> dict[str, float]:
    """Decode this process's share of the fixed work; returns its timing."""
    import torch

    torch.set_num_threads(variant.threads)
    from benchmarks.workload import BATCH_DOCS, FIXED, documents, reference_model
    from s2s_model import DecodeConfig
    from s2s_model.quantize import quantize_model
    from s2s_model.search import search_documents

    model = quantize_model(reference_model(), variant.quantize, "cpu")
    mine = documents(docs)[part :: variant.processes]
    decode = DecodeConfig(**{**FIXED.to_dict(), "shortlist": variant.shortlist})
    frequent = torch.arange(4, model.config.vocab_size)  # Zipf ranks: low ids are frequent
    start = time.perf_counter()
    for i in range(0, len(mine), BATCH_DOCS):
        batch = mine[i : i + BATCH_DOCS]
        search_documents(model, batch, decode, frequent=frequent)
    return {"seconds": time.perf_counter() - start, "docs": len(mine)}


def run_variant(variant: Variant, docs: int) -> float:
    """Wall seconds for the whole work, its processes started together."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.decode",
                "--worker",
                variant.name,
                "--part",
                str(part),
                "--docs",
                str(docs),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(variant.threads)},
        )
        for part in range(variant.processes)
    ]
    outputs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{variant.name}: a worker failed")
    return max(float(o["seconds"]) for o in outputs)


def run_opennmt(threads: int, docs: int, work: Path) -> float | None:
    """OpenNMT-py's decode seconds for the forced work, or None when the anchor is not set up."""
    script, python = SHARED / "bench_decode.py", ONMT_VENV / "bin" / "python"
    models = sorted(
        (ANCHOR_DATA / "onmt-lstm-ref").glob("model_step_*.pt"),
        key=lambda p: int(p.stem.rsplit("_", 1)[1]),
    )
    ready = script.exists() and python.exists() and (ANCHOR_DATA / "test.src").exists()
    if not (ready and models):
        return None
    results = work / f"onmt-{threads}.jsonl"
    results.unlink(missing_ok=True)
    subprocess.run(
        [str(python), str(script), "--model", str(models[-1]), "--src",
         str(ANCHOR_DATA / "test.src"), "--n-docs", str(docs), "--min-length", "30",
         "--max-length", "30", "--threads", str(threads), "--work", str(work),
         "--pred-out", str(work / "onmt.pred"), "--results", str(results)],
        check=True, capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": str(threads), **ONMT_ENV},
    )  # fmt: skip
    return float(json.loads(results.read_text().splitlines()[-1])["decode_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best of N)")
    parser.add_argument("--docs", type=int, default=1000, help="documents in the fixed work")
    parser.add_argument("--opennmt", action="store_true", help="also time OpenNMT-py")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        variant = next(v for v in VARIANTS if v.name == args.worker)
        print(json.dumps(worker(variant, args.docs, args.part)))
        return
    report(measure(args.rounds, args.docs, args.opennmt), args.docs)


def measure(rounds: int, docs: int, opennmt: bool) -> dict[str, list[float]]:
    from benchmarks.workload import matmul_ceiling

    times: dict[str, list[float]] = {}
    work = RESULTS / "opennmt-work"
    work.mkdir(parents=True, exist_ok=True)
    for _ in range(rounds):
        for threads in (1, 2):
            times.setdefault(f"matmul GFLOP/s, {threads} thread(s)", []).append(
                matmul_ceiling(threads)
            )
        for variant in VARIANTS:
            times.setdefault(variant.name, []).append(run_variant(variant, docs))
        for threads in (1, 2) if opennmt else ():
            seconds = run_opennmt(threads, docs, work)
            if seconds is not None:
                times.setdefault(f"OpenNMT-py 3.5.1, {threads} thread(s)", []).append(seconds)
    return times


def report(times: dict[str, list[float]], docs: int) -> None:
    from benchmarks.workload import FIXED, REFERENCE, decode_flops, documents

    flops = decode_flops(documents(docs), REFERENCE, FIXED)
    ceiling = {t: max(times[f"matmul GFLOP/s, {t} thread(s)"]) for t in (1, 2)}
    onmt = {t: times.get(f"OpenNMT-py 3.5.1, {t} thread(s)") for t in (1, 2)}
    onmt2 = onmt[2]
    rows = []
    for name, values in times.items():
        if name.startswith("matmul"):
            continue
        best, median = min(values), statistics.median(values)
        threads = 1 if "1 thread" in name and "processes" not in name else 2
        gflops = flops / best / 1e9
        rows.append(
            {
                "variant": name,
                "best_s": round(best, 2),
                "median_s": round(median, 2),
                "docs_per_s": round(docs / best, 1),
                "gen_tokens_per_s": round(docs * FIXED.max_len / best),
                "gflops": round(gflops, 1),
                "fraction_of_ceiling": round(gflops / ceiling[threads], 3),
                "vs_opennmt_2_threads": round(min(onmt2) / best, 2) if onmt2 else None,
                "vs_opennmt_same_cores": (
                    round(min(own) / best, 2) if (own := onmt[threads]) else None
                ),
            }
        )
    result = {
        "machine": machine(),
        "docs": docs,
        "flops": flops,
        "matmul_ceiling_gflops": ceiling,
        "rows": rows,
        "raw_seconds": times,
    }
    written = write_json(result_stem("decode").with_suffix(".json"), result)
    print(f"wrote {written}")
    print(f"fixed work: {docs} docs x beam 4 x 30 tokens = {flops / 1e12:.2f} TFLOP")
    print(f"matmul ceiling: {ceiling[1]:.0f} GFLOP/s (1 thread), {ceiling[2]:.0f} (2 threads)")
    header = (
        f"{'variant':44} {'best s':>7} {'docs/s':>7} {'GFLOP/s':>8} {'of ceil':>8}"
        f" {'vs ONMT same cores':>18} {'vs ONMT-2t':>10}"
    )
    print(header)
    for r in rows:
        same = "" if r["vs_opennmt_same_cores"] is None else f"{r['vs_opennmt_same_cores']:.2f}x"
        vs = "" if r["vs_opennmt_2_threads"] is None else f"{r['vs_opennmt_2_threads']:.2f}x"
        print(
            f"{r['variant']:44} {r['best_s']:7.1f} {r['docs_per_s']:7.1f} {r['gflops']:8.1f}"
            f" {r['fraction_of_ceiling']:8.0%} {same:>18} {vs:>10}"
        )


if __name__ == "__main__":
    main()
