"""Seq2SeqModelHandler called directly, then inside a TestPipeline through SummarizeDocuments."""

from __future__ import annotations

import dataclasses
import pickle
import re
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import apache_beam as beam
import pytest
import torch
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.dead_letters import dead_letter
from pipeline.model_handler import InferenceFailure, Seq2SeqModelHandler, preloaded
from pipeline.reuse import AnswerSettings, RowKeys
from pipeline.sinks import DEAD_LETTER, SUMMARIES
from pipeline.sources import Document
from pipeline.transforms import EMPTY_DETAIL, SummarizeDocuments, summary_row
from s2s_model import DecodeConfig, DeviceError, RuntimeSettings, Source, Summarizer, Summary
from s2s_model.config import Precision, Quantize
from tests.conftest import make_texts
from tests.fault_injection import WrappedModel

DECODE = DecodeConfig(beam_size=2, max_len=5)
KEYS = RowKeys(AnswerSettings(DECODE, max_src_tokens=400, quantize="none", precision="fp32"))
POISON = "poison"


class FakeSummarizer:
    """Counts tokens as words (none in U+200B); fails any batch holding POISON."""

    fingerprint = "fake"
    device = "cpu"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def count_tokens(self, text: str) -> int:
        return len(re.findall(r"\w+", text))

    def read(self, text: str) -> Source:
        return Source(text, [5] * self.count_tokens(text), False)

    def summarize_sources(
        self, sources: Sequence[Source], decode: DecodeConfig | None = None, **options: Any
    ) -> list[Summary]:
        return self.summarize([s.text for s in sources], decode, **options)

    def summarize(
        self, texts: Sequence[str], decode: DecodeConfig | None = None, **options: object
    ) -> list[Summary]:
        self.calls.append(len(texts))
        if any(POISON in t for t in texts):
            raise RuntimeError("cannot summarize poison")
        return [Summary(t.split()[0], -1.0, [5], [(t.split()[0], -1.0)], 1, False) for t in texts]


def _doc(result: PredictionResult) -> Document:
    """A result's document (Beam types a result's fields loosely)."""
    return cast(Document, result.example)


def _out(result: PredictionResult) -> Any:
    """A result's inference: a Summary or an InferenceFailure."""
    return result.inference


def _docs(texts: Sequence[str]) -> list[Document]:
    return [Document(f"d{i}", "src", text) for i, text in enumerate(texts)]


def test_a_failing_batch_is_split_until_only_the_bad_document_fails() -> None:
    handler = Seq2SeqModelHandler(settings=RuntimeSettings(max_batch_tokens=1000), batch_window=64)
    model = FakeSummarizer()
    texts = [f"word{i} and more" for i in range(15)] + [f"{POISON} pill here"]
    results = list(handler.run_inference(_docs(texts), model))  # type: ignore[arg-type]
    assert sorted(_doc(r).doc_id for r in results) == sorted(f"d{i}" for i in range(16))
    failed = [r for r in results if isinstance(r.inference, InferenceFailure)]
    assert [_doc(r).text for r in failed] == [f"{POISON} pill here"]
    assert _out(failed[0]).reason == "inference_error"
    assert "cannot summarize poison" in _out(failed[0]).detail
    # halving, not one retry per document; the bad document alone gets a second attempt
    assert len(model.calls) <= 1 + 2 * 4 + 1
    assert model.calls[-2:] == [1, 1]
    assert all(r.model_id == "fake" for r in results)


