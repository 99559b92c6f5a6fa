"""build_pipeline(p, options, decode=...) builds the job; run(argv) checks, runs and accounts.

A run, in order:

1. ``preflight``: flags, inputs, output directory and model are checked before any work; each
   problem is a ``PreflightError`` with a one-line message. An output that already holds a
   finished run is refused (``--if_finished fail``) or left alone with exit 0 (``skip``).
2. Stale output of an earlier unfinished run (and, with ``--overwrite``, a finished one) is
   removed, ``_SUCCESS.json`` first, so no reader ever mixes two runs.
3. The job runs (``FnApiRunner`` unless ``--runner`` says otherwise: Beam 2.77's
   ``DirectRunner`` first tries to download a Prism binary) and writes below
   ``<output>/_temporary/<run id>/``. A job that fails (a worker killed, a bundle that raises)
   has its files removed there; if the launcher itself dies they stay there, never among the
   outputs, until the next run to the same output clears them.
4. Accounting: rows are counted from the Parquet footers and checked against the job's
   ``records_read`` counter; then the files move into ``summaries/`` and ``dead_letter/``, and
   a dead-letter fraction above ``--max_dead_letter_fraction`` fails the run.
5. ``_SUCCESS.json`` is written last. A run that fails anywhere leaves none.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

from pipeline.dead_letters import METRICS_NAMESPACE, REASONS
from pipeline.model_handler import LOCAL_SCHEMES, Seq2SeqModelHandler, load_summarizer
from pipeline.options import OptionsError, SummarizeOptions, parse_options
from pipeline.progress import ProgressCallback, ProgressMonitor, ReportProgress
from pipeline.reuse import (
    AnswerSettings,
    ReuseOrSummarize,
    RowKeys,
    earlier_summary_files,
    reuse_counts,
    usable_directories,
)
from pipeline.sinks import (
    DEAD_LETTER_DIR,
    SUMMARIES_DIR,
    WriteDeadLetters,
    WriteSummaries,
    attempt_dir,
    count_rows,
    dead_letter_dir,
    output_files,
    success_path,
    summaries_dir,
    temporary_dir,
)
from pipeline.sources import ReadSettings, ReadShards
from pipeline.transforms import DEAD_LETTER, SUMMARIES, SummarizeDocuments
from s2s_model import DecodeConfig, Summarizer

logger = logging.getLogger(__name__)

DEFAULT_RUNNER = "FnApiRunner"
LOCAL_RUNNERS = ("fnapirunner", "directrunner", "bundlebaseddirectrunner", "switchingdirectrunner")
MANIFEST_VERSION = 2  # 2: summary rows carry reuse_key; counts hold reused and decoded
# What runners say when a worker process dies under them, and what it means for the user.
WORKER_DIED = ("Channel closed prematurely", "Worker subprocess exited")
WORKER_DIED_HINT = (
    "a worker process died (killed, or out of memory?): nothing was kept; re-run to the same"
    " --output"
)


class PreflightError(Exception):
    """The run cannot start; the message is one line saying what and how to fix it."""


class RunFailed(Exception):
    """The job ran but its output must not be trusted; no _SUCCESS.json was written."""


@dataclass(frozen=True)
class RunPlan:
    """What preflight established: the run is possible, with these settings."""

    patterns: list[str]
    shards: int
    output: str
    model: str
    fingerprint: str
    decode: DecodeConfig
    runner: str


@dataclass(frozen=True)
class RunReport:
    """A finished run: its manifest (as written to _SUCCESS.json) and where it lies."""

    output: str
    manifest: dict[str, Any]
    # True when --if_finished skip found this run already finished and ran nothing.
    skipped: bool = False

    @property
    def read(self) -> int:
        return int(self.manifest["counts"]["read"])

    @property
    def summarized(self) -> int:
        return int(self.manifest["counts"]["summarized"])

    @property
    def dead_lettered(self) -> int:
        return int(self.manifest["counts"]["dead_lettered"])

    @property
    def seconds(self) -> float:
        return float(self.manifest["duration_s"])


# -- preflight ---------------------------------------------------------------------------------


def expand_pattern(pattern: str) -> str:
    """A directory (a local one, or any path ending in '/') means every file below it."""
    if pattern.endswith("/"):
        return pattern + "**"
    if FileSystems.get_scheme(pattern) in (None, "file") and os.path.isdir(pattern):
        return pattern.rstrip("/") + "/**"
    return pattern


def runner_name(options: SummarizeOptions) -> str:
    runner = options.view_as(StandardOptions).runner
    return runner if isinstance(runner, str) else type(runner).__name__


def is_local_runner(options: SummarizeOptions) -> bool:
    return runner_name(options).lower() in LOCAL_RUNNERS


def _count_shards(patterns: Sequence[str]) -> int:
    paths: set[str] = set()
    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as err:  # BeamIOError, a missing filesystem plugin, ...
            raise PreflightError(f"cannot list --input {pattern!r}: {_one_line(err)}") from None
        if not matched:
            raise PreflightError(f"--input {pattern!r} matches no file")
        paths.update(m.path for m in matched)
    return len(paths)


def _check_output(output: str, overwrite: bool) -> None:
    marker = success_path(output)
    if FileSystems.exists(marker) and not overwrite:
        raise PreflightError(
            f"{output} already holds a finished run ({marker}): pass --overwrite to replace it,"
            " --if_finished skip to keep it, or choose another --output"
        )


def _load_model(options: SummarizeOptions) -> Summarizer:
    try:
        return load_summarizer(
            options.model, device="cpu", threads=options.torch_threads, quantize=options.quantize
        )
    except Exception as err:  # CheckpointError, OSError, a filesystem plugin error, ...
        where = options.model or "the bundled model"
        raise PreflightError(f"cannot load model {where}: {_one_line(err)}") from None


def _resolve_decode(model: Summarizer, options: SummarizeOptions) -> DecodeConfig:
    settings = {**model.decode.to_dict(), **options.decode_overrides()}
    try:
        return DecodeConfig.from_dict(settings)
    except ValueError as err:
        raise PreflightError(f"bad decode flags: {err}") from None


def preflight(options: SummarizeOptions) -> RunPlan:
    """Check everything that can be checked before any work; raise PreflightError if not."""
    if not options.input:
        raise PreflightError("no input: give at least one file glob (--input PATTERN)")
    if not options.output:
        raise PreflightError("no output directory: pass --output DIR")
    if options.quantize == "int8" and options.device == "cuda":
        raise PreflightError("--quantize int8 runs on the CPU only: drop it or use --device cpu")
    if options.quantize == "int8" and options.precision == "bf16":
        raise PreflightError("--quantize int8 and --precision bf16 do not combine: choose one")
    patterns = [expand_pattern(p) for p in options.input]
    _check_output(options.output, options.overwrite)
    try:
        usable_directories(
            options.reuse or [],
            output=options.output,
            manifest_version=MANIFEST_VERSION,
            if_unusable=options.if_reuse_unusable,
        )
    except ValueError as err:
        raise PreflightError(str(err)) from None
    shards = _count_shards(patterns)
    model = _load_model(options)
    decode = _resolve_decode(model, options)
    return RunPlan(
        patterns=patterns,
        shards=shards,
        output=options.output,
        model=options.model or "bundled",
        fingerprint=model.fingerprint,
        decode=decode,
        runner=runner_name(options),
    )


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


# -- building ----------------------------------------------------------------------------------


def build_pipeline(
    p: beam.Pipeline,
    options: SummarizeOptions,
    *,
    decode: DecodeConfig,
    write_to: str | None = None,
    fingerprint: str | None = None,
) -> None:
    """Add the summarize job to ``p``: read, validate, summarize, write rows and dead letters
    below ``write_to`` (default: ``--output``; run() passes a temporary directory).
    ``fingerprint``: the model's, needed with ``--reuse`` (to look earlier rows up)."""
    opts = options.view_as(SummarizeOptions)
    target = write_to or opts.output
    settings = ReadSettings(
        input_format=opts.input_format,
        text_field=opts.text_field,
        id_field=opts.id_field,
        max_doc_chars=opts.max_doc_chars,
    )
    handler = Seq2SeqModelHandler(
        opts.model,
        decode=decode,
        device=opts.device,
        threads=opts.torch_threads,
        max_src_tokens=opts.max_src_tokens,
        max_batch_tokens=opts.max_batch_tokens,
        batch_window=opts.batch_window,
        refill=opts.refill,
        quantize=opts.quantize,
        precision=opts.precision,
    )
    with_n_best = decode.n_best > 1
    keys = RowKeys(AnswerSettings(decode, opts.max_src_tokens, opts.quantize, opts.precision))
    records = p | "ReadShards" >> ReadShards([expand_pattern(x) for x in opts.input], settings)
    summarize = SummarizeDocuments(handler, with_n_best=with_n_best, keys=keys)
    earlier = earlier_summary_files(opts.reuse or [], MANIFEST_VERSION)
    if earlier:  # --reuse: a keyed join with earlier rows; the rest goes to `summarize`
        if fingerprint is None:
            raise ValueError("build_pipeline with --reuse needs fingerprint= (the model's)")
        summarize = ReuseOrSummarize(
            summarize, earlier, keys=keys, fingerprint=fingerprint, with_n_best=with_n_best,
            progress_dir=opts.progress_dir,
        )  # fmt: skip
    outputs = records | "SummarizeDocuments" >> summarize
    summaries, dead = outputs[SUMMARIES], outputs[DEAD_LETTER]
    _ = summaries | "WriteSummaries" >> WriteSummaries(
        target,
        with_n_best=with_n_best,
        num_shards=opts.output_shards,
        codec=opts.parquet_codec,
    )
    _ = dead | "WriteDeadLetters" >> WriteDeadLetters(target, codec=opts.parquet_codec)
    if opts.progress_dir:
        # One reporter per stream, not a Flatten: see transforms.py.
        reporter = ReportProgress(opts.progress_dir)
        _ = summaries | "ReportSummaries" >> beam.ParDo(reporter)
        _ = dead | "ReportDeadLetters" >> beam.ParDo(reporter)


