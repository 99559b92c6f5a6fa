"""Explicit, reorderable search state: nothing per call lives on an ``nn.Module``.

A loaded model is shared by threads inside a Beam worker, so everything that changes while decoding
is passed in and returned (fairseq ``reorder_incremental_state``, OpenNMT-py ``map_state``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from s2s_model.transfer import interleave


@dataclass(frozen=True)
class Memory:
    """What the decoder attends to, one entry per document (never copied per beam).

    ``outputs``, ``keys`` and ``mask`` have R >= B rows: when documents leave, ``rows`` maps the
    remaining B to their rows, and the big tensors are compacted only once half their rows are
    stale (copying them on every departure cost more than the attention over stale rows).

    Attributes:
        outputs: (R, S, H) encoder outputs, zero at padded positions.
        keys: (R, S, H) attention keys derived from ``outputs`` once per document.
        mask: (R, S) bool, True at real source tokens.
        src: (B, S) source token ids, for copying; with ``ModelConfig.extended_vocab`` a word
            outside the vocabulary is V + (its first position), else UNK.
        allowed: (B, V) bool, each document's output vocabulary when shortlisting, else None.
        vocab: (U,) sorted ids allowed for any document (the union of ``allowed``), else None.
            The decoder then scores these U ids only: column j of its output is id ``vocab[j]``.
        columns: (B, U) bool, ``allowed`` restricted to ``vocab``'s columns, else None.
        generator: the output layer restricted to ``vocab``, (N, H) -> (N, U), made once per
            shortlist (``Seq2Seq.shortlisted``); None until then.
        rows: (B,) each document's row in ``outputs``, ``keys`` and ``mask``; None when R = B
            and row i is document i.
    """

    outputs: Tensor
    keys: Tensor
    mask: Tensor
    src: Tensor
    allowed: Tensor | None = None
    vocab: Tensor | None = None
    columns: Tensor | None = None
    generator: Callable[[Tensor], Tensor] | None = None
    rows: Tensor | None = None

    def with_allowed(self, allowed: Tensor | None) -> Memory:
        """This memory with per-document vocabularies ``allowed`` (B, V) (None: full)."""
        if allowed is None:
            return replace(self, allowed=None, vocab=None, columns=None, generator=None)
        vocab = allowed.any(dim=0).nonzero().flatten()
        columns = allowed.index_select(1, vocab)
        return replace(self, allowed=allowed, vocab=vocab, columns=columns, generator=None)

    def with_generator(self, generator: Callable[[Tensor], Tensor]) -> Memory:
        """This memory with the output layer restricted to its ``vocab``."""
        return replace(self, generator=generator)

    @property
    def batch_size(self) -> int:
        """B, the documents (``rows`` may point into more stored rows)."""
        return int(self.src.size(0))

    def index_select(self, docs: Tensor) -> Memory:
        """Keep the documents ``docs`` (1-D long tensor), in that order.

        The shortlist's ``vocab`` (and its ``generator``) stay as they are: still a superset of
        what the kept documents allow, so documents leaving never rebuild the output layer.
        """
        rows = docs if self.rows is None else self.rows.index_select(0, docs)
        kept = replace(
            self,
            src=self.src.index_select(0, docs),
            allowed=None if self.allowed is None else self.allowed.index_select(0, docs),
            columns=None if self.columns is None else self.columns.index_select(0, docs),
            rows=rows,
        )
        return kept.compacted() if 2 * rows.numel() <= self.outputs.size(0) else kept

    def compacted(self) -> Memory:
        """The same documents with ``outputs``, ``keys`` and ``mask`` holding only their rows."""
        if self.rows is None:
            return self
        return replace(
            self,
            outputs=self.outputs.index_select(0, self.rows),
            keys=self.keys.index_select(0, self.rows),
            mask=self.mask.index_select(0, self.rows),
            rows=None,
        )

    def resize_source(self, length: int) -> Memory:
        """Cut or zero-pad the source axis to ``length`` (S -> length); padding is masked out."""
        return replace(
            self,
            outputs=_resize(self.outputs, 1, length),
            keys=_resize(self.keys, 1, length),
            mask=_resize(self.mask, 1, length),
            src=_resize(self.src, 1, length),
        )

    @staticmethod
    def cat(first: Memory, second: Memory) -> Memory:
        """Documents of ``first`` then ``second``; the shorter source axis is padded."""
        length = max(first.outputs.size(1), second.outputs.size(1))
        a = first.compacted().resize_source(length)
        b = second.compacted().resize_source(length)
        allowed = None
        if a.allowed is not None and b.allowed is not None:
            allowed = torch.cat([a.allowed, b.allowed])
        return Memory(
            outputs=torch.cat([a.outputs, b.outputs]),
            keys=torch.cat([a.keys, b.keys]),
            mask=torch.cat([a.mask, b.mask]),
            src=torch.cat([a.src, b.src]),
        ).with_allowed(allowed)


@dataclass(frozen=True)
class DecoderState:
    """Recurrent decoder state for N = B * K rows, document-major.

    Attributes:
        h: (L, N, H) hidden states; c: (L, N, H) LSTM cell states, None for GRU cells.
        input_feed: (N, H) previous attentional hidden state (Luong et al. 2015 input feeding).
        coverage: (N, S) sum of past attention distributions, or None when coverage is off.
    """

    h: Tensor
    c: Tensor | None
    input_feed: Tensor
    coverage: Tensor | None

    @property
    def rows(self) -> int:
        return int(self.input_feed.size(0))

    def index_select(self, rows: Tensor) -> DecoderState:
        """Keep the rows ``rows`` (1-D long tensor), in that order: beam reordering and pruning."""
        return DecoderState(
            h=self.h.index_select(1, rows),
            c=None if self.c is None else self.c.index_select(1, rows),
            input_feed=self.input_feed.index_select(0, rows),
            coverage=None if self.coverage is None else self.coverage.index_select(0, rows),
        )

    def resize_source(self, length: int) -> DecoderState:
        """Cut or zero-pad the coverage's source axis to ``length``."""
        if self.coverage is None:
            return self
        return DecoderState(self.h, self.c, self.input_feed, _resize(self.coverage, 1, length))

    @staticmethod
    def cat(first: DecoderState, second: DecoderState) -> DecoderState:
        """Rows of ``first`` then ``second`` (coverage padded to the longer source)."""
        coverage = None
        if first.coverage is not None and second.coverage is not None:
            length = max(first.coverage.size(1), second.coverage.size(1))
            coverage = torch.cat(
                [_resize(first.coverage, 1, length), _resize(second.coverage, 1, length)]
            )
        return DecoderState(
            h=torch.cat([first.h, second.h], dim=1),
            c=None if first.c is None or second.c is None else torch.cat([first.c, second.c], 1),
            input_feed=torch.cat([first.input_feed, second.input_feed]),
            coverage=coverage,
        )

    def repeat_rows(self, k: int) -> DecoderState:
        """Repeat every row ``k`` times in place order: (N, ...) -> (N * k, ...)."""
        rows = interleave(torch.arange(self.rows, device=self.input_feed.device), k)
        return self.index_select(rows)


def _resize(tensor: Tensor, dim: int, length: int) -> Tensor:
    """Cut ``tensor`` along ``dim`` (1 here) to ``length``, or pad it with zeros / False."""
    current = tensor.size(dim)
    if current >= length:
        return tensor.narrow(dim, 0, length)
    pad = [0, 0] * (tensor.dim() - dim - 1) + [0, length - current]
    if tensor.dtype == torch.bool:
        return F.pad(tensor.to(torch.uint8), pad).to(torch.bool)
    return F.pad(tensor, pad)
