"""build_pipeline(p, options, plan) builds a preflighted job; run(argv) checks, runs, accounts.

A run, in order:

1. ``preflight`` (pipeline/preflight.py): flags, inputs, output directory, model and device are
   checked before any work. An output that already holds a finished run is refused
   (``--if_finished fail``) or left alone with exit 0 (``skip``).
2. Stale output of an earlier unfinished run (and, with ``--overwrite``, a finished one) is
   removed, ``_SUCCESS.json`` first (pipeline/output.py).
3. The job runs (``FnApiRunner`` unless ``--runner`` says otherwise: Beam 2.77's
   ``DirectRunner`` first tries to download a Prism binary) and writes below
   ``<output>/_temporary/<run id>/``. A job that fails has its files removed there.
4. Accounting, the move into place and ``_SUCCESS.json``, last (pipeline/output.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.runners.runner import PipelineResult, PipelineState

from pipeline.model_handler import Seq2SeqModelHandler, preloaded
from pipeline.options import SummarizeOptions, format_flags_help, inputs_as_flags
from pipeline.output import (
    MANIFEST_VERSION,
    RunFailed,
    account,
    check_dead_letters,
    clear_output,
    counter_totals,
    discard_attempt,
    promote,
    read_manifest,
    write_manifest,
)
from pipeline.preflight import (
    PreflightError,
    RunPlan,
    parse,
    preflight,
)
from pipeline.progress import ProgressCallback, ProgressMonitor, ReportProgress, progress_text
from pipeline.reuse import ReuseOrSummarize, RowKeys, earlier_summary_files
from pipeline.sinks import (
    DEAD_LETTER,
    SUMMARIES,
    WriteDeadLetters,
    WriteSummaries,
    attempt_dir,
    success_path,
)
from pipeline.sources import ReadSettings, ReadShards
from pipeline.transforms import FLAGGED_COUNTER_PREFIX, CountFlags, SummarizeDocuments
from s2s_model.bundled import describe_model, is_bundled, other_models
from s2s_model.device import device_info
from s2s_model.errors import S2SError, one_line
from s2s_model.quality import FLAGS
from s2s_model.summarizer import DocumentSearch

logger = logging.getLogger(__name__)

# What runners say when a worker process dies under them, and what it means for the user.
WORKER_DIED = ("Channel closed prematurely", "Worker subprocess exited")
WORKER_DIED_HINT = (
    "a worker process died (killed, or out of memory?): nothing was kept; re-run to the same"
    " --output"
)
OUT_OF_DOMAIN = "out_of_domain"


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

    @property
    def out_of_domain(self) -> int:
        """Summaries flagged ``out_of_domain`` (0 where the runner reports no metrics, or the
        manifest predates the count)."""
        return int((self.manifest.get("flagged") or {}).get(OUT_OF_DOMAIN) or 0)

    def describe(self) -> str:
        """One line for people: what was read, what became of it, and where it lies."""
        if self.skipped:
            return f"{self.output} was already finished: nothing to do (--overwrite reruns it)"
        rate = self.read / self.seconds if self.seconds else 0.0
        reused = self.manifest["counts"].get("reused")
        split = f" ({reused:,} reused, {self.summarized - reused:,} decoded)" if reused else ""
        flagged = f", {self.out_of_domain:,} flagged {OUT_OF_DOMAIN}" if self.out_of_domain else ""
        return (
            f"{self.read:,} records: {self.summarized:,} summarized{split},"
            f" {self.dead_lettered:,} dead letters{flagged}, in {self.seconds:.1f} s"
            f" ({rate:,.1f} docs/s) -> {self.output} (s2s show {self.output})"
        )

    def misfit_warning(self, share: float) -> str | None:
        """What to tell the user when more than ``share`` of the summaries are out of domain."""
        if self.skipped or not self.summarized or self.out_of_domain <= share * self.summarized:
            return None
        model = self.manifest.get("model", {}).get("path")
        return (
            f"{self.out_of_domain:,} of {self.summarized:,} summaries"
            f" ({self.out_of_domain / self.summarized:.1%}) are flagged {OUT_OF_DOMAIN}:"
            f" {describe_model(model)} was not trained on text like this corpus, and its"
            " summaries of it are unreliable; pass --model with a model trained on such text"
            f" ({other_models(model)})"
        )


# -- building ----------------------------------------------------------------------------------


def build_pipeline(
    p: beam.Pipeline,
    options: SummarizeOptions,
    plan: RunPlan,
    *,
    write_to: str | None = None,
    progress_dir: str | None = None,
) -> None:
    """Add the summarize job of ``plan`` (preflight's) to ``p``: read, validate, summarize,
    write rows and dead letters below ``write_to`` (default: ``--output``; run() passes a
    temporary directory). With ``progress_dir`` (a local directory) workers report the
    documents they finish there."""
    opts = options.view_as(SummarizeOptions)
    target = write_to or opts.output
    settings = ReadSettings(
        input_format=opts.input_format,
        text_field=opts.text_field,
        id_field=opts.id_field,
        max_doc_chars=opts.max_doc_chars,
    )
    handler = Seq2SeqModelHandler(
        opts.model, decode=plan.decode, settings=plan.settings, batch_window=plan.window
    )
    with_n_best = plan.decode.n_best > 1
    keys = RowKeys(plan.answer)
    records = p | "ReadShards" >> ReadShards(plan.patterns, settings)
    summarize: beam.PTransform = SummarizeDocuments(
        handler, with_n_best=with_n_best, keys=keys, domain=plan.domain
    )
    earlier = earlier_summary_files(opts.reuse or [], MANIFEST_VERSION)
    if earlier:  # --reuse: a keyed join with earlier rows; the rest goes to `summarize`
        summarize = ReuseOrSummarize(
            summarize, earlier, keys=keys, fingerprint=plan.fingerprint, with_n_best=with_n_best,
            progress_dir=progress_dir,
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
    _ = summaries | "CountFlags" >> beam.ParDo(CountFlags())
    if progress_dir:
        # One reporter per stream, not a Flatten: see transforms.py.
        reporter = ReportProgress(progress_dir)
        _ = summaries | "ReportSummaries" >> beam.ParDo(reporter)
        _ = dead | "ReportDeadLetters" >> beam.ParDo(reporter)


# -- running -----------------------------------------------------------------------------------


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _run_id() -> str:
    """Sortable by start time, unique across launchers."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _run_job(
    options: SummarizeOptions, plan: RunPlan, write_to: str, progress_dir: str | None
) -> PipelineResult:
    p = beam.Pipeline(options=options)
    build_pipeline(p, options, plan, write_to=write_to, progress_dir=progress_dir)
    result = p.run()
    state = result.wait_until_finish()
    if state != PipelineState.DONE:
        raise RunFailed(f"the job ended in state {state}")
    return result


