"""Summarizer: the one facade the pipeline, the CLI and users call."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from s2s_model.checkpoint import Checkpoint, load_checkpoint
from s2s_model.config import DecodeConfig
from s2s_model.search import Hypothesis, beam_search, greedy_search
from s2s_model.tokenizer import PAD_ID, Tokenizer

logger = logging.getLogger(__name__)

BUNDLED_MODEL = Path(__file__).parent / "pretrained" / "debian-synopsis"
DEVICES = ("cpu", "cuda", "auto")
DEFAULT_MAX_SRC_TOKENS = 400
DEFAULT_MAX_BATCH_TOKENS = 6000


@dataclass(frozen=True)
class Summary:
    """One document's summary. ``n_best`` holds (text, score) pairs, best first."""

    text: str
    score: float
    tokens: list[int]
    n_best: list[tuple[str, float]]
    src_tokens: int
    truncated: bool


@dataclass(frozen=True)
class _Encoded:
    index: int
    ids: list[int]
    truncated: bool


def resolve_device(device: str) -> str:
    """'cpu' | 'cuda' | 'auto' -> the device to use; CUDA falls back to CPU with a warning."""
    if device not in DEVICES:
        raise ValueError(f"device={device!r}: choose one of {DEVICES}")
    if device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        logger.warning("device 'cuda' requested but no CUDA device is available: using the CPU")
    return "cpu"


class Summarizer:
    """Load once, then ``summarize`` lists of texts. Safe to call from several threads at once:
    per-call state lives in local tensors, never on the shared model.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: str = "cpu",
        max_src_tokens: int = DEFAULT_MAX_SRC_TOKENS,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> None:
        if max_src_tokens < 1 or max_batch_tokens < 1:
            raise ValueError("max_src_tokens and max_batch_tokens must be at least 1")
        self.device = device
        self.model = checkpoint.model.to(device).eval()
        self.tokenizer: Tokenizer = checkpoint.tokenizer
        self.decode: DecodeConfig = checkpoint.decode
        self.fingerprint: str = checkpoint.fingerprint
        self.metadata = checkpoint.metadata
        self.max_src_tokens = max_src_tokens
        self.max_batch_tokens = max_batch_tokens

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        threads: int | None = None,
        *,
        max_src_tokens: int = DEFAULT_MAX_SRC_TOKENS,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> Summarizer:
        """Load a checkpoint directory (the bundled model when ``path`` is None).

        ``threads`` sets torch's intra-op threads for this process (None leaves them alone).
        """
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads={threads} must be at least 1")
            torch.set_num_threads(threads)
        resolved = resolve_device(device)
        checkpoint = load_checkpoint(BUNDLED_MODEL if path is None else path, device=resolved)
        return cls(
            checkpoint,
            device=resolved,
            max_src_tokens=max_src_tokens,
            max_batch_tokens=max_batch_tokens,
        )

    def count_tokens(self, text: str) -> int:
        """Source tokens the model will read for ``text`` (after truncation)."""
        return min(len(self.tokenizer.encode(text)), self.max_src_tokens)

    def summarize(self, texts: Sequence[str], decode: DecodeConfig | None = None) -> list[Summary]:
        """Summaries of ``texts``, in the same order. A blank text raises ``ValueError``."""
        config = decode or self.decode
        encoded = [self._encode(i, text) for i, text in enumerate(texts)]
        results: list[Summary | None] = [None] * len(encoded)
        with torch.inference_mode():
            for batch in self._batches(encoded):
                for item, hyps in zip(batch, self._search(batch, config), strict=True):
                    results[item.index] = self._summary(item, hyps)
        return [r for r in results if r is not None]

    def _encode(self, index: int, text: str) -> _Encoded:
        ids = self.tokenizer.encode(text) if isinstance(text, str) else []
        if not ids:
            raise ValueError(f"text {index} is blank or not a string: nothing to summarize")
        truncated = len(ids) > self.max_src_tokens
        return _Encoded(index, ids[: self.max_src_tokens], truncated)

    def _batches(self, encoded: list[_Encoded]) -> list[list[_Encoded]]:
        """Longest first; a batch's padded size (docs x longest) stays within the token budget."""
        ordered = sorted(encoded, key=lambda e: -len(e.ids))
        batches: list[list[_Encoded]] = []
        for item in ordered:
            current = batches[-1] if batches else None
            if current and len(current[0].ids) * (len(current) + 1) <= self.max_batch_tokens:
                current.append(item)
            else:
                batches.append([item])
        return batches

    def _search(self, batch: list[_Encoded], config: DecodeConfig) -> list[list[Hypothesis]]:
        longest = len(batch[0].ids)
        src = torch.full((len(batch), longest), PAD_ID, dtype=torch.long)
        for row, item in enumerate(batch):
            src[row, : len(item.ids)] = torch.tensor(item.ids, dtype=torch.long)
        src_len = torch.tensor([len(item.ids) for item in batch], dtype=torch.long)
        search = greedy_search if config.beam_size == 1 else beam_search
        return search(self.model, src.to(self.device), src_len.to(self.device), config)

    def _summary(self, item: _Encoded, hyps: list[Hypothesis]) -> Summary:
        best = hyps[0]
        return Summary(
            text=self.tokenizer.decode(best.tokens),
            score=best.score,
            tokens=list(best.tokens),
            n_best=[(self.tokenizer.decode(h.tokens), h.score) for h in hyps],
            src_tokens=len(item.ids),
            truncated=item.truncated,
        )
