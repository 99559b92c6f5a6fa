"""``make bench-gpu``: what only a GPU can show, in one prepared run of at most 8 minutes.

Runs with a plain ``python3`` that has a CUDA torch (2.11 or newer) and the repository on
``PYTHONPATH``; Beam may be missing (the pipeline parts then say so and are skipped). Every figure
goes to ``OUT/gpu.json`` (default ``benchmarks/results/gpu``); each part is timed and its failure
recorded instead of ending the run, so one broken part still leaves the others' figures.

Parts:

1. ``agreement``: the bundled model on 200 example documents, CUDA (fp32, TF32 off) against the
   CPU: identical summaries and the largest score difference.
2. ``bf16``: the same documents under bf16 autocast on CUDA: agreement with fp32 and speed.
3. ``throughput``: the fixed decode work (reference model, beam 4, exactly 30 tokens) in docs/s
   at several token budgets on the GPU, against one CPU core and all of them.
4. ``host_syncs``: host-device synchronisations per decode step, counted by CUDA's own sync debug
   mode while the bundled model summarizes 64 documents.
5. ``pipeline``: ``python -m pipeline --device cuda`` over examples/ (needs Beam).
6. ``out_of_memory``: a real CUDA out-of-memory through the model handler, with the process
   capped to a small memory fraction: every document still ends as a row or a dead letter.
7. ``training``: 200 updates of the reference-size model on the GPU, fp32 and bf16.

``--smoke`` runs every part small on whatever device there is (the CPU too), to check the
script's logic before a GPU run is spent on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from s2s_model import RuntimeSettings, Summarizer
from s2s_model.device import device_info

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "debian"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu"
BUDGETS = (6_000, 24_000, 96_000)
SCORE_TOLERANCE = 1e-3


def example_texts(count: int) -> list[str]:
    """The first ``count`` texts of examples/debian (JSONL shards and one-per-line shards)."""
    texts: list[str] = []
    for path in sorted(EXAMPLES.glob("part-*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            texts.append(json.loads(line)["text"] if path.suffix == ".jsonl" else line)
    return texts[:count]


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(device: str, work: Callable[[], Any]) -> tuple[Any, float]:
    _synchronize(device)
    start = time.perf_counter()
    result = work()
    _synchronize(device)
    return result, time.perf_counter() - start


def agreement(device: str, docs: int) -> dict[str, Any]:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    texts = example_texts(docs)
    cpu = Summarizer.load(settings=RuntimeSettings(device="cpu"))
    gpu = Summarizer.load(settings=RuntimeSettings(device=device))
    reference, cpu_s = _timed("cpu", lambda: cpu.summarize(texts))
    ours, gpu_s = _timed(device, lambda: gpu.summarize(texts))
    same = sum(a.text == b.text for a, b in zip(reference, ours, strict=True))
    diffs = [abs(a.score - b.score) for a, b in zip(reference, ours, strict=True)]
    return {
        "documents": len(texts),
        "identical_summaries": same,
        "identical_fraction": same / len(texts),
        "max_score_diff": max(diffs),
        "cpu_seconds": cpu_s,
        "gpu_seconds": gpu_s,
    }


def bf16(device: str, docs: int) -> dict[str, Any]:
    texts = example_texts(docs)
    fp32 = Summarizer.load(settings=RuntimeSettings(device=device))
    half = Summarizer.load(settings=RuntimeSettings(device=device, precision="bf16"))
    fp32.summarize(texts[:8])
    half.summarize(texts[:8])
    reference, fp32_s = _timed(device, lambda: fp32.summarize(texts))
    ours, bf16_s = _timed(device, lambda: half.summarize(texts))
    same = sum(a.text == b.text for a, b in zip(reference, ours, strict=True))
    return {
        "documents": len(texts),
        "identical_to_fp32": same,
        "identical_fraction": same / len(texts),
        "fp32_seconds": fp32_s,
        "bf16_seconds": bf16_s,
        "bf16_speedup": fp32_s / bf16_s,
    }


def _fixed_work_rate(device: str, docs: int, budget: int, threads: int | None) -> float:
    from benchmarks.workload import FIXED, documents, reference_model
    from s2s_model.search import search_documents

    if threads is not None:
        torch.set_num_threads(threads)
    model = reference_model().to(device)
    sources = [d.to(device) for d in documents(docs)]
    with torch.inference_mode():
        search_documents(model, sources[:16], FIXED, max_batch_tokens=budget)
        _, seconds = _timed(
            device, lambda: search_documents(model, sources, FIXED, max_batch_tokens=budget)
        )
    return docs / seconds


def throughput(device: str, docs: int, cpu_docs: int) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {"documents": docs, "cpu_documents": cpu_docs, "gpu": {}}
    for budget in BUDGETS:
        result["gpu"][str(budget)] = _fixed_work_rate(device, docs, budget, None)
    result["cpu_1_thread"] = _fixed_work_rate("cpu", cpu_docs, 6_000, 1)
    result[f"cpu_{cores}_threads"] = _fixed_work_rate("cpu", cpu_docs, 6_000, cores)
    best = max(result["gpu"].values())
    result["gpu_best_vs_one_cpu_core"] = best / result["cpu_1_thread"]
    return result


class SyncCounter:
    """Counts CUDA's sync warnings (``torch.cuda.set_sync_debug_mode('warn')``) in a block."""

    def __init__(self) -> None:
        self.count = 0
        self._catcher = warnings.catch_warnings(record=True)
        self._records: list[warnings.WarningMessage] = []

    def __enter__(self) -> SyncCounter:
        self._records = self._catcher.__enter__() or []
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc: object) -> None:
        torch.cuda.set_sync_debug_mode("default")
        self.count = sum("synchroniz" in str(r.message) for r in self._records)
        self._catcher.__exit__(*exc)


