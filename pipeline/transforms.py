"""SummarizeDocuments: validate -> RunInference -> summary rows, with dead letters on the side."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.pvalue import TaggedOutput

from pipeline import dead_letters as dl
from pipeline.dead_letters import METRICS_NAMESPACE
from pipeline.model_handler import InferenceFailure, Seq2SeqModelHandler
from pipeline.sources import DEAD_LETTER, DOCUMENTS, Document
from s2s_model import Summary

SUMMARIES = "summaries"


class _Validate(beam.DoFn):
    """Blank documents become dead letters; the rest go on to the model."""

    def process(self, doc: Document) -> Iterator[Any]:
        if not doc.text.strip():
            detail = "document is empty or whitespace only"
            yield TaggedOutput(
                DEAD_LETTER,
                dl.dead_letter(doc.doc_id, doc.source, dl.EMPTY_DOCUMENT, detail, doc.text),
            )
            return
        yield doc


def summary_row(
    doc: Document, summary: Summary, model_id: str, *, with_n_best: bool
) -> dict[str, Any]:
    """The Parquet row of one summarized document (see ``sinks.summary_schema``)."""
    row: dict[str, Any] = {
        "doc_id": doc.doc_id,
        "source": doc.source,
        "summary": summary.text,
        "score": float(summary.score),
        "src_tokens": summary.src_tokens,
        "summary_tokens": len(summary.tokens),
        "truncated": doc.cut or summary.truncated,
        "replaced_invalid_utf8": doc.replaced,
        "model_id": model_id,
    }
    if with_n_best:
        row["n_best"] = [{"summary": text, "score": float(score)} for text, score in summary.n_best]
    return row


class _ToRows(beam.DoFn):
    """RunInference results -> summary rows, or dead letters for inference failures."""

    def __init__(self, *, with_n_best: bool) -> None:
        self._with_n_best = with_n_best
        self._summarized = Metrics.counter(METRICS_NAMESPACE, "documents_summarized")
        self._tokens_out = Metrics.counter(METRICS_NAMESPACE, "tokens_out")
        self._truncated = Metrics.counter(METRICS_NAMESPACE, "documents_truncated")

    def process(self, result: PredictionResult) -> Iterator[Any]:
        doc, outcome = result.example, result.inference
        if isinstance(outcome, InferenceFailure):
            yield TaggedOutput(
                DEAD_LETTER,
                dl.dead_letter(doc.doc_id, doc.source, outcome.reason, outcome.detail, doc.text),
            )
            return
        row = summary_row(doc, outcome, result.model_id, with_n_best=self._with_n_best)
        self._summarized.inc()
        self._tokens_out.inc(row["summary_tokens"])
        if row["truncated"]:
            self._truncated.inc()
        yield row


class SummarizeDocuments(beam.PTransform):
    """Documents -> ``{"summaries": rows, "dead_letter": DeadLetters}``.

    Every document comes out exactly once, as a row or as a dead letter.
    """

    def __init__(self, handler: Seq2SeqModelHandler, *, with_n_best: bool) -> None:
        super().__init__()
        self._handler = handler
        self._with_n_best = with_n_best

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        checked = docs | "Validate" >> beam.ParDo(_Validate()).with_outputs(
            DEAD_LETTER, main=DOCUMENTS
        )
        outcomes = (
            checked[DOCUMENTS]
            | "RunInference" >> RunInference(self._handler)
            | "ToRows"
            >> beam.ParDo(_ToRows(with_n_best=self._with_n_best)).with_outputs(
                DEAD_LETTER, main=SUMMARIES
            )
        )
        dead = (checked[DEAD_LETTER], outcomes[DEAD_LETTER]) | "DeadLetters" >> beam.Flatten()
        return {SUMMARIES: outcomes[SUMMARIES], DEAD_LETTER: dead}
