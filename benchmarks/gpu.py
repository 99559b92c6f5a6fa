"""``make bench-gpu``: what only a GPU can show, in one prepared run of at most 8 minutes.

Runs with a plain ``python3`` that has a CUDA torch (2.11 or newer) and the repository on
``PYTHONPATH``; Beam may be missing (the pipeline parts then say so and are skipped). Every figure
goes to ``OUT/gpu.json`` (default ``benchmarks/results/<date>/gpu.json``, ``gpu-2.json`` on a
later run the same day: benchmarks/sitting.py); each part is timed and its failure
recorded instead of ending the run, so one broken part still leaves the others' figures.

Parts:

1. ``agreement``: the bundled model on 200 example documents, CUDA (fp32) against the CPU:
   identical summaries and the largest score difference, twice: at the TF32 settings the product
   runs with (torch's, which the product never changes: cuDNN's LSTMs may use TF32), then with
   TF32 off in matmuls and cuDNN. Later parts run at the product's settings again.
2. ``bf16``: the same documents under bf16 autocast on CUDA: agreement with fp32 and speed.
3. ``throughput``: the fixed decode work (reference model, beam 4, exactly 30 tokens) in docs/s
   at several token budgets on the GPU, against one CPU core and all of them.
4. ``host_syncs``: host-blocking synchronisations per decode step, counted from the profiler's
   CUDA runtime calls while the bundled model summarizes 64 documents (with a control: three
   ``.item()`` calls must count three).
5. ``pipeline``: ``python -m pipeline --device cuda`` over examples/ (needs Beam).
   ``peak_memory``: the reference-size model's peak GPU memory at the GPU default budget.
   ``sync_sites``: where a search first waits for the GPU, beyond the reads it means to make.
6. ``out_of_memory``: a real CUDA out-of-memory through the model handler, with the process
   capped to a small memory fraction: every document still ends as a row or a dead letter.
7. ``training``: 200 updates of the reference-size model on the GPU, fp32 and bf16.
8. ``defaults``: with ``--corpus`` (JSONL, gzipped or not, a ``text`` or ``description`` field),
   the bundled model over thousands of its documents in the pipeline's windows, for several
   window / token budget / search thread / precision settings: docs/s and agreement with the
   first, to choose what a CUDA worker runs by default.
9. ``pipeline_scale``: with ``--corpus``, the whole job on those documents (4 shards), with the
   default flags and with each ``--pipeline_flags`` set.

``--smoke`` runs every part small on whatever device there is (the CPU too), to check the
script's logic before a GPU run is spent on it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks.sitting import result_stem, write_json
from s2s_model import RuntimeSettings, Summarizer
from s2s_model.config import Precision
from s2s_model.device import device_info

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "debian"
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


def tf32_settings() -> dict[str, bool]:
    return {
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }


@contextmanager
def tf32(allowed: bool | None) -> Iterator[dict[str, bool]]:
    """TF32 in matmuls and cuDNN set to ``allowed`` (None: left as they are) for the block, and
    put back after it; yields the settings in effect."""
    before = tf32_settings()
    if allowed is not None:
        torch.backends.cuda.matmul.allow_tf32 = allowed
        torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield tf32_settings()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before["matmul_allow_tf32"]
        torch.backends.cudnn.allow_tf32 = before["cudnn_allow_tf32"]


def agreement(device: str, docs: int) -> dict[str, Any]:
    """The device's summaries against the CPU's, at the product's TF32 settings and TF32 off."""
    texts = example_texts(docs)
    cpu = Summarizer.load(settings=RuntimeSettings(device="cpu"))
    gpu = Summarizer.load(settings=RuntimeSettings(device=device))
    reference, cpu_s = _timed("cpu", lambda: cpu.summarize(texts))
    result: dict[str, Any] = {"documents": len(texts), "cpu_seconds": cpu_s}
    for name, allowed in (("product_tf32", None), ("tf32_off", False)):
        with tf32(allowed) as settings:
            ours, gpu_s = _timed(device, lambda: gpu.summarize(texts))
        same = sum(a.text == b.text for a, b in zip(reference, ours, strict=True))
        diffs = [abs(a.score - b.score) for a, b in zip(reference, ours, strict=True)]
        result[name] = {
            **settings,
            "identical_summaries": same,
            "identical_fraction": same / len(texts),
            "max_score_diff": max(diffs),
            "gpu_seconds": gpu_s,
        }
    return result


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


SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def _sync_calls(work: Callable[[], Any], where: Counter[str] | None = None) -> tuple[int, int]:
    """(host-blocking synchronisations, memory copies) CUDA's runtime saw in ``work``, counted
    from the profiler's runtime-API events; ``where`` receives the sync calls' nearest frames
    of our code."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities, with_stack=where is not None) as prof:
        work()
    events = [e for e in prof.events() if e.name.startswith("cuda")]
    syncs = [e for e in events if e.name in SYNC_CALLS]
    if where is not None:
        for event in syncs:
            op, stack = event, list(event.stack or [])
            while not stack and op.cpu_parent is not None:
                op = op.cpu_parent
                stack = list(op.stack or [])
            ours = [f for f in stack if "s2s_model" in f or "pipeline" in f]
            where[f"{op.name}: " + (" <- ".join(ours[:3]) or "(no frame of ours)")] += 1
    copies = sum(e.name.startswith("cudaMemcpy") for e in events)
    return len(syncs), copies


def host_syncs(device: str, docs: int) -> dict[str, Any]:
    from s2s_model.search import SearchStats

    texts = example_texts(docs)
    summarizer = Summarizer.load(settings=RuntimeSettings(device=device))
    summarizer.summarize(texts[:4])
    stats = SearchStats()
    if device != "cuda":
        summarizer.summarize(texts, stats=stats)
        return {"documents": docs, "skipped": "no CUDA: the runtime's sync calls need a GPU"}
    control = _sync_calls(lambda: [torch.ones(1, device=device).item() for _ in range(3)])
    where = Counter[str]()
    syncs, copies = _sync_calls(lambda: summarizer.summarize(texts, stats=stats), where)
    steps = max(1, stats.steps)
    return {
        "documents": docs,
        "control_three_item_calls": {"syncs": control[0], "copies": control[1]},
        "syncs": syncs,
        "device_to_host_copies_and_others": copies,
        "steps": steps,
        "syncs_per_step": syncs / steps,
        "sync_sources": dict(where.most_common(12)),
    }


# Where the search may wait for the device on purpose (the step's one read, the final read), and
# the host-side bookkeeping of documents joining and leaving, allowed in turn by ``sync_sites``.
ALLOWANCES = (
    (),
    ("search._admit",),
    ("search._admit", "search._Active.keep", "search._Results.leave"),
)


def sync_sites(device: str, docs: int) -> dict[str, Any]:
    """The first call that waits for the device, under ``set_sync_debug_mode("error")``, with
    ``Tensor.tolist`` (the designed reads) and each set of ``ALLOWANCES`` let through."""
    import importlib

    if device != "cuda":
        return {"skipped": "no CUDA: sync debug mode needs a GPU"}
    texts = example_texts(docs)
    summarizer = Summarizer.load(settings=RuntimeSettings(device=device))
    summarizer.summarize(texts[:4])
    module = importlib.import_module("s2s_model.search")

    def allowed(function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("default")
            try:
                return function(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(mode)

        return call

    found: dict[str, Any] = {}
    for names in ALLOWANCES:
        patched: list[tuple[Any, str, Any]] = [(torch.Tensor, "tolist", torch.Tensor.tolist)]
        for name in names:
            owner: Any = module
            *path, attr = name.split(".")[1:]
            for part in path:
                owner = getattr(owner, part)
            patched.append((owner, attr, getattr(owner, attr)))
        for owner, attr, original in patched:
            setattr(owner, attr, allowed(original))
        torch.cuda.set_sync_debug_mode("error")
        try:
            summarizer.summarize(texts)
            found[" + ".join(names) or "nothing"] = "no other sync"
        except RuntimeError:
            frames = [line for line in traceback.format_exc().splitlines() if "s2s_model" in line]
            found[" + ".join(names) or "nothing"] = frames[-4:]
        finally:
            torch.cuda.set_sync_debug_mode("default")
            for owner, attr, original in patched:
                setattr(owner, attr, original)
    return {"documents": docs, "first_sync_with_allowed": found}


def peak_memory(device: str, docs: int) -> dict[str, Any]:
    """Peak GPU memory of the reference-size model's fixed work at the GPU default budget."""
    from benchmarks.workload import FIXED, documents, reference_model
    from s2s_model.config import GPU_MAX_BATCH_TOKENS
    from s2s_model.search import search_documents

    if device != "cuda":
        return {"skipped": "no CUDA: peak memory is a GPU figure"}
    model = reference_model().to(device)
    sources = [d.to(device) for d in documents(docs)]
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        _, seconds = _timed(
            device,
            lambda: search_documents(model, sources, FIXED, max_batch_tokens=GPU_MAX_BATCH_TOKENS),
        )
    return {
        "documents": docs,
        "max_batch_tokens": GPU_MAX_BATCH_TOKENS,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "docs_per_s": docs / seconds,
    }


