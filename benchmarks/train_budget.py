"""``s2s train --max_time`` held to its budget: the whole command's wall time, from start to exit.

README's recipe (recipes/debian-synopsis.json, decode candidates included) on ``--limit`` pairs
of the Debian corpus (../shared/data/debian-descriptions, split by ``s2s corpus debian``), each
budget run in a fresh process per thread count; then ``s2s summarize`` over the sample corpus with
the run's best/. Writes benchmarks/results/<date>/train-budget.json.

    python -m benchmarks.train_budget --budgets 60 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.sitting import machine, result_stem, write_json

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = ROOT.parent / "shared" / "data" / "debian-descriptions" / "debian_descriptions.jsonl.gz"
S2S = [str(Path(sys.executable).with_name("s2s"))]
FIELDS = ["--text_field", "description", "--summary_field", "synopsis"]
STOPPED = re.compile(r"stopped \((\w+)\) after (\d+) updates")


def corpus(work: Path) -> Path:
    subprocess.run([*S2S, "corpus", "debian", str(work), "--from_jsonl", str(DEBIAN)],
                   check=True, capture_output=True)  # fmt: skip
    return work


def train_once(data: Path, output: Path, budget: int, threads: int, limit: int) -> dict[str, Any]:
    command = [*S2S, "train", "--train", str(data / "train.jsonl"), "--valid",
               str(data / "valid.jsonl"), "--output", str(output), "--config",
               str(ROOT / "recipes" / "debian-synopsis.json"), "--limit", str(limit),
               "--max_time", f"{budget}s", "--threads", str(threads), *FIELDS]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.monotonic() - started
    match = STOPPED.search(done.stdout)
    history = json.loads((output / "trainer_state.json").read_text())["state"]["history"]
    return {
        "budget_s": budget,
        "threads": threads,
        "wall_s": round(wall, 2),
        "within_budget": wall <= budget,
        "stopped": match.group(1) if match else None,
        "updates": int(match.group(2)) if match else None,
        "validation_docs": {k: history[-1].get(k) for k in ("loss_docs", "rouge_docs")},
        "warnings": [line for line in done.stderr.splitlines() if "WARNING" in line],
        "lines": done.stderr.splitlines()[-6:] + done.stdout.splitlines(),
    }


def summarize_with(best: Path, output: Path) -> dict[str, Any]:
    inputs = str(ROOT / "examples" / "debian" / "part-00000.jsonl")
    done = subprocess.run([*S2S, "summarize", inputs, "--model", str(best), "--output",
                           str(output)], capture_output=True, text=True, check=True)  # fmt: skip
    success = json.loads((output / "_SUCCESS.json").read_text())
    return {"summarized": success["counts"]["summarized"], "last_line": done.stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[60])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, default=2000)
    args = parser.parse_args()
    if not DEBIAN.is_file():
        sys.exit(f"{DEBIAN} is missing: this benchmark needs ../shared")
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        data = corpus(Path(scratch) / "data")
        for budget in args.budgets:
            for threads in args.threads:
                run_dir = Path(scratch) / f"run-{budget}-{threads}"
                result = train_once(data, run_dir, budget, threads, args.limit)
                result["summarize"] = summarize_with(run_dir / "best", run_dir / "out")
                runs.append(result)
                print(f"{budget} s budget, {threads} thread(s): {result['wall_s']} s wall,"
                      f" {result['updates']} updates, {result['summarize']['summarized']}"
                      " documents summarized with its best/")  # fmt: skip
    path = write_json(result_stem("train-budget").with_suffix(".json"),
                      {"machine": machine(), "limit": args.limit, "runs": runs})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