class RunsOutOfMemory(FakeSummarizer):
    """Runs out of memory on any window of more than one document, holding a tensor (as a real
    attempt would) when it does; records, at each call, whether earlier attempts' tensors are
    still alive, and the token budget it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[weakref.ref[torch.Tensor]] = []
        self.alive_at_call: list[int] = []
        self.attempts: list[tuple[int, int | None]] = []  # (documents, token budget)

    def summarize(
        self, texts: Sequence[str], decode: DecodeConfig | None = None, **options: Any
    ) -> list[Summary]:
        self.alive_at_call.append(sum(ref() is not None for ref in self.held))
        self.attempts.append((len(texts), options.get("max_batch_tokens")))
        activations = torch.ones(1024)
        self.held.append(weakref.ref(activations))
        if len(texts) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (a test)")
        return super().summarize(texts, decode)


def test_out_of_memory_retries_start_after_the_failed_attempt_is_released() -> None:
    handler = Seq2SeqModelHandler(settings=RuntimeSettings(max_batch_tokens=800))
    model = RunsOutOfMemory()
    results = list(handler.run_inference(_docs(["a b", "c d", "e f", "g h"]), model))  # type: ignore[arg-type]
    assert all(isinstance(r.inference, Summary) for r in results)
    # Each out-of-memory halves the window and the token budget of the retries below it.
    assert model.attempts == [(4, 800), (2, 400), (1, 200), (1, 200), (2, 400), (1, 200), (1, 200)]
    # No retry ever started while an earlier attempt's tensors were still held.
    assert model.alive_at_call == [0] * len(model.attempts)


class BreaksTheGpu(FakeSummarizer):
    device = "cuda"

    def summarize(
        self, texts: Sequence[str], decode: DecodeConfig | None = None, **options: Any
    ) -> list[Summary]:
        self.calls.append(len(texts))
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_cuda_error_fails_the_bundle_instead_of_dead_lettering_documents() -> None:
    model = BreaksTheGpu()
    with pytest.raises(RuntimeError, match="illegal memory access"):
        list(Seq2SeqModelHandler().run_inference(_docs(["a b", "c d"]), model))  # type: ignore[arg-type]
    assert model.calls == [2]  # no split, no per-document retries on a broken context


def test_documents_without_tokens_are_not_sent_to_the_model() -> None:
    handler = Seq2SeqModelHandler()
    model = FakeSummarizer()
    results = list(handler.run_inference(_docs(["\u200b", "real text"]), model))  # type: ignore[arg-type]
    assert [r.inference.reason for r in results if isinstance(r.inference, InferenceFailure)] == [
        "empty_document"
    ]
    assert model.calls == [1]


def test_a_window_is_one_call_so_the_summarizer_can_refill_its_batch() -> None:
    handler = Seq2SeqModelHandler(settings=RuntimeSettings(max_batch_tokens=12))
    model = FakeSummarizer()
    texts = ["a b c d", "a", "a b c d e f", "a b", "a b c", "a b c d e f"]
    results = list(handler.run_inference(_docs(texts), model))  # type: ignore[arg-type]
    assert model.calls == [6]
    assert [_out(r).text for r in results] == ["a"] * 6


def test_dead_letters_pass_through_in_the_same_stream() -> None:
    handler = Seq2SeqModelHandler()
    model = FakeSummarizer()
    letter = dead_letter("x:1", "x", "malformed_json", "bad", "{")
    results = list(handler.run_inference([letter, *_docs(["real text"])], model))  # type: ignore[arg-type]
    assert [(r.example, r.inference) for r in results[:1]] == [(letter, letter)]
    assert model.calls == [1]
    assert len(results) == 2


def test_handler_is_small_to_pickle_and_validates_settings() -> None:
    handler = Seq2SeqModelHandler(
        "/models/x", decode=DECODE, settings=RuntimeSettings(threads=2), batch_window=32
    )
    assert len(pickle.dumps(handler)) < 4096
    assert handler.batch_elements_kwargs() == {"min_batch_size": 32, "max_batch_size": 32}
    assert handler._env_vars == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    with pytest.raises(ValueError, match="batch_window=0"):
        Seq2SeqModelHandler(batch_window=0)


def test_real_model_gives_what_the_summarizer_gives_alone(tiny_checkpoint: Path) -> None:
    handler = Seq2SeqModelHandler(
        str(tiny_checkpoint), decode=DECODE, settings=RuntimeSettings(max_batch_tokens=60)
    )
    model = handler.load_model()
    texts = make_texts(9, seed=31)
    results = list(handler.run_inference(_docs(texts), model))
    by_id = {_doc(r).doc_id: _out(r) for r in results}
    alone = Summarizer.load(tiny_checkpoint)
    for i, text in enumerate(texts):
        (expected,) = alone.summarize([text], DECODE)
        assert by_id[f"d{i}"].tokens == expected.tokens
        assert by_id[f"d{i}"].score == pytest.approx(expected.score, abs=1e-4)
    assert {r.model_id for r in results} == {alone.fingerprint}


class PoisonedHandler(WrappedModel):
    """The real model, made to fail on POISON documents (as a broken input would)."""

    def fault(self, texts: Sequence[str]) -> None:
        if any(POISON in t for t in texts):
            raise RuntimeError("poisoned")


def test_summarize_documents_in_a_pipeline(tiny_checkpoint: Path) -> None:
    texts = make_texts(7, seed=32)
    docs = [*_docs(texts), Document("blank", "src", "  \n"), Document("bad", "src", f"{POISON} x")]
    alone = Summarizer.load(tiny_checkpoint)
    expected_rows = [
        summary_row(
            doc,
            summary,
            alone.fingerprint,
            with_n_best=False,
            reuse_key=KEYS(doc, alone.fingerprint),
        )
        for doc, summary in zip(docs, alone.summarize(texts, DECODE), strict=False)
    ]
    handler = PoisonedHandler(str(tiny_checkpoint), decode=DECODE, batch_window=4)
    with BeamPipeline() as p:
        out = p | beam.Create(docs) | SummarizeDocuments(handler, with_n_best=False, keys=KEYS)
        rows = out[SUMMARIES] | "Rounded" >> beam.Map(
            lambda row: {**row, "score": round(row["score"], 3)}
        )
        dead = out[DEAD_LETTER] | beam.Map(lambda d: (d.doc_id, d.reason, d.detail))
        assert_that(
            rows,
            equal_to([{**r, "score": round(r["score"], 3)} for r in expected_rows]),
            label="Rows",
        )
        assert_that(
            dead,
            equal_to(
                [
                    ("blank", "empty_document", EMPTY_DETAIL),
                    ("bad", "inference_error", "RuntimeError: poisoned"),
                ]
            ),
            label="DeadLetters",
        )


def test_cuda_without_a_gpu_fails_the_worker_instead_of_falling_back(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cuda = Seq2SeqModelHandler(str(tiny_checkpoint), settings=RuntimeSettings(device="cuda"))
    with pytest.raises(DeviceError, match="device 'cuda' asked for"):
        cuda.load_model()
    auto = Seq2SeqModelHandler(str(tiny_checkpoint), settings=RuntimeSettings(device="auto"))
    assert auto.load_model().device == "cpu"


@pytest.mark.parametrize(
    ("text", "blank"),
    [
        ("", True),
        (" \t\n\u00a0\u3000", True),
        ("\x00\x01\x7f", True),  # controls
        ("\u200b\u200d\ufeff\u202e\u00ad", True),  # format characters
        ("\x00a", False),
        ("📦", False),
        ("\u0301", False),  # a combining mark is text
    ],
)
def test_is_blank(text: str, blank: bool) -> None:
    from pipeline.transforms import is_blank

    assert is_blank(text) is blank


@pytest.mark.parametrize(("quantize", "precision"), [("none", "bf16"), ("int8", "fp32")])
def test_the_handler_loads_the_model_as_asked(
    tiny_checkpoint: Path, quantize: Quantize, precision: Precision
) -> None:
    settings = RuntimeSettings(quantize=quantize, precision=precision)
    handler = Seq2SeqModelHandler(str(tiny_checkpoint), settings=settings)
    model = handler.load_model()
    assert (model.settings.quantize, model.settings.precision) == (quantize, precision)
    results = list(handler.run_inference(_docs(["the package does things"]), model))
    assert isinstance(results[0].inference, Summary)


def test_a_worker_takes_the_launchers_model_once_and_only_with_the_same_settings(
    tiny_checkpoint: Path,
) -> None:
    settings = RuntimeSettings(device="cpu", threads=1)
    launchers = Summarizer.load(tiny_checkpoint, settings)
    same = Seq2SeqModelHandler(str(tiny_checkpoint), settings=settings)
    int8 = Seq2SeqModelHandler(
        str(tiny_checkpoint), settings=dataclasses.replace(settings, quantize="int8")
    )
    with preloaded(str(tiny_checkpoint), launchers):
        assert int8.load_model() is not launchers
        assert same.load_model() is launchers
        assert same.load_model() is not launchers, "an offer is taken once"
    with preloaded(str(tiny_checkpoint), launchers):
        pass
    assert same.load_model() is not launchers, "the offer ends with its block"