def _job(pattern: str, device: str, flags: list[str]) -> dict[str, Any]:
    """``python -m pipeline`` over ``pattern`` on ``device``: exit status, seconds, manifest."""
    target = Path(tempfile.mkdtemp(prefix="s2s-gpu-pipeline-"))
    argv = [sys.executable, "-m", "pipeline", pattern, "--id_field", "id", "--output",
            str(target), "--device", device, *flags]  # fmt: skip
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


def _has_beam() -> bool:
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        return False
    return True


def pipeline(device: str) -> dict[str, Any]:
    if not _has_beam():
        return {"skipped": "apache_beam is not installed here"}
    return _job(str(EXAMPLES / "part-*"), device, [])


def out_of_memory(device: str, docs: int) -> dict[str, Any]:
    """Caps the process's CUDA memory ever lower until a batch really runs out of it."""
    try:
        import pipeline.model_handler as handler_module
        from pipeline.model_handler import InferenceFailure, Seq2SeqModelHandler
        from pipeline.sources import Document
    except ImportError:
        return {"skipped": "apache_beam is not installed here"}
    texts = [" ".join([t] * 20) for t in example_texts(docs)]
    batch = [Document(f"d{i}", "gpu", text) for i, text in enumerate(texts)]
    freed = Counter[str]()
    release = handler_module._free_cached_memory

    def counting_release(model: Summarizer) -> None:
        freed["out_of_memory_errors"] += 1
        release(model)

    handler_module._free_cached_memory = counting_release
    tries: list[dict[str, Any]] = []
    try:
        for fraction in (0.002, 0.001, 0.0005) if device == "cuda" else (1.0,):
            freed.clear()
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.set_per_process_memory_fraction(fraction)
            settings = RuntimeSettings(device=device, max_batch_tokens=400_000)
            handler = Seq2SeqModelHandler(settings=settings, batch_window=len(batch))
            try:
                results = list(handler.run_inference(batch, handler.load_model()))
            except Exception as err:  # a load that cannot fit is a finding too
                tries.append({"memory_fraction": fraction, "error": repr(err)[:500]})
                continue
            failures = [r.inference for r in results if isinstance(r.inference, InferenceFailure)]
            tries.append({
                "memory_fraction": fraction,
                "out_of_memory_errors": freed["out_of_memory_errors"],
                "results": len(results),
                "summarized": len(results) - len(failures),
                "dead_lettered": dict(Counter(f.reason for f in failures)),
                "every_document_accounted": len(results) == len(batch),
            })  # fmt: skip
            if freed["out_of_memory_errors"]:
                break
    finally:
        handler_module._free_cached_memory = release
        if device == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)
    return {"documents": len(batch), "tries": tries}


def corpus_texts(path: Path, count: int) -> list[str]:
    """The first ``count`` non-blank texts of a JSONL corpus (``.gz`` read as gzip)."""
    opener = gzip.open if path.suffix == ".gz" else open
    texts: list[str] = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            text = record.get("text") or record.get("description") or ""
            if text.strip():
                texts.append(" ".join(text.split()))
            if len(texts) == count:
                break
    return texts


