"""Same weights in both engines: OpenNMT-py's translator against ours on the anchor checkpoint.

    python -m benchmarks.opennmt_compare [--docs 1000] [--rounds 2]

Needs ../shared/anchors/opennmt set up (its virtualenv, corpus and a trained checkpoint; see
its README). Free decoding as in real use (beam 4, max length 30, length penalty avg with alpha 1,
-max_length_ratio 0, documents stop at their own lengths), 2 threads each:

- agreement: the share of documents whose summary is identical, and for each difference the
  score gap under our model (a tie or rounding case when it is below 1e-4);
- speed: OpenNMT-py's own timing script (model load excluded) against our Summarizer on two
  cores (two search threads of one torch thread each, with and without refill; and one search on
  two intra-op threads), best of N interleaved rounds; then whole jobs, process
  start to exit: `onmt_translate` on one file against `python -m pipeline` over shards with two
  1-thread workers, as processes and as threads.

Writes benchmarks/results/<date>/opennmt.json (``--jobs-only``: opennmt_jobs.json; see
benchmarks/sitting.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.decode import ANCHOR_DATA, ONMT_ENV, ONMT_VENV, SHARED
from benchmarks.sitting import machine, result_stem, write_json

TIE = 1e-4
DECODE: dict[str, Any] = {
    "beam_size": 4, "max_len": 30, "max_len_b": 30, "length_penalty": "avg", "alpha": 1.0,
}  # fmt: skip


def anchor_checkpoint() -> Path:
    models = sorted(
        (ANCHOR_DATA / "onmt-lstm-ref").glob("model_step_*.pt"),
        key=lambda p: int(p.stem.rsplit("_", 1)[1]),
    )
    if not models or not (ONMT_VENV / "bin" / "python").exists():
        sys.exit("no anchor checkpoint: set up ../shared/anchors/opennmt first (see its README)")
    return models[-1]


def onmt_decode(model: Path, docs: int, threads: int, work: Path) -> tuple[float, list[str]]:
    """OpenNMT-py's decode seconds (load excluded) and its predictions, in input order."""
    results, pred = work / "onmt.jsonl", work / "onmt.pred"
    results.unlink(missing_ok=True)
    subprocess.run(
        [str(ONMT_VENV / "bin" / "python"), str(SHARED / "bench_decode.py"), "--model",
         str(model), "--src", str(ANCHOR_DATA / "test.src"), "--n-docs", str(docs),
         "--threads", str(threads), "--work", str(work), "--pred-out", str(pred),
         "--results", str(results)],
        check=True, capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": str(threads), **ONMT_ENV},
    )  # fmt: skip
    seconds = float(json.loads(results.read_text().splitlines()[-1])["decode_s"])
    return seconds, pred.read_text().splitlines()


def sources(docs: int) -> list[str]:
    lines = (ANCHOR_DATA / "test.src").read_text().splitlines()[:docs]
    return [" ".join(line.split()[:400]) for line in lines]


def ours_decode(
    checkpoint: Path, texts: list[str], threads: int, refill: bool = True, search_threads: int = 1
) -> tuple[float, list]:  # type: ignore[type-arg]
    """Our Summarizer's decode seconds (load excluded) and summaries, in input order."""
    from s2s_model import DecodeConfig, Summarizer

    summarizer = Summarizer.load(
        checkpoint,
        threads=threads,
        max_batch_tokens=64 * 400,
        refill=refill,
        search_threads=search_threads,
    )
    decode = DecodeConfig(**DECODE, compat="opennmt")
    start = time.perf_counter()
    out = summarizer.summarize(texts, decode)
    return time.perf_counter() - start, out


def agreement(checkpoint: Path, texts: list[str], ours: list, theirs: list[str]) -> dict:  # type: ignore[type-arg]
    """Identical summaries, and the score gap of each difference under our model."""
    from s2s_model import load_checkpoint

    model = load_checkpoint(checkpoint)
    gaps = []
    for i, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
        if mine.text == other:
            continue
        gap = _score(model, texts[i], mine.text) - _score(model, texts[i], other)
        gaps.append({"doc": i, "ours": mine.text, "opennmt": other, "score_gap": gap})
    same = len(texts) - len(gaps)
    return {
        "identical": same,
        "docs": len(texts),
        "identical_fraction": round(same / len(texts), 4),
        "differences_within_tie": sum(abs(g["score_gap"]) < TIE for g in gaps),
        "differences": gaps,
    }


