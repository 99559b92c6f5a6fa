"""Seq2SeqModelHandler: RunInference's bridge to ``s2s_model.Summarizer``.

Cheap to pickle: ``__init__`` keeps paths and settings; ``load_model`` does the heavy work once
per worker process (Beam shares the loaded model between the process's threads).

Batching. RunInference hands us windows of up to ``batch_window`` documents (plain
``BatchElements`` with a fixed size, so memory per worker stays bounded) and each window goes to
the Summarizer in one call: it sorts the window longest first and streams it through an active
batch of at most ``max_batch_tokens`` (documents x longest source), refilling the rows of
finished documents with waiting ones. We do not use ``SortAndBatchElements``: it buffers a whole
bundle (here a whole shard) before emitting anything. The padding the search really attends is
measured (``SearchStats``) and reported in the job's counters.

The launcher loads the model once to check it (preflight); ``run_plan`` offers that copy to the
workers of its own process for the length of the run (``preloaded``). The first ``load_model``
there with the same checkpoint and settings takes it instead of reading the files again; every
other worker (another process, another device, a later run) loads its own.

Dead letters of earlier steps pass through untouched (``inference`` is the DeadLetter itself):
documents and dead letters share one stream so that no ``Flatten`` is needed (see sources.py).

Failures. RunInference's own exception handling fails a whole batch; instead a failing window is
split in halves and retried, down to single documents, so only the document that really fails
becomes an ``InferenceFailure`` (and then a dead letter). A single document is tried twice
before it is dead-lettered, so an error on a first attempt (transient) costs no document. An
out-of-memory error (``torch.OutOfMemoryError``, or a ``RuntimeError`` / ``MemoryError`` saying
so) halves the token budget as well as the window, and the retry starts only after the failed
attempt is gone (nothing of it is kept but its message), so the accelerator's cached memory can
really be freed; a document that runs out of memory alone is dead-lettered as
``out_of_memory``. Nothing a document does can fail the bundle: a failed bundle would be retried
whole on distributed runners, and fail the job on the local one. The one exception is a CUDA
error other than out-of-memory: it breaks the worker's GPU context for every later call, so it
fails the bundle, for the runner to retry on a healthy worker.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipeline import dead_letters as dl
from pipeline.dead_letters import METRICS_NAMESPACE
from pipeline.options import DEFAULT_BATCH_WINDOW
from pipeline.sinks import LOCAL_SCHEMES
from pipeline.sources import DeadLetter, Document, Record
from s2s_model import (
    CheckpointError,
    DecodeConfig,
    RuntimeSettings,
    SearchStats,
    Source,
    Summarizer,
    Summary,
)
from s2s_model.bundled import is_bundled, model_name

logger = logging.getLogger(__name__)

# Attempts at one document (alone) before it becomes a dead letter.
SINGLE_DOCUMENT_ATTEMPTS = 2
# How PyTorch and the C allocator word running out of memory in a plain RuntimeError.
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")
# How CUDA words the errors that leave its context unusable (torch 2.5+ also raises them as
# torch.AcceleratorError).
CUDA_FAULT_MESSAGES = ("CUDA error", "CUBLAS_STATUS", "cuDNN error", "device-side assert")
# Thread settings read by OpenMP / MKL when their pools start: they must reach the worker
# process before torch's first parallel op, which is what ModelHandler(env_vars=...) is for.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class InferenceFailure:
    """No summary for this document: ``reason`` is a dead-letter reason code."""

    reason: str
    detail: str


NO_TOKENS = InferenceFailure(
    dl.EMPTY_DOCUMENT,
    "no tokens the model can read (only control, zero-width or other characters that the"
    " tokenizer drops)",
)


def is_out_of_memory(err: BaseException) -> bool:
    """True for an allocation failure on any device."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and any(
        message in str(err).lower() for message in OUT_OF_MEMORY_MESSAGES
    )


def local_checkpoint(path: str) -> str:
    """``path`` itself when local; else a local copy made through Beam's FileSystems."""
    if FileSystems.get_scheme(path) in LOCAL_SCHEMES:
        return path
    target = tempfile.mkdtemp(prefix="s2s-model-")
    pattern = FileSystems.join(path, "*")
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        name = metadata.path.rstrip("/").rsplit("/", 1)[-1]
        with (
            FileSystems.open(
                metadata.path, compression_type=CompressionTypes.UNCOMPRESSED
            ) as source,
            open(f"{target}/{name}", "wb") as dest,
        ):
            while chunk := source.read(1 << 20):
                dest.write(chunk)
    logger.info("copied model %s to %s", path, target)
    return target