def host_syncs(device: str, docs: int) -> dict[str, Any]:
    from s2s_model.search import SearchStats

    texts = example_texts(docs)
    summarizer = Summarizer.load(settings=RuntimeSettings(device=device))
    summarizer.summarize(texts[:4])
    stats = SearchStats()
    if device != "cuda":
        summarizer.summarize(texts, stats=stats)
        return {"documents": docs, "skipped": "no CUDA: sync debug mode needs a GPU"}
    with SyncCounter() as counter:
        summarizer.summarize(texts, stats=stats)
    steps = max(1, stats.steps)
    return {
        "documents": docs,
        "syncs": counter.count,
        "steps": steps,
        "syncs_per_step": counter.count / steps if steps else None,
    }


def pipeline(device: str, out: Path) -> dict[str, Any]:
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        return {"skipped": "apache_beam is not installed here"}
    target = Path(tempfile.mkdtemp(prefix="s2s-gpu-pipeline-"))
    argv = [sys.executable, "-m", "pipeline", str(EXAMPLES / "part-*"), "--id_field", "id",
            "--output", str(target), "--device", device]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
    seconds = time.perf_counter() - started
    manifest_path = target / "_SUCCESS.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    return {
        "returncode": done.returncode,
        "seconds": seconds,
        "stderr_tail": done.stderr[-1500:],
        "counts": manifest["counts"] if manifest else None,
        "runtime": manifest.get("runtime") if manifest else None,
    }


def out_of_memory(device: str, docs: int) -> dict[str, Any]:
    try:
        from pipeline.model_handler import InferenceFailure, Seq2SeqModelHandler
        from pipeline.sources import Document
    except ImportError:
        return {"skipped": "apache_beam is not installed here"}
    texts = example_texts(docs)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(0.002)
    settings = RuntimeSettings(device=device, max_batch_tokens=400_000)
    handler = Seq2SeqModelHandler(settings=settings, batch_window=len(texts))
    try:
        model = handler.load_model()
        long_texts = [" ".join([t] * 20) for t in texts]
        batch = [Document(f"d{i}", "gpu", text) for i, text in enumerate(long_texts)]
        results = list(handler.run_inference(batch, model))
    finally:
        if device == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)
    failures = [r.inference for r in results if isinstance(r.inference, InferenceFailure)]
    return {
        "documents": len(batch),
        "results": len(results),
        "summarized": len(results) - len(failures),
        "dead_lettered": dict(Counter(f.reason for f in failures)),
        "every_document_accounted": len(results) == len(batch),
    }


def training(device: str, steps: int) -> dict[str, Any]:
    from benchmarks.workload import REFERENCE
    from s2s_model.config import TrainConfig
    from s2s_model.train import fit

    texts = example_texts(400)
    pairs = [(text, " ".join(text.split()[:8])) for text in texts]
    result: dict[str, Any] = {"steps": steps}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(vocab_size=1000, max_steps=steps, eval_every=steps, valid_sample=16,
                             tokenizer_sentences=800, precision=precision)  # fmt: skip
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            done = fit(pairs, pairs[:32], work, model_config=REFERENCE, train_config=config,
                       device=device, progress=False)  # fmt: skip
            seconds = time.perf_counter() - started
        result[precision] = {"seconds": seconds, "steps_per_s": done.steps / seconds,
                             "valid_nll": done.best.get("valid_nll")}  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--smoke", action="store_true", help="every part, small, on any device")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        sys.exit("no CUDA device: make bench-gpu needs an NVIDIA GPU (or pass --smoke)")
    small = args.smoke
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "agreement": lambda: agreement(device, 16 if small else 200),
        "bf16": lambda: bf16(device, 16 if small else 200),
        "throughput": lambda: throughput(device, 32 if small else 1000, 16 if small else 128),
        "host_syncs": lambda: host_syncs(device, 8 if small else 64),
        "pipeline": lambda: pipeline(device, args.out),
        "out_of_memory": lambda: out_of_memory(device, 4 if small else 64),
        "training": lambda: training(device, 4 if small else 200),
    }
    report: dict[str, Any] = {"machine": device_info(device), "smoke": small}
    if device == "cuda":
        report["machine"]["gpu_memory_gib"] = (
            torch.cuda.get_device_properties(0).total_memory / 2**30
        )
    for name, part in parts.items():
        started = time.perf_counter()
        try:
            report[name] = part()
        except Exception:  # one broken part must not lose the others' figures
            report[name] = {"error": traceback.format_exc()[-3000:]}
        report[name]["part_seconds"] = round(time.perf_counter() - started, 2)
        print(f"{name}: {json.dumps(report[name])[:400]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'gpu.json'}")


if __name__ == "__main__":
    main()