def _score(checkpoint, text: str, summary: str) -> float:  # type: ignore[no-untyped-def]
    """OpenNMT-py's ranking score of ``summary``: log-prob with EOS over (tokens + 2) (avg)."""
    import torch

    from s2s_model import EOS_ID
    from s2s_model.model import shift_right

    tok = checkpoint.tokenizer
    src = torch.tensor([tok.encode(text)])
    ids = tok.encode(summary)
    tgt = torch.tensor([[*ids, EOS_ID]])
    with torch.inference_mode():
        log_probs = checkpoint.model(src, torch.tensor([src.size(1)]), shift_right(tgt))
    total = float(log_probs[0].gather(1, tgt[0].unsqueeze(1)).sum())
    return total / (len(ids) + 2)


JOB_DECODE_FLAGS = ["--beam_size", "4", "--max_len", "30", "--max_len_b", "30",
                    "--length_penalty", "avg", "--alpha", "1.0", "--compat", "opennmt"]  # fmt: skip
# Our job as a user runs it first (decode flags only: the defaults choose the parallelism), and
# the two explicit two-worker layouts of earlier sessions.
JOB_VARIANTS = {
    "default": [],
    "multi_processing": ["--torch_threads", "1", "--direct_num_workers", "2",
                         "--direct_running_mode", "multi_processing"],
    "multi_threading": ["--torch_threads", "1", "--direct_num_workers", "2",
                        "--direct_running_mode", "multi_threading"],
}  # fmt: skip


def whole_jobs(
    checkpoint: Path, model: Path, texts: list[str], work: Path, rounds: int = 1
) -> dict[str, Any]:
    """Process start to exit, best of ``rounds`` interleaved: onmt_translate (2 threads) on one
    file against our pipeline over 4 shards, in each of JOB_VARIANTS; and ``s2s summarize`` on
    the first 8 documents (the smallest job: start-up, model load and Beam's fixed costs)."""
    src = work / "src.txt"
    src.write_text("".join(t + "\n" for t in texts))
    shards = work / "shards"
    shards.mkdir(exist_ok=True)
    for k in range(4):
        (shards / f"part-{k}.txt").write_text("".join(t + "\n" for t in texts[k::4]))
    eight = work / "eight.txt"
    eight.write_text("".join(t + "\n" for t in texts[:8]))
    times: dict[str, list[float]] = {"onmt_translate_s": []}
    jobs: dict[str, Any] = {}
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(
            [str(ONMT_VENV / "bin" / "onmt_translate"), "-model", str(model), "-src", str(src),
             "-output", str(work / "cli.pred"), "-beam_size", "4", "-max_length", "30",
             "-max_length_ratio", "0", "-batch_size", "64", "-gpu", "-1"],
            check=True, capture_output=True,
            env={**os.environ, "OMP_NUM_THREADS": "2", **ONMT_ENV},
        )  # fmt: skip
        times["onmt_translate_s"].append(round(time.perf_counter() - start, 2))
        for name, flags in JOB_VARIANTS.items():
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "pipeline", "--input", str(shards / "*.txt"), "--output",
                 str(work / "out"), "--overwrite", "--model", str(checkpoint), *flags,
                 *JOB_DECODE_FLAGS],
                check=True, capture_output=True,
            )  # fmt: skip
            times.setdefault(f"pipeline_{name}_s", []).append(round(time.perf_counter() - start, 2))
            jobs[f"pipeline_{name}_identical_to_onmt_translate"] = same_as_cli(
                work / "out", (work / "cli.pred").read_text().splitlines()
            )
        start = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).with_name("s2s")), "summarize", str(eight), "--output",
             str(work / "out8"), "--overwrite", "--model", str(checkpoint), *JOB_DECODE_FLAGS],
            check=True, capture_output=True,
        )  # fmt: skip
        times.setdefault("s2s_summarize_8_documents_s", []).append(
            round(time.perf_counter() - start, 2)
        )
    jobs["runs_s"] = times
    jobs.update({name: min(values) for name, values in times.items()})
    return jobs