# (batch window, token budget, search threads, precision); the first is the CPU default.
DEFAULT_GRID: tuple[tuple[int, int, int, Precision], ...] = (
    (512, 6_000, 16, "fp32"),
    (512, 6_000, 1, "fp32"),
    (512, 96_000, 1, "fp32"),
    (4_096, 96_000, 1, "fp32"),
    (4_096, 96_000, 2, "fp32"),
    (4_096, 96_000, 4, "fp32"),
    (4_096, 384_000, 1, "fp32"),
    (16_384, 384_000, 1, "fp32"),
    (4_096, 96_000, 1, "bf16"),
)


def _windowed(summarizer: Summarizer, chunks: list[list[str]]) -> list[str]:
    return [s.text for chunk in chunks for s in summarizer.summarize(chunk)]


def defaults(
    device: str, texts: list[str], grid: tuple[tuple[int, int, int, Precision], ...]
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    first: list[str] | None = None
    for window, budget, threads, precision in grid:
        settings = RuntimeSettings(device=device, max_batch_tokens=budget, search_threads=threads,
                                   precision=precision)  # fmt: skip
        summarizer = Summarizer.load(settings=settings)
        summarizer.summarize(texts[:64])
        chunks = [texts[i : i + window] for i in range(0, len(texts), window)]
        outputs, seconds = _timed(device, partial(_windowed, summarizer, chunks))
        first = outputs if first is None else first
        same = sum(a == b for a, b in zip(first, outputs, strict=True))
        rows.append({"window": window, "max_batch_tokens": budget, "search_threads": threads,
                     "precision": precision, "docs_per_s": len(texts) / seconds,
                     "identical_to_first": same / len(texts)})  # fmt: skip
        print(f"  defaults: {rows[-1]}", flush=True)
    return {"documents": len(texts), "rows": rows}


def pipeline_scale(device: str, texts: list[str], flag_sets: list[str]) -> dict[str, Any]:
    if not _has_beam():
        return {"skipped": "apache_beam is not installed here"}
    shards = Path(tempfile.mkdtemp(prefix="s2s-gpu-corpus-"))
    for shard in range(4):
        lines = (
            json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts) if i % 4 == shard
        )
        (shards / f"part-{shard}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    runs: list[dict[str, Any]] = []
    for flags in ["", *flag_sets]:
        run = {"flags": flags, **_job(str(shards / "part-*"), device, flags.split())}
        run["docs_per_s"] = len(texts) / run["seconds"]
        runs.append(run)
        print(f"  pipeline_scale: {json.dumps(run)[:300]}", flush=True)
    return {"documents": len(texts), "runs": runs}


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
    parser.add_argument("--out", type=Path, help="folder (default: the sitting's, dated)")
    parser.add_argument("--smoke", action="store_true", help="every part, small, on any device")
    parser.add_argument("--corpus", type=Path, help="JSONL corpus for the defaults parts")
    parser.add_argument("--corpus_docs", type=int, default=8192)
    parser.add_argument("--parts", default="", help="comma-separated parts to run (default all)")
    parser.add_argument(
        "--pipeline_flags",
        action="append",
        default=[],
        help="a flag set for pipeline_scale, e.g. '--max_batch_tokens 96000'",
    )
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
        "peak_memory": lambda: peak_memory(device, 64 if small else 4000),
        "sync_sites": lambda: sync_sites(device, 8 if small else 64),
        "pipeline": lambda: pipeline(device),
        "out_of_memory": lambda: out_of_memory(device, 4 if small else 64),
        "training": lambda: training(device, 4 if small else 200),
    }
    if args.corpus:
        texts = corpus_texts(args.corpus, 256 if small else args.corpus_docs)
        grid = DEFAULT_GRID[:2] if small else DEFAULT_GRID
        parts["defaults"] = lambda: defaults(device, texts, grid)
        parts["pipeline_scale"] = lambda: pipeline_scale(device, texts, args.pipeline_flags)
    if args.parts:
        parts = {name: parts[name] for name in args.parts.split(",")}
    out = result_stem("gpu", folder=args.out).with_suffix(".json")
    report: dict[str, Any] = {"machine": device_info(device), "smoke": small}
    report["machine"]["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
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
        write_json(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