def load_summarizer(path: str | None, settings: RuntimeSettings) -> Summarizer:
    """``Summarizer.load`` from a bundled model's name (None: the default one), a local path or
    any Beam filesystem.

    A remote checkpoint is copied to a temporary directory, loaded (everything is in memory
    then) and the copy removed; errors name the remote file, not the copy."""
    if path is None or is_bundled(path):
        return Summarizer.load(path, settings)
    local = local_checkpoint(path)
    try:
        return Summarizer.load(local, settings)
    except CheckpointError as err:
        if local == path:
            raise
        raise CheckpointError(str(err).replace(local, path.rstrip("/"))) from None
    finally:
        if local != path:
            shutil.rmtree(local, ignore_errors=True)


_offers: dict[str | None, Summarizer] = {}
_offers_lock = threading.Lock()


@contextlib.contextmanager
def preloaded(path: str | None, summarizer: Summarizer | None) -> Iterator[None]:
    """While the block runs, the first ``load_model`` in this process of checkpoint ``path``
    (None: the default bundled model) with ``summarizer``'s settings returns ``summarizer`` itself.
    Nothing is offered when ``summarizer`` is None."""
    if summarizer is None:
        yield
        return
    with _offers_lock:
        _offers[path] = summarizer
    try:
        yield
    finally:
        with _offers_lock:
            _offers.pop(path, None)


def take_preloaded(path: str | None, settings: RuntimeSettings) -> Summarizer | None:
    """The summarizer offered for ``path`` if it runs with ``settings`` (once), else None.

    An offer runs on a resolved device ('cpu' or 'cuda'): settings that still say 'auto' (a
    handler made outside a preflighted run) load their own."""
    with _offers_lock:
        offered = _offers.get(path)
        if offered is None or offered.settings != settings:
            return None
        return _offers.pop(path)


def _read(doc: Document, model: Summarizer) -> Source | InferenceFailure:
    """The document as the model reads it, tokenized once for counting and summarizing."""
    try:
        return model.read(doc.text)
    except Exception as err:  # a tokenizer failure is this document's, not the bundle's
        logger.warning("cannot tokenize %s: %r", doc.doc_id, err)
        return InferenceFailure(dl.INFERENCE_ERROR, f"tokenizer: {type(err).__name__}: {err}")


@dataclass(frozen=True)
class _Failed:
    """A failed attempt, kept as text: holding the exception would keep its traceback's frames,
    and with them every tensor the attempt allocated, alive through the retry."""

    out_of_memory: bool
    detail: str


def is_device_fault(err: BaseException, model: Summarizer) -> bool:
    """A CUDA error other than running out of memory: such errors are sticky (every later call
    on the same context fails too), so the bundle must fail and be retried elsewhere."""
    if not str(model.device).startswith("cuda") or is_out_of_memory(err):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", ())
    return isinstance(err, accelerator_error) or any(
        sign in str(err) for sign in CUDA_FAULT_MESSAGES
    )


def _attempt(
    sources: list[Source],
    model: Summarizer,
    decode: DecodeConfig | None,
    stats: SearchStats,
    budget: int,
) -> list[Summary | InferenceFailure] | _Failed:
    """One call to the model: its summaries, or what went wrong (as text)."""
    try:
        return list(model.summarize_sources(sources, decode, max_batch_tokens=budget, stats=stats))
    except Exception as err:  # the model's failure becomes data, never a failed bundle...
        if is_device_fault(err, model):
            raise  # ...except a broken GPU context, which no retry here can mend
        return _Failed(is_out_of_memory(err), f"{type(err).__name__}: {err}")


def _free_cached_memory(model: Summarizer) -> None:
    """Give the CUDA caching allocator's free blocks back before retrying smaller batches."""
    if str(model.device).startswith("cuda"):
        torch.cuda.empty_cache()


