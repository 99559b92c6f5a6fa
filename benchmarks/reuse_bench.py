"""``--reuse`` benchmark: a scheduled re-run over yesterday's documents plus 10% new ones.

Day 1 summarizes ``--old`` documents; day 2 holds the same documents (in other shards, in another
order) plus ``--new`` ones and runs twice: with ``--reuse`` day 1's output, and fresh. Each run is
``python -m pipeline`` on the local runner, timed from process start to exit. The two day-2
outputs are compared row by row (the same summary; scores within 1e-5).

    python -m benchmarks.reuse_bench [--old 9000] [--new 1000] [--workdir /tmp/reuse-bench]

Documents are the long descriptions of ../shared/data/debian-descriptions (61,773 records; see
its SOURCE.md), a seeded sample, written as jsonl shards (``id`` = the record's md5) under
``--workdir``, outside the repository. The bundled model, its own decoding settings, one torch
thread. Writes benchmarks/results/<date>/reuse.json (benchmarks/sitting.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from benchmarks.sitting import machine, result_stem, write_json

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "debian-descriptions" / "debian_descriptions.jsonl.gz"
SEED = 16
SCORE_TOLERANCE = 1e-5


def sample_records(count: int, corpus: Path) -> list[dict[str, str]]:
    """``count`` records ({"id", "text"}) drawn without replacement, in a seeded order."""
    with gzip.open(corpus, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    chosen = random.Random(SEED).sample(records, count)
    return [{"id": r["md5"], "text": r["description"]} for r in chosen]


def write_shards(directory: Path, name: str, records: list[dict[str, str]], shards: int) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        lines = records[shard::shards]
        path = directory / f"{name}-{shard:03d}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return str(directory / f"{name}-*.jsonl")


def run_pipeline(pattern: str, output: Path, extra: list[str]) -> dict[str, Any]:
    """One local run, process start to exit: its wall seconds and its manifest's counts."""
    command = [sys.executable, "-m", "pipeline", "--input", pattern, "--output", str(output),
               "--id_field", "id", "--torch_threads", "1", "--overwrite", *extra]  # fmt: skip
    start = time.monotonic()
    subprocess.run(command, check=True)
    wall = time.monotonic() - start
    manifest = json.loads((output / "_SUCCESS.json").read_text(encoding="utf-8"))
    return {"wall_s": round(wall, 1), "job_s": manifest["duration_s"], **manifest["counts"]}


def compare(a: Path, b: Path) -> dict[str, int]:
    """Rows of two outputs by doc_id: how many differ in summary or score."""
    rows_a = {r["doc_id"]: r for r in pq.read_table(a / "summaries").to_pylist()}
    rows_b = {r["doc_id"]: r for r in pq.read_table(b / "summaries").to_pylist()}
    common = rows_a.keys() & rows_b.keys()
    return {
        "rows": len(common),
        "only_in_one": len(rows_a.keys() ^ rows_b.keys()),
        "summary_differs": sum(rows_a[i]["summary"] != rows_b[i]["summary"] for i in common),
        "score_differs": sum(
            abs(rows_a[i]["score"] - rows_b[i]["score"]) > SCORE_TOLERANCE for i in common
        ),
        "key_differs": sum(rows_a[i]["reuse_key"] != rows_b[i]["reuse_key"] for i in common),
    }


def cpu_model() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    names = [line.split(":", 1)[1].strip() for line in lines.splitlines() if "Model name" in line]
    return names[0] if names else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=int, default=9000, help="day 1 documents")
    parser.add_argument("--new", type=int, default=1000, help="documents new on day 2")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/reuse-bench"))
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()

    records = sample_records(args.old + args.new, args.corpus)
    old, new = records[: args.old], records[args.old :]
    day2 = old + new
    random.Random(SEED + 1).shuffle(day2)
    day1_input = write_shards(args.workdir / "incoming" / "day1", "part", old, 6)
    day2_input = write_shards(args.workdir / "incoming" / "day2", "shard", day2, 8)
    out = args.workdir / "summaries"

    day1 = run_pipeline(day1_input, out / "day1", [])
    reuse = run_pipeline(day2_input, out / "day2-reuse", ["--reuse", str(out / "day1")])
    fresh = run_pipeline(day2_input, out / "day2-fresh", [])
    result = {
        "documents": {"day1": args.old, "day2": len(day2), "new_on_day2": args.new},
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "runs": {"day1": day1, "day2_reuse": reuse, "day2_fresh": fresh},
        "day2_reuse_vs_fresh": {
            "decoded_ratio": round(reuse["decoded"] / fresh["decoded"], 3),
            "wall_ratio": round(reuse["wall_s"] / fresh["wall_s"], 3),
            "job_ratio": round(reuse["job_s"] / fresh["job_s"], 3),
        },
        "day2_rows_compared": compare(out / "day2-reuse", out / "day2-fresh"),
    }
    write_json(result_stem("reuse").with_suffix(".json"), {"machine": machine(), **result})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
