"""Pipeline benchmark: `python -m pipeline` on the local runner against the bare Summarizer on
the same documents (docs/s ratio, padding efficiency), and peak memory at 1,000 and 10,000
documents (ratio).

The pipeline is timed from process start to exit, so its figure includes starting Python, Beam
and loading the model; it also runs on twice the documents, and the difference between the two
runs gives its marginal docs/s (the rate a long job settles at, fixed costs removed).

    python -m benchmarks.pipeline_bench [--docs 500] [--model DIR]

Documents are the sample corpus's texts (examples/debian), cycled to the wanted count, written as
plain-line shards. Both sides use one torch thread and the model's own decoding settings. The
memory runs decode with beam 1 and at most 8 tokens: they measure how memory grows with the
corpus, not decoding. Writes benchmarks/results/<date>/pipeline.json (benchmarks/sitting.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sitting import machine, result_stem, write_json
from s2s_model import Summarizer

ROOT = Path(__file__).resolve().parents[1]
SHARDS = 4


def sample_texts() -> list[str]:
    texts = []
    for path in sorted((ROOT / "examples" / "debian").glob("part-*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if path.suffix == ".jsonl":
                texts.append(json.loads(line)["text"])
            elif line.strip():
                texts.append(line)
    return texts


def write_shards(directory: Path, count: int) -> list[str]:
    """``count`` documents as SHARDS plain-line files; returns the documents in order."""
    base = sample_texts()
    docs = [base[i % len(base)] for i in range(count)]
    for shard in range(SHARDS):
        lines = docs[shard::SHARDS]
        (directory / f"part-{shard:05d}.txt").write_text("".join(t + "\n" for t in lines))
    return docs


def run_pipeline(inputs: Path, output: Path, model: str | None, extra: list[str]) -> float:
    """Wall seconds of one local pipeline run, process start to exit."""
    command = [sys.executable, "-m", "pipeline", "--input", str(inputs / "*.txt"),
               "--output", str(output), "--torch_threads", "1", *extra]  # fmt: skip
    if model:
        command += ["--model", model]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def peak_rss_mib(inputs: Path, output: Path, model: str | None) -> float:
    """Peak resident memory (MiB) of a pipeline run in a fresh child process."""
    script = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    command = [sys.executable, "-c", script, sys.executable, "-m", "pipeline", "--input",
               str(inputs / "*.txt"), "--output", str(output), "--torch_threads", "1",
               "--beam_size", "1", "--max_len", "8"]  # fmt: skip
    if model:
        command += ["--model", model]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        docs = write_shards(work / "in", args.docs)
        summarizer = Summarizer.load(args.model, threads=1)
        summarizer.summarize(docs[:8])  # warm up
        start = time.perf_counter()
        summarizer.summarize(docs)
        bare = time.perf_counter() - start
        piped = run_pipeline(work / "in", work / "out", args.model, [])
        manifest = json.loads((work / "out" / "_SUCCESS.json").read_text())
        (work / "in2").mkdir()
        write_shards(work / "in2", 2 * args.docs)
        piped_twice = run_pipeline(work / "in2", work / "out2", args.model, [])
        memory = {}
        for count in (1000, 10_000):
            (work / f"mem{count}").mkdir()
            write_shards(work / f"mem{count}", count)
            memory[count] = peak_rss_mib(work / f"mem{count}", work / f"memout{count}", args.model)
    result = {
        "machine": machine(),
        "docs": args.docs,
        "summarizer_docs_per_s": round(args.docs / bare, 2),
        "pipeline_docs_per_s": round(args.docs / piped, 2),
        "pipeline_over_summarizer": round(bare / piped, 3),
        "pipeline_marginal_docs_per_s": round(args.docs / (piped_twice - piped), 2),
        "marginal_over_summarizer": round(bare / (piped_twice - piped), 3),
        "padding_efficiency": manifest.get("padding_efficiency"),
        "decode": summarizer.decode.to_dict(),
        "peak_rss_mib": memory,
        "rss_ratio_10k_over_1k": round(memory[10_000] / memory[1000], 3),
    }
    write_json(result_stem("pipeline").with_suffix(".json"), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