# -- output directory and accounting -----------------------------------------------------------


def _remove_tree(directory: str) -> None:
    """Delete ``directory`` and everything below it, if it exists.

    Local: the directory itself, even empty (Beam deletes a path without '/' recursively, and
    reads a path ending in '/' as the glob 'dir/*', which fails on an empty directory).
    Object stores: every object under the prefix ('dir/'; the directory is no object)."""
    if FileSystems.get_scheme(directory) in LOCAL_SCHEMES:
        if FileSystems.exists(directory):
            FileSystems.delete([directory.rstrip("/")])
    elif FileSystems.match([FileSystems.join(directory, "**")])[0].metadata_list:
        FileSystems.delete([directory.rstrip("/") + "/"])


def clear_output(output: str) -> None:
    """Remove _SUCCESS.json (first), then every summary and dead-letter file of earlier runs,
    and what unfinished runs left in ``_temporary/``."""
    marker = success_path(output)
    if FileSystems.exists(marker):
        FileSystems.delete([marker])
    _remove_tree(summaries_dir(output))
    _remove_tree(dead_letter_dir(output))
    _remove_tree(temporary_dir(output))


def discard_attempt(output: str, attempt: str) -> None:
    """Best effort: remove a failed job's files (the next run clears what this cannot)."""
    try:
        _remove_tree(attempt)
        _remove_tree(temporary_dir(output))
    except Exception as err:  # a failed cleanup must not hide why the job failed
        logger.warning("could not remove %s: %s", attempt, _one_line(err))