def _job_failure(err: Exception) -> RunFailed:
    """The runner's error as one line, with what a dead worker means for the user."""
    message = one_line(err)[-500:]
    if any(sign in message for sign in WORKER_DIED):
        message = f"{message} - {WORKER_DIED_HINT}"
    return RunFailed(f"the job failed: {message}")


def _run_watched(
    options: SummarizeOptions, plan: RunPlan, attempt: str, on_progress: ProgressCallback | None
) -> PipelineResult:
    """Run the job; on a local runner, report documents done to ``on_progress`` as they are."""
    if on_progress is None or not options.is_local_runner():
        return _run_job(options, plan, attempt, None)
    progress_dir = tempfile.mkdtemp(prefix="s2s-progress-")
    try:
        with ProgressMonitor(progress_dir, on_progress, with_reused=bool(options.reuse)):
            return _run_job(options, plan, attempt, progress_dir)
    finally:
        shutil.rmtree(progress_dir, ignore_errors=True)


def flagged_counts(counters: dict[str, int] | None) -> dict[str, int] | None:
    """Summaries carrying each flag (every flag named, 0 included); None where the runner
    reports no metrics."""
    if counters is None:
        return None
    return {flag: counters.get(FLAGGED_COUNTER_PREFIX + flag, 0) for flag in FLAGS}


def _manifest(
    plan: RunPlan,
    options: SummarizeOptions,
    accounting: dict[str, Any],
    flagged: dict[str, int] | None,
    timing: dict[str, Any],
) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        **accounting,
        "flagged": flagged,
        "model": {
            "path": plan.model,
            "bundled": is_bundled(plan.model),
            "fingerprint": plan.fingerprint,
            "quantize": plan.settings.quantize,
            "precision": plan.settings.precision,
            "max_src_tokens": plan.settings.max_src_tokens,
        },
        "decode": dataclasses.asdict(plan.decode),
        "runtime": {**plan.settings.to_dict(), **_device_info(plan, options)},
        "runner": plan.runner,
        "inputs": plan.patterns,
        "reuse": options.reuse or [],
        "input_format": options.input_format,
        "shards": plan.shards,
        "beam_version": beam.__version__,
        **timing,
    }


def _device_info(plan: RunPlan, options: SummarizeOptions) -> dict[str, Any]:
    """The device the workers ran on, as this launcher can know it: exactly on a local runner;
    on a remote one, what was asked (the workers refuse to fall back from a GPU)."""
    if options.is_local_runner():
        return device_info(plan.settings.device)
    return {"device": plan.settings.device, "gpu": None, "torch": None, "cuda": None}