class Seq2SeqModelHandler(ModelHandler[Record, PredictionResult, Summarizer]):
    """Records -> PredictionResult(example, inference, model_id=the model's fingerprint), where
    inference is a Summary or InferenceFailure for a Document, and a DeadLetter unchanged."""

    def __init__(
        self,
        model_path: str | None = None,
        *,
        decode: DecodeConfig | None = None,
        settings: RuntimeSettings | None = None,
        batch_window: int = DEFAULT_BATCH_WINDOW,
    ) -> None:
        settings = settings or RuntimeSettings()
        if batch_window < 1:
            raise ValueError(f"batch_window={batch_window} must be at least 1")
        threads = settings.threads
        super().__init__(
            min_batch_size=batch_window,
            max_batch_size=batch_window,
            env_vars={} if threads is None else {name: str(threads) for name in THREAD_ENV_VARS},
        )
        self._model_path = model_path
        self._decode = decode
        self._settings = settings

    def load_model(self) -> Summarizer:
        summarizer = take_preloaded(self._model_path, self._settings)
        how = "took the launcher's" if summarizer else "loaded"
        if summarizer is None:
            summarizer = load_summarizer(self._model_path, self._settings)
        # What this process holds now (torch, Beam, the model) lives as long as the worker:
        # frozen, the cyclic collector no longer walks it each time it collects the objects
        # of the documents (measured: benchmarks/host_bench.py, RESULTS.md "Host work").
        gc.freeze()
        logger.info(
            "%s model %s (%s) on %s with %s torch thread(s)",
            how,
            model_name(self._model_path),
            summarizer.fingerprint,
            summarizer.device,
            self._settings.threads,
        )
        return summarizer

    def run_inference(
        self,
        batch: Sequence[Record],
        model: Summarizer,
        inference_args: Mapping[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        docs: list[Document] = []
        for record in batch:
            if isinstance(record, DeadLetter):
                yield PredictionResult(record, record, model.fingerprint)
            else:
                docs.append(record)
        readable: list[Document] = []
        sources: list[Source] = []
        for doc in docs:
            source = _read(doc, model)
            if isinstance(source, InferenceFailure):
                yield PredictionResult(doc, source, model.fingerprint)
            elif not source.ids:
                yield PredictionResult(doc, NO_TOKENS, model.fingerprint)
            else:
                readable.append(doc)
                sources.append(source)
        if readable:
            outcomes = self._timed_summarize(readable, sources, model)
            for doc, outcome in zip(readable, outcomes, strict=True):
                yield PredictionResult(doc, outcome, model.fingerprint)

    def _timed_summarize(
        self, docs: list[Document], sources: list[Source], model: Summarizer
    ) -> list[Summary | InferenceFailure]:
        start = time.perf_counter()
        stats = SearchStats()
        outcomes = self._summarize(
            docs, sources, model, stats, budget=self._settings.max_batch_tokens
        )
        latency_ms = int((time.perf_counter() - start) * 1000)
        Metrics.distribution(METRICS_NAMESPACE, "batch_latency_ms").update(latency_ms)
        Metrics.distribution(METRICS_NAMESPACE, "batch_documents").update(len(docs))
        if stats.padding_efficiency is not None:
            Metrics.distribution(METRICS_NAMESPACE, "padding_efficiency_pct").update(
                round(100 * stats.padding_efficiency)
            )
        Metrics.counter(METRICS_NAMESPACE, "tokens_in").inc(sum(len(s.ids) for s in sources))
        # The decoder's attention is where padding costs (the encoder packs its sequences).
        Metrics.counter(METRICS_NAMESPACE, "source_tokens_attended").inc(stats.source_tokens)
        Metrics.counter(METRICS_NAMESPACE, "padded_source_tokens_attended").inc(
            stats.padded_source_tokens
        )
        return outcomes

    def _summarize(
        self,
        docs: list[Document],
        sources: list[Source],
        model: Summarizer,
        stats: SearchStats,
        *,
        budget: int,
        attempt: int = 1,
    ) -> list[Summary | InferenceFailure]:
        outcome = _attempt(sources, model, self._decode, stats, budget)
        if not isinstance(outcome, _Failed):
            return outcome
        # Retried here, after the except block: the failed attempt's frames and tensors are
        # gone, so the cached memory they held can really be given back before trying again.
        if outcome.out_of_memory:
            Metrics.counter(METRICS_NAMESPACE, "out_of_memory_errors").inc()
            _free_cached_memory(model)
            budget = max(1, budget // 2)
        if len(docs) > 1:
            Metrics.counter(METRICS_NAMESPACE, "batch_splits").inc()
            half = len(docs) // 2
            first = self._summarize(docs[:half], sources[:half], model, stats, budget=budget)
            rest = self._summarize(docs[half:], sources[half:], model, stats, budget=budget)
            return first + rest
        if attempt < SINGLE_DOCUMENT_ATTEMPTS:
            Metrics.counter(METRICS_NAMESPACE, "document_retries").inc()
            return self._summarize(docs, sources, model, stats, budget=budget, attempt=attempt + 1)
        logger.warning("inference failed on %s: %s", docs[0].doc_id, outcome.detail)
        reason = dl.OUT_OF_MEMORY if outcome.out_of_memory else dl.INFERENCE_ERROR
        return [InferenceFailure(reason, outcome.detail)]

    def get_num_bytes(self, batch: Sequence[Record]) -> int:
        return sum(len(r.text) if isinstance(r, Document) else len(r.raw) for r in batch)

    def get_metrics_namespace(self) -> str:
        return f"{METRICS_NAMESPACE}_inference"