def same_as_cli(output: Path, predictions: list[str]) -> int:
    """Documents whose Parquet summary equals onmt_translate's line (shard k, line n of the
    4 shards written by ``whole_jobs`` is document k + 4 (n - first line))."""
    import pyarrow.parquet as pq

    rows = pq.read_table(sorted((output / "summaries").glob("*.parquet"))).to_pylist()
    first = min(int(row["doc_id"].rsplit(":", 1)[1]) for row in rows)
    same = 0
    for row in rows:
        path, line = row["doc_id"].rsplit(":", 1)
        shard = int(Path(path).stem.split("-")[1])
        same += row["summary"] == predictions[shard + 4 * (int(line) - first)]
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--job-rounds", type=int, default=1, help="whole-job rounds (best of)")
    parser.add_argument("--jobs-only", action="store_true", help="whole jobs only, no decode")
    args = parser.parse_args()
    model = anchor_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = work / "imported"
        from s2s_cli.opennmt_import import import_opennmt

        import_opennmt(model, checkpoint)
        texts = sources(args.docs)
        if args.jobs_only:
            jobs = whole_jobs(checkpoint, model, texts, work, args.job_rounds)
            jobs["job_speedup_default"] = round(
                jobs["onmt_translate_s"] / jobs["pipeline_default_s"], 2
            )
            jobs = {"machine": machine(), **jobs}
            write_json(result_stem("opennmt_jobs").with_suffix(".json"), jobs)
            print(json.dumps(jobs, indent=2))
            return
        onmt_s, ours_s, plain_s, intra_s = [], [], [], []
        for _ in range(args.rounds):
            seconds, theirs = onmt_decode(model, args.docs, 2, work)
            onmt_s.append(seconds)
            seconds, ours = ours_decode(checkpoint, texts, 1, search_threads=2)
            ours_s.append(seconds)
            seconds, plain = ours_decode(checkpoint, texts, 1, refill=False, search_threads=2)
            plain_s.append(seconds)
            seconds, intra = ours_decode(checkpoint, texts, 2)
            intra_s.append(seconds)
            for other in (plain, intra):
                if [s.text for s in other] != [s.text for s in ours]:
                    sys.exit("refill or threading changed a summary: a bug")
        jobs = whole_jobs(checkpoint, model, texts, work, args.job_rounds)
        result = {
            "machine": machine(),
            "checkpoint": model.name,
            "decode": DECODE,
            "agreement": agreement(checkpoint, texts, ours, theirs),
            "decode_s": {
                "opennmt_2_threads": onmt_s,
                "ours_2_search_threads": ours_s,
                "ours_2_search_threads_without_refill": plain_s,
                "ours_1_search_2_intra_op_threads": intra_s,
            },
            "summarizer_speedup": round(min(onmt_s) / min(ours_s), 2),
            "summarizer_speedup_without_refill": round(min(onmt_s) / min(plain_s), 2),
            "summarizer_speedup_intra_op_threads": round(min(onmt_s) / min(intra_s), 2),
            "jobs": jobs,
            "job_speedup_default": round(jobs["onmt_translate_s"] / jobs["pipeline_default_s"], 2),
            "job_speedup": round(jobs["onmt_translate_s"] / jobs["pipeline_multi_processing_s"], 2),
            "job_speedup_threads": round(
                jobs["onmt_translate_s"] / jobs["pipeline_multi_threading_s"], 2
            ),
            "mean_summary_tokens": round(sum(len(s.tokens) for s in ours) / len(ours), 2),
        }
    write_json(result_stem("opennmt").with_suffix(".json"), result)
    shown = {k: v for k, v in result.items() if k != "agreement"}
    shown["agreement"] = {k: v for k, v in result["agreement"].items() if k != "differences"}
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