def run_plan(
    options: SummarizeOptions,
    plan: RunPlan,
    on_progress: ProgressCallback | None = None,
    *,
    search: DocumentSearch | None = None,
) -> RunReport:
    """Run a preflighted job to the end and write its manifest; raise RunFailed otherwise.

    ``search`` replaces the model's beam search in the workers that take the launcher's model
    (those of a local runner's own process): the seam through which benchmarks and tests time
    the job's own work (``s2s_model.stand_in``)."""
    loaded = plan.loaded
    if search is not None:
        if loaded is None:
            raise ValueError("a search stand-in needs a local runner (its workers take the model)")
        loaded = loaded.with_search(search)
    clear_output(plan.output)
    started, clock = _utc_now(), time.monotonic()
    attempt = attempt_dir(plan.output, _run_id())
    try:
        with preloaded(options.model, loaded):
            result = _run_watched(options, plan, attempt, on_progress)
    except BaseException as err:  # the job failed, or the launcher is being interrupted
        discard_attempt(plan.output, attempt)
        if isinstance(err, RunFailed) or not isinstance(err, Exception):
            raise
        logger.debug("job failed", exc_info=True)  # the runner's error: keep its message
        raise _job_failure(err) from err
    counters = counter_totals(result)
    accounting = account(attempt, counters)
    promote(attempt, plan.output)
    check_dead_letters(accounting, options.max_dead_letter_fraction, plan.output)
    timing = {
        "started_at": started,
        "finished_at": _utc_now(),
        "duration_s": round(time.monotonic() - clock, 3),
    }
    manifest = _manifest(plan, options, accounting, flagged_counts(counters), timing)
    write_manifest(plan.output, manifest)
    report = RunReport(output=plan.output, manifest=manifest)
    warning = report.misfit_warning(options.warn_out_of_domain_share)
    if warning:
        logger.warning("%s", warning)
    return report


def finished_run(options: SummarizeOptions) -> RunReport | None:
    """With ``--if_finished skip`` (and no ``--overwrite``): the finished run already in
    ``--output``, logged as skipped; else None (the run goes ahead, or preflight refuses it)."""
    if options.overwrite or options.if_finished != "skip" or not options.output:
        return None
    try:
        manifest = read_manifest(options.output)
    except (ValueError, OSError) as err:  # a damaged marker: never trust it, never skip on it
        raise PreflightError(
            f"cannot read {success_path(options.output)} ({one_line(err)}): remove it or pass"
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


def run(
    argv: Sequence[str],
    *,
    on_progress: ProgressCallback | None = None,
    search: DocumentSearch | None = None,
) -> RunReport:
    """Check, run and account one summarize job; ``python -m pipeline`` and the CLI call this.

    With ``--if_finished skip`` an output that already holds a finished run is not touched:
    the report of that run comes back with ``skipped=True``. ``search``: see ``run_plan``.
    """
    options = parse(argv)
    finished = finished_run(options)
    if finished is not None:
        return finished
    plan = preflight(options)
    logger.info(
        "summarizing %d shard(s) with model %s (%s) on %s (device %s, %d search thread(s) per"
        " worker, batches of up to %d tokens from windows of %d documents) into %s",
        plan.shards,
        plan.model,
        plan.fingerprint,
        plan.runner,
        plan.settings.device,
        plan.settings.search_threads,
        plan.settings.max_batch_tokens,
        plan.window,
        plan.output,
    )
    return run_plan(options, plan, on_progress, search=search)


def _log_progress(done: int, elapsed: float, reused: int | None = None) -> None:
    if done:  # while the workers start, "0 documents done" says nothing
        logger.info("%s", progress_text(done, elapsed, reused))


def main(argv: Sequence[str]) -> int:
    """``python -m pipeline FLAGS``: one job on any runner; errors are one line, no traceback.

    Returns the exit status: 0 done, 1 the run failed, 2 a problem found before any work.
    Logging is the caller's (``pipeline/__main__.py`` sets it up)."""
    if {"-h", "--help"} & set(argv):
        print("usage: python -m pipeline INPUT... --output DIR [flags]\n")
        print(format_flags_help())
        return 0
    try:
        report = run(inputs_as_flags(argv), on_progress=_log_progress)
    except S2SError as err:
        print(f"Error: {err}", file=sys.stderr)
        return err.exit_code
    print(report.describe())
    return 0


__all__ = [
    "PreflightError",
    "RunFailed",
    "RunPlan",
    "RunReport",
    "build_pipeline",
    "finished_run",
    "main",
    "preflight",
    "read_manifest",
    "run",
]
