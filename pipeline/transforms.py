"""SummarizeDocuments: validate -> RunInference -> summary rows and dead letters.

Records (Documents and the DeadLetters of reading) flow as one stream until the last step, which
splits them into summary rows and dead letters: Beam's local FnApiRunner holds the whole input
of any multi-input Flatten in memory, so the job has none without ``--reuse`` (see sources.py;
with it, reuse.py's join holds every document anyway, and one Flatten adds the reused rows).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any, cast

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.pvalue import TaggedOutput

from pipeline import dead_letters as dl
from pipeline.dead_letters import METRICS_NAMESPACE, DeadLetter
from pipeline.model_handler import InferenceFailure, Seq2SeqModelHandler
from pipeline.reuse import RowKeys
from pipeline.sinks import DEAD_LETTER, SUMMARIES
from pipeline.sources import Document, Record
from s2s_model import Summary
from s2s_model.domain import DomainProfile
from s2s_model.quality import FLAGS, assess

EMPTY_DETAIL = "document is empty or holds only whitespace and control or format characters"
# Unicode categories that carry no text: controls (NUL, ...) and format characters (zero-width
# joiners, bidi marks, BOM). A document of nothing else is blank, though a tokenizer may still
# read pieces in it (SentencePiece reads NUL as a token).
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf"})
# Counter of the rows carrying a flag: ``flagged_<flag>`` (pipeline/run.py reads them).
FLAGGED_COUNTER_PREFIX = "flagged_"


def is_blank(text: str) -> bool:
    """True when ``text`` holds nothing but whitespace, control and format characters."""
    return all(c.isspace() or unicodedata.category(c) in INVISIBLE_CATEGORIES for c in text)


def validate(record: Record) -> Record:
    """A blank Document becomes a dead letter; everything else passes unchanged."""
    if isinstance(record, Document) and is_blank(record.text):
        return dl.dead_letter(
            record.doc_id, record.source, dl.EMPTY_DOCUMENT, EMPTY_DETAIL, record.text
        )
    return record


def summary_row(
    doc: Document,
    summary: Summary,
    model_id: str,
    *,
    with_n_best: bool,
    reuse_key: str,
    domain: DomainProfile | None = None,
) -> dict[str, Any]:
    """The Parquet row of one summarized document (see ``sinks.summary_schema``); ``domain``
    is the training domain of the model that wrote ``summary`` (None: never out of domain)."""
    truncated = doc.cut or summary.truncated
    quality = assess(
        summary.text, doc.text, truncated=truncated, forced_end=summary.forced_end, domain=domain
    )
    row: dict[str, Any] = {
        "doc_id": doc.doc_id,
        "source": doc.source,
        "summary": summary.text,
        "score": float(summary.score),
        "src_tokens": summary.src_tokens,
        "summary_tokens": len(summary.tokens),
        "truncated": truncated,
        "replaced_invalid_utf8": doc.replaced,
        "model_id": model_id,
        "novel_words": quality.novel_words,
        "repeated_words": quality.repeated_words,
        "flags": quality.flags,
        "reuse_key": reuse_key,
    }
    if with_n_best:
        row["n_best"] = [{"summary": text, "score": float(score)} for text, score in summary.n_best]
    return row


class _ToRows(beam.DoFn):
    """RunInference results -> summary rows (main output) or dead letters (tagged)."""

    def __init__(
        self, *, with_n_best: bool, keys: RowKeys, domain: DomainProfile | None = None
    ) -> None:
        self._with_n_best = with_n_best
        self._keys = keys
        self._domain = domain
        self._summarized = Metrics.counter(METRICS_NAMESPACE, "documents_summarized")
        self._tokens_out = Metrics.counter(METRICS_NAMESPACE, "tokens_out")
        self._truncated = Metrics.counter(METRICS_NAMESPACE, "documents_truncated")

    def process(self, result: PredictionResult) -> Iterator[Any]:
        record = cast(Document, result.example)
        outcome = cast(Summary | InferenceFailure | DeadLetter, result.inference)
        if isinstance(outcome, DeadLetter):
            yield TaggedOutput(DEAD_LETTER, outcome)
        elif isinstance(outcome, InferenceFailure):
            letter = dl.dead_letter(
                record.doc_id, record.source, outcome.reason, outcome.detail, record.text
            )
            yield TaggedOutput(DEAD_LETTER, letter)
        else:
            model_id = result.model_id or ""
            row = summary_row(
                record,
                outcome,
                model_id,
                with_n_best=self._with_n_best,
                reuse_key=self._keys(record, model_id),
                domain=self._domain,
            )
            self._summarized.inc()
            self._tokens_out.inc(row["summary_tokens"])
            if row["truncated"]:
                self._truncated.inc()
            yield row


class CountFlags(beam.DoFn):
    """Counts the rows carrying each flag (``flagged_<flag>`` counters) and passes nothing on:
    applied to every summary row the job writes, decoded or carried over by ``--reuse``."""

    def __init__(self) -> None:
        self._flagged = {
            flag: Metrics.counter(METRICS_NAMESPACE, FLAGGED_COUNTER_PREFIX + flag)
            for flag in FLAGS
        }

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        for flag in row["flags"]:
            counter = self._flagged.get(flag)
            if counter is not None:
                counter.inc()
        return iter(())


class SummarizeDocuments(beam.PTransform):
    """Records -> ``{"summaries": rows, "dead_letter": DeadLetters}``.

    Every record comes out exactly once, as a summary row or as a dead letter. ``keys`` gives
    each row its ``reuse_key`` (see reuse.py), from the fingerprint of the model that decoded it;
    ``domain`` is that model's training domain (``Summarizer.domain``), for ``out_of_domain``.
    """

    def __init__(
        self,
        handler: Seq2SeqModelHandler,
        *,
        with_n_best: bool,
        keys: RowKeys,
        domain: DomainProfile | None = None,
    ) -> None:
        super().__init__()
        self._handler = handler
        self._with_n_best = with_n_best
        self._keys = keys
        self._domain = domain

    def expand(self, records: beam.pvalue.PCollection) -> dict[str, beam.pvalue.PCollection]:
        outcomes = (
            records
            | "Validate" >> beam.Map(validate)
            | "RunInference" >> RunInference(self._handler)
            | "ToRows"
            >> beam.ParDo(
                _ToRows(with_n_best=self._with_n_best, keys=self._keys, domain=self._domain)
            ).with_outputs(DEAD_LETTER, main=SUMMARIES)
        )
        return {SUMMARIES: outcomes[SUMMARIES], DEAD_LETTER: outcomes[DEAD_LETTER]}
