"""Host benchmark: the job's own work, with the search replaced by a stand-in.

    python -m benchmarks.host_bench [--docs 2000 20000] [--variants ...] [--profile]
    python -m benchmarks.host_bench --docs 100000 1000000 --variants instant   # the scale check

Each run is the local job (``pipeline.run.run``, the default runner and flags, the bundled model)
in a fresh child process, over Debian package descriptions written as 4 plain-line shards, with
the beam search replaced through ``Summarizer.with_search`` by ``s2s_model.stand_in.FirstPieces``:
every summary is its document's first 8 pieces. Reading, tokenizing, the Beam steps,
detokenizing, the quality columns and the Parquet files all run as in a real job. Variants:

- ``instant``: the stand-in answers at once; the job's default flags (one worker): what the
  job's own work costs.
- ``device``: the stand-in waits 0.2 ms a document with the GIL released, waits taking turns as
  searches on one device do (a 5,000 docs/s device); the job's default flags.
- ``device-overlap``: the same device with what a local GPU run gets by default (two bundle
  threads sharing the model, 4,096-document windows): host work overlaps the search.

For each: docs/s of each size, the marginal docs/s between the two sizes (fixed costs removed:
the rate a long job settles at), peak RSS of each child, and, with ``--profile``, the top of a
cProfile of the largest run. Documents come from ``../shared/data/debian-descriptions`` where
it exists, else the sample corpus (examples/debian), cycled. Writes
benchmarks/results/<date>/host.json (``--name``; benchmarks/sitting.py).
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import json
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.pipeline_bench import sample_texts
from benchmarks.sitting import machine, result_stem, write_json

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = ROOT.parent / "shared" / "data" / "debian-descriptions" / "debian_descriptions.jsonl.gz"
SHARDS = 4
DEVICE_WAIT_S = 0.0002  # a 5,000 docs/s device
PROFILE_LINES = 15
# The flags of a local GPU run's defaults that matter without a GPU (pipeline/options.py).
GPU_LOCAL = ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading",
             "--batch_window", "4096"]  # fmt: skip
VARIANTS: dict[str, tuple[float, list[str]]] = {
    "instant": (0.0, []),
    "device": (DEVICE_WAIT_S, []),
    "device-overlap": (DEVICE_WAIT_S, GPU_LOCAL),
}


def corpus() -> tuple[str, list[str]]:
    """(where the texts come from, the texts): one line each, blank ones left out."""
    if DEBIAN.exists():
        with gzip.open(DEBIAN, "rt", encoding="utf-8") as handle:
            texts = [json.loads(line)["description"] for line in handle]
        return "debian-descriptions", [" ".join(t.split()) for t in texts if t.strip()]
    return "examples/debian", sample_texts()


def write_shards(directory: Path, texts: list[str], count: int) -> None:
    """``count`` documents, ``texts`` cycled, as SHARDS plain-line files."""
    directory.mkdir(parents=True, exist_ok=True)
    for shard in range(SHARDS):
        with open(directory / f"part-{shard:05d}.txt", "w", encoding="utf-8") as handle:
            for i in range(shard, count, SHARDS):
                handle.write(texts[i % len(texts)] + "\n")


def child(inputs: str, output: str, variant: str, profile: str | None) -> None:
    """One job with the stand-in; prints its figures as JSON on the last line."""
    from pipeline.run import run
    from s2s_model.stand_in import FirstPieces

    wait, flags = VARIANTS[variant]
    argv = [f"{inputs}/*.txt", "--output", output, "--overwrite", *flags]
    search = FirstPieces(seconds_per_document=wait)
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    report = run(argv_with_inputs(argv), search=search)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - start
    figures: dict[str, Any] = {
        "seconds": seconds,
        "read": report.read,
        "summarized": report.summarized,
        "dead_lettered": report.dead_lettered,
        "rows_written": rows_in(Path(output) / "summaries"),
        "dead_letter_rows_written": rows_in(Path(output) / "dead_letter"),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if profiler and profile:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(PROFILE_LINES)
        Path(profile).write_text(stream.getvalue())
    print(json.dumps(figures))


def rows_in(folder: Path) -> int:
    """Rows in the Parquet files of one output folder, from their footers."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in folder.glob("*.parquet"))


def argv_with_inputs(argv: list[str]) -> list[str]:
    from pipeline.options import inputs_as_flags

    return inputs_as_flags(argv)


def run_child(inputs: Path, output: Path, variant: str, profile: Path | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.host_bench", "--child", str(inputs),
               str(output), variant]  # fmt: skip
    if profile:
        command += ["--profile-to", str(profile)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def measure(work: Path, sizes: list[int], variant: str, rounds: int,
            profile: bool) -> dict[str, Any]:  # fmt: skip
    """Best of ``rounds`` per size (sizes interleaved), the marginal rate, RSS, a profile."""
    wait, flags = VARIANTS[variant]
    best: dict[int, dict[str, Any]] = {}
    for _ in range(rounds):
        for size in sizes:
            figures = run_child(work / f"in{size}", work / "out", variant, None)
            written = figures["rows_written"], figures["dead_letter_rows_written"]
            counted = figures["summarized"] + figures["dead_lettered"]
            if not counted == figures["read"] == size or written != (
                figures["summarized"],
                figures["dead_lettered"],
            ):
                raise SystemExit(f"counts do not add up for {size} documents: {figures}")
            if size not in best or figures["seconds"] < best[size]["seconds"]:
                best[size] = figures
    small, large = sizes[0], sizes[-1]
    marginal = (large - small) / (best[large]["seconds"] - best[small]["seconds"])
    result: dict[str, Any] = {
        "variant": variant,
        "flags": flags,
        "wait_s_per_document": wait,
        "runs": {
            str(size): {
                "seconds": round(f["seconds"], 3),
                "docs_per_s": round(size / f["seconds"], 1),
                "peak_rss_mib": round(f["peak_rss_mib"], 1),
                "summarized": f["summarized"],
                "dead_lettered": f["dead_lettered"],
                "rows_written": f["rows_written"],
            }
            for size, f in best.items()
        },
        "marginal_docs_per_s": round(marginal, 1),
    }
    if wait:
        result["device_docs_per_s"] = round(1 / wait, 1)
    if profile:
        path = work / "profile.txt"
        run_child(work / f"in{large}", work / "out", variant, path)
        result["profile"] = path.read_text().splitlines()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs=2, default=[2000, 20_000])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=2, help="runs per size (best kept)")
    parser.add_argument("--profile", action="store_true", help="profile the largest run")
    parser.add_argument("--name", default="host", help="result file name in the sitting's folder")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        inputs, output, variant = args.child
        child(inputs, output, variant, args.profile_to)
        return
    source, texts = corpus()
    sizes = sorted(args.docs)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for size in sizes:
            write_shards(work / f"in{size}", texts, size)
        results = [
            measure(work, sizes, variant, args.rounds, args.profile) for variant in args.variants
        ]
    report = {
        "machine": machine(),
        "corpus": source,
        "sizes": sizes,
        "rounds": args.rounds,
        "results": results,
    }
    print(f"wrote {write_json(result_stem(args.name).with_suffix('.json'), report)}")
    for result in results:
        print(json.dumps({k: v for k, v in result.items() if k != "profile"}))
        for line in result.get("profile", [])[:40]:
            print(line)


if __name__ == "__main__":
    main()
