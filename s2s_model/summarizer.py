"""Summarizer: the one facade the pipeline, the CLI and users call."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from s2s_model.bundled import model_directory
from s2s_model.checkpoint import Checkpoint, load_checkpoint
from s2s_model.config import DecodeConfig, RuntimeSettings
from s2s_model.device import resolve_device
from s2s_model.domain import DomainProfile, domain_profile
from s2s_model.quantize import quantize_model
from s2s_model.search import Hypothesis, SearchStats, beam_search, search_documents
from s2s_model.tokenizer import PAD_ID, TextTokenizer, WordTokenizer
from s2s_model.wordpieces import word_pieces

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    """One document's summary. ``n_best`` holds (text, score) pairs, best first.

    ``tokens`` are vocabulary ids, except that a model with ``extended_vocab`` gives a word it
    copied from outside the vocabulary as V + (its first position in the source).

    ``forced_end``: the best hypothesis reached the maximum length, so decoding ended it there
    instead of the model choosing to (the summary may be cut off).
    """

    text: str
    score: float
    tokens: list[int]
    n_best: list[tuple[str, float]]
    src_tokens: int
    truncated: bool
    forced_end: bool = False


class DocumentSearch(Protocol):
    """The step between tokenizing and detokenizing: hypotheses for each source, best first.

    ``sources`` are token ids, longest first; the result has one list per source, in the same
    order. ``max_batch_tokens`` bounds an active batch (documents x longest source) and
    ``stats`` receives the work counters; an implementation may ignore both.
    ``Summarizer.with_search`` puts one in place of the model's beam search: the benchmarks
    time the host work around a stand-in (``s2s_model.stand_in``) and tests use it too.
    """

    def __call__(
        self,
        sources: Sequence[list[int]],
        config: DecodeConfig,
        *,
        max_batch_tokens: int,
        stats: SearchStats | None,
    ) -> list[list[Hypothesis]]: ...


@dataclass(frozen=True)
class Source:
    """A text as the model reads it: ``ids`` cut at ``max_src_tokens`` (``truncated`` if cut).

    ``Summarizer.read`` makes one; a caller that needs the token count first (to batch, or to
    set aside texts with no readable token) reads once and passes the ``Source`` on."""

    text: str
    ids: list[int]
    truncated: bool


@dataclass(frozen=True)
class _Encoded:
    index: int
    ids: list[int]
    truncated: bool
    text: str


class Summarizer:
    """Load once, then ``summarize`` lists of texts. Safe to call from several threads at once:
    per-call state lives in local tensors, never on the shared model.
    """

    def __init__(self, checkpoint: Checkpoint, settings: RuntimeSettings | None = None) -> None:
        """The checkpoint's model on ``settings.device``, resolved here, once ('auto': the GPU
        where torch can use one); ``settings.device`` is then the device it runs on."""
        settings = settings or RuntimeSettings()
        device = resolve_device(settings.device)
        self.settings = dataclasses.replace(settings, device=device)
        self.device = device
        self.model = quantize_model(checkpoint.model.to(device).eval(), settings.quantize, device)
        self.tokenizer: TextTokenizer = checkpoint.tokenizer
        # Word-level tokenizer of a model that copies unknown words (extended ids), else None.
        self._extended = _extended_tokenizer(checkpoint)
        self.decode: DecodeConfig = checkpoint.decode
        self.fingerprint: str = checkpoint.fingerprint
        self.metadata = checkpoint.metadata
        # The model's training domain (None for a model saved without one: nothing is then
        # flagged out of domain); ``quality.assess(..., domain=summarizer.domain)`` uses it.
        self.domain: DomainProfile | None = domain_profile(checkpoint.metadata)
        self._frequent_ids: dict[int, torch.Tensor] = {}
        self._words = word_pieces(self.tokenizer).to(device)
        self._stand_in: DocumentSearch | None = None
        # Threads that share this summarizer on an accelerator search in turn (one search keeps
        # a GPU busy; two at once measured slower), while the others tokenize and write: the
        # host work of one window overlaps the search of another. On the CPU each search
        # needs its own cores, and they run at once.
        self._turns: AbstractContextManager[object] = (
            threading.Lock() if device != "cpu" else nullcontext()
        )

    def with_search(self, search: DocumentSearch) -> Summarizer:
        """This summarizer (same model, tokenizer and settings) with ``search`` run in place of
        the model's beam search: a seam for benchmarks and tests of the work around it."""
        other = copy.copy(self)
        other._stand_in = search
        return other

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        settings: RuntimeSettings | None = None,
        **changes: Any,
    ) -> Summarizer:
        """Load a checkpoint directory, or a bundled model by name (``"debian"``, the default
        when ``path`` is None, or ``"news"``: ``s2s_model.bundled``).

        ``settings`` says how it runs (``RuntimeSettings``: device, threads, token limits,
        refill, quantize, precision, search threads); ``changes`` are ``RuntimeSettings`` fields
        applied on top of it, so ``Summarizer.load(device="cuda", quantize="none")`` works too.
        ``threads`` sets torch's intra-op threads for this whole process.
        """
        settings = dataclasses.replace(settings or RuntimeSettings(), **changes)
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        checkpoint = load_checkpoint(model_directory(path))
        return cls(checkpoint, settings)

    def read(self, text: str) -> Source:
        """``text`` as the model reads it (no ids: nothing it can read)."""
        if not isinstance(text, str):
            ids: list[int] = []
        elif self._extended is not None:
            ids = self._extended.encode_extended(text)
        else:
            ids = self.tokenizer.encode(text)
        limit = self.settings.max_src_tokens
        return Source(text, ids[:limit], len(ids) > limit)

    def count_tokens(self, text: str) -> int:
        """Source tokens the model will read for ``text`` (after truncation)."""
        return len(self.read(text).ids)

    def summarize(
        self,
        texts: Sequence[str],
        decode: DecodeConfig | None = None,
        *,
        max_batch_tokens: int | None = None,
        stats: SearchStats | None = None,
    ) -> list[Summary]:
        """Summaries of ``texts``, in the same order. A blank text raises ``ValueError``.

        ``max_batch_tokens`` overrides the token budget for this call (a caller that ran out of
        memory retries with a smaller one); the results do not depend on it. ``stats`` receives
        the search's work counters (padding efficiency).
        """
        sources = [self.read(text) for text in texts]
        return self.summarize_sources(
            sources, decode, max_batch_tokens=max_batch_tokens, stats=stats
        )

    def summarize_sources(
        self,
        sources: Sequence[Source],
        decode: DecodeConfig | None = None,
        *,
        max_batch_tokens: int | None = None,
        stats: SearchStats | None = None,
    ) -> list[Summary]:
        """``summarize`` for texts already read (``read``), so that none is tokenized twice."""
        config = decode or self.decode
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens={max_batch_tokens} must be at least 1")
        budget = self.settings.max_batch_tokens if max_batch_tokens is None else max_batch_tokens
        encoded = sorted(
            (self._encode(i, source) for i, source in enumerate(sources)),
            key=lambda e: -len(e.ids),
        )
        results: list[Summary | None] = [None] * len(encoded)
        with torch.inference_mode(), self._turns:
            if self._stand_in is not None:
                ids = [item.ids for item in encoded]
                hyps = self._stand_in(ids, config, max_batch_tokens=budget, stats=stats)
            else:
                hyps = self._search(encoded, config, budget, stats)
        for item, item_hyps in zip(encoded, hyps, strict=True):
            results[item.index] = self._summary(item, item_hyps, config)
        return [r for r in results if r is not None]

    def _encode(self, index: int, source: Source) -> _Encoded:
        if not source.ids:
            raise ValueError(f"text {index} is blank or not a string: nothing to summarize")
        return _Encoded(index, source.ids, source.truncated, source.text)

    def _search(
        self,
        encoded: list[_Encoded],
        config: DecodeConfig,
        budget: int,
        stats: SearchStats | None,
    ) -> list[list[Hypothesis]]:
        """Hypotheses for ``encoded`` (longest first), dealt to ``search_threads`` searches.

        Document j goes to search j mod N, so every search gets a similar mix of lengths; a
        document's result does not depend on its batch, so dealing never changes an answer.
        """
        shares = [
            encoded[i :: self.settings.search_threads] for i in range(self.settings.search_threads)
        ]
        shares = [share for share in shares if share]
        if len(shares) == 1:
            return self._search_share(encoded, config, budget, stats)
        self._frequent(config)  # rank the shortlist once, before the threads share it
        counters = [SearchStats() for _ in shares]
        with ThreadPoolExecutor(len(shares), thread_name_prefix="s2s-search") as pool:
            parts = list(
                pool.map(
                    lambda share, counter: self._search_share(share, config, budget, counter),
                    shares,
                    counters,
                )
            )
        if stats is not None:
            for counter in counters:
                stats.add(counter)
        return [parts[j % len(parts)][j // len(parts)] for j in range(len(encoded))]

    def _search_share(
        self,
        encoded: list[_Encoded],
        config: DecodeConfig,
        budget: int,
        stats: SearchStats | None,
    ) -> list[list[Hypothesis]]:
        """Longest first; the active batch (docs x longest source) stays within ``budget``."""
        with self._autocast():  # autocast is per thread: entered here, in the searching thread
            if self.settings.refill:
                sources = [
                    torch.tensor(e.ids, dtype=torch.long, device=self.device) for e in encoded
                ]
                return search_documents(
                    self.model,
                    sources,
                    config,
                    max_batch_tokens=budget,
                    frequent=self._frequent(config),
                    stats=stats,
                    words=self._words,
                )
            batches = self._batches(encoded, budget)
            return [h for batch in batches for h in self._search_batch(batch, config, stats)]

    def _autocast(self) -> AbstractContextManager[object]:
        """bf16 autocast on this Summarizer's device when ``precision='bf16'``, else nothing."""
        if self.settings.precision == "bf16":
            return torch.autocast(device_type=self.device, dtype=torch.bfloat16)
        return nullcontext()

    def _batches(self, encoded: list[_Encoded], budget: int) -> list[list[_Encoded]]:
        """Fixed batches of length-sorted documents within the token budget (no refilling)."""
        batches: list[list[_Encoded]] = []
        for item in encoded:
            current = batches[-1] if batches else None
            if current and len(current[0].ids) * (len(current) + 1) <= budget:
                current.append(item)
            else:
                batches.append([item])
        return batches

    def _search_batch(
        self, batch: list[_Encoded], config: DecodeConfig, stats: SearchStats | None
    ) -> list[list[Hypothesis]]:
        longest = len(batch[0].ids)
        src = torch.full((len(batch), longest), PAD_ID, dtype=torch.long)
        for row, item in enumerate(batch):
            src[row, : len(item.ids)] = torch.tensor(item.ids, dtype=torch.long)
        src_len = torch.tensor([len(item.ids) for item in batch], dtype=torch.long)
        return beam_search(
            self.model,
            src.to(self.device),
            src_len.to(self.device),
            config,
            frequent=self._frequent(config),
            stats=stats,
            words=self._words,
        )

    def _frequent(self, config: DecodeConfig) -> torch.Tensor | None:
        """The ``config.shortlist`` most frequent target ids, when shortlisting."""
        if not config.shortlist:
            return None
        if config.shortlist not in self._frequent_ids:  # ranking the vocabulary is O(V) Python
            ids = self.tokenizer.most_frequent(config.shortlist)
            self._frequent_ids[config.shortlist] = torch.tensor(
                ids, dtype=torch.long, device=self.device
            )
        return self._frequent_ids[config.shortlist]

    def _summary(self, item: _Encoded, hyps: list[Hypothesis], config: DecodeConfig) -> Summary:
        best = hyps[0]
        n_best = [(self._text(h.tokens, item.text), h.score) for h in hyps]
        return Summary(
            text=n_best[0][0],
            score=best.score,
            tokens=list(best.tokens),
            n_best=n_best,
            src_tokens=len(item.ids),
            truncated=item.truncated,
            forced_end=len(best.tokens) >= config.max_len_for(len(item.ids)),
        )

    def _text(self, tokens: list[int], source: str) -> str:
        """A hypothesis's text; extended ids spell the source words they copied."""
        if self._extended is not None:
            return self._extended.decode(tokens, source)
        return self.tokenizer.decode(tokens)


def _extended_tokenizer(checkpoint: Checkpoint) -> WordTokenizer | None:
    """The word tokenizer that gives unknown words extended ids, when the model copies them."""
    if not checkpoint.model.config.extended_vocab:
        return None
    if not isinstance(checkpoint.tokenizer, WordTokenizer):
        raise ValueError(
            "extended_vocab needs a word-level tokenizer (a SentencePiece model has no unknown"
            " words to copy): save the model with extended_vocab false"
        )
    return checkpoint.tokenizer