def promote(attempt: str, output: str) -> None:
    """Move the finished job's Parquet files from ``attempt`` into ``output``'s directories."""
    for directory in (SUMMARIES_DIR, DEAD_LETTER_DIR):
        sources = output_files(FileSystems.join(attempt, directory))
        if not sources:
            continue
        target = FileSystems.join(output, directory)
        if not FileSystems.exists(target):
            FileSystems.mkdirs(target)  # local filesystems need it; object stores ignore it
        names = [FileSystems.split(path)[1] for path in sources]
        FileSystems.rename(sources, [FileSystems.join(target, name) for name in names])
    _remove_tree(temporary_dir(output))


def counter_totals(result: PipelineResult) -> dict[str, int] | None:
    """The job's counters in our namespace (committed where the runner has them), or None
    where the runner reports no metrics."""
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception as err:  # runners without metrics support raise various errors
        logger.warning("the runner reports no metrics (%s): counts come from the files", err)
        return None
    totals: dict[str, int] = {}
    for counter in counters["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


def _relative(paths: Sequence[str], output: str) -> list[str]:
    prefix = output.rstrip("/") + "/"
    return [p[len(prefix) :] if p.startswith(prefix) else p for p in paths]


def account(output: str, counters: dict[str, int] | None) -> dict[str, Any]:
    """Counts from the Parquet footers, checked against the job's records_read counter.

    ``output`` is where the job wrote (a run's attempt directory); file names are relative to
    it, which is where they are once promoted."""
    summary_files = output_files(summaries_dir(output))
    dead_files = output_files(dead_letter_dir(output))
    summarized = count_rows(summary_files)
    dead_lettered = count_rows(dead_files)
    read = summarized + dead_lettered
    if counters is not None and "records_read" in counters:
        read = counters["records_read"]
        if read != summarized + dead_lettered:
            raise RunFailed(
                f"accounting mismatch: {read} records read but {summarized} summaries +"
                f" {dead_lettered} dead letters written to {output} (kept there to diagnose)"
            )
    by_reason = {r: counters.get(f"dead_letters_{r}", 0) for r in REASONS} if counters else {}
    padded = (counters or {}).get("padded_source_tokens_attended", 0)
    attended = (counters or {}).get("source_tokens_attended", 0)
    return {
        "counters": dict(sorted((counters or {}).items())),
        "padding_efficiency": round(attended / padded, 4) if padded else None,
        "counts": {
            "read": read,
            "summarized": summarized,
            "dead_lettered": dead_lettered,
            **reuse_counts(summarized, counters),
        },
        "dead_letters_by_reason": {r: n for r, n in by_reason.items() if n},
        "files": {
            "summaries": _relative(summary_files, output),
            "dead_letter": _relative(dead_files, output),
        },
    }


def check_dead_letters(accounting: dict[str, Any], limit: float, output: str) -> None:
    counts = accounting["counts"]
    if not counts["read"]:
        logger.warning("the input held no records")
        return
    fraction = counts["dead_lettered"] / counts["read"]
    if fraction > limit:
        raise RunFailed(
            f"{counts['dead_lettered']} of {counts['read']} records ({fraction:.1%}) became dead"
            f" letters, above --max_dead_letter_fraction={limit}: see"
            f" {dead_letter_dir(output)}/ for the reasons"
        )


def write_manifest(output: str, manifest: dict[str, Any]) -> None:
    """Write _SUCCESS.json under a temporary name, then rename it into place."""
    final = success_path(output)
    temporary = final + ".tmp"
    with FileSystems.create(temporary, mime_type="application/json") as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
    FileSystems.rename([temporary], [final])


def read_manifest(output: str) -> dict[str, Any] | None:
    """The manifest of a finished run in ``output``, or None."""
    path = success_path(output)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        manifest: dict[str, Any] = json.loads(handle.read().decode("utf-8"))
    return manifest


# -- running -----------------------------------------------------------------------------------


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _run_id() -> str:
    """Sortable by start time, unique across launchers."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _run_job(options: SummarizeOptions, plan: RunPlan, write_to: str) -> PipelineResult:
    p = beam.Pipeline(options=options)
    build_pipeline(p, options, decode=plan.decode, write_to=write_to, fingerprint=plan.fingerprint)
    result = p.run()
    state = result.wait_until_finish()
    if state != PipelineState.DONE:
        raise RunFailed(f"the job ended in state {state}")
    return result


def _manifest(
    plan: RunPlan, options: SummarizeOptions, accounting: dict[str, Any], timing: dict[str, Any]
) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        **accounting,
        "model": {
            "path": plan.model,
            "fingerprint": plan.fingerprint,
            "quantize": options.quantize,
            "precision": options.precision,
            "max_src_tokens": options.max_src_tokens,
        },
        "decode": dataclasses.asdict(plan.decode),
        "runner": plan.runner,
        "inputs": plan.patterns,
        "reuse": options.reuse or [],
        "input_format": options.input_format,
        "shards": plan.shards,
        "beam_version": beam.__version__,
        **timing,
    }


def run_plan(
    options: SummarizeOptions, plan: RunPlan, on_progress: ProgressCallback | None = None
) -> RunReport:
    """Run a preflighted job to the end and write its manifest; raise RunFailed otherwise."""
    clear_output(plan.output)
    started, clock = _utc_now(), time.monotonic()
    attempt = attempt_dir(plan.output, _run_id())
    progress_dir = None
    if on_progress is not None and is_local_runner(options):
        progress_dir = tempfile.mkdtemp(prefix="s2s-progress-")
        options.view_as(SummarizeOptions).progress_dir = progress_dir
    try:
        if progress_dir and on_progress:
            with ProgressMonitor(progress_dir, on_progress, with_reused=bool(options.reuse)):
                result = _run_job(options, plan, attempt)
        else:
            result = _run_job(options, plan, attempt)
    except BaseException as err:  # the job failed, or the launcher is being interrupted
        discard_attempt(plan.output, attempt)
        if isinstance(err, RunFailed) or not isinstance(err, Exception):
            raise
        logger.debug("job failed", exc_info=True)  # the runner's error: keep its message
        message = _one_line(err)[-500:]
        if any(sign in message for sign in WORKER_DIED):
            message = f"{message} - {WORKER_DIED_HINT}"
        raise RunFailed(f"the job failed: {message}") from err
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    accounting = account(attempt, counter_totals(result))
    promote(attempt, plan.output)
    check_dead_letters(accounting, options.max_dead_letter_fraction, plan.output)
    timing = {
        "started_at": started,
        "finished_at": _utc_now(),
        "duration_s": round(time.monotonic() - clock, 3),
    }
    manifest = _manifest(plan, options, accounting, timing)
    write_manifest(plan.output, manifest)
    return RunReport(output=plan.output, manifest=manifest)


def parse(argv: Sequence[str]) -> SummarizeOptions:
    """The options of ``argv``; the local runner that downloads nothing is the default."""
    try:
        options = parse_options(argv).view_as(SummarizeOptions)
    except OptionsError as err:
        raise PreflightError(str(err)) from None
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    return options


def prepare(argv: Sequence[str]) -> tuple[SummarizeOptions, RunPlan]:
    """Parse and preflight ``argv``."""
    options = parse(argv)
    return options, preflight(options)


def finished_run(options: SummarizeOptions) -> RunReport | None:
    """With ``--if_finished skip`` (and no ``--overwrite``): the finished run already in
    ``--output``, logged as skipped; else None (the run goes ahead, or preflight refuses it)."""
    if options.overwrite or options.if_finished != "skip" or not options.output:
        return None
    try:
        manifest = read_manifest(options.output)
    except (ValueError, OSError) as err:  # a damaged marker: never trust it, never skip on it
        raise PreflightError(
            f"cannot read {success_path(options.output)} ({_one_line(err)}): remove it or pass"
            " --overwrite"
        ) from None
    if manifest is None:
        return None
    logger.info(
        "%s already finished at %s: skipping",
        options.output,
        manifest.get("finished_at", "an unknown time"),
    )
    return RunReport(output=options.output, manifest=manifest, skipped=True)


def run(argv: Sequence[str], *, on_progress: ProgressCallback | None = None) -> RunReport:
    """Check, run and account one summarize job; ``python -m pipeline`` and the CLI call this.

    With ``--if_finished skip`` an output that already holds a finished run is not touched:
    the report of that run comes back with ``skipped=True``.
    """
    options = parse(argv)
    finished = finished_run(options)
    if finished is not None:
        return finished
    plan = preflight(options)
    logger.info(
        "summarizing %d shard(s) with model %s (%s) on %s into %s",
        plan.shards,
        plan.model,
        plan.fingerprint,
        plan.runner,
        plan.output,
    )
    return run_plan(options, plan, on_progress)


__all__ = [
    "PreflightError",
    "RunFailed",
    "RunPlan",
    "RunReport",
    "build_pipeline",
    "finished_run",
    "preflight",
    "prepare",
    "read_manifest",
    "run",
]
