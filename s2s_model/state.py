"""Explicit, reorderable search state: nothing per call lives on an ``nn.Module``.

A loaded model is shared by threads inside a Beam worker, so everything that changes while decoding
is passed in and returned (fairseq ``reorder_incremental_state``, OpenNMT-py ``map_state``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Memory:
    """What the decoder attends to, one entry per document (never copied per beam).

    Attributes:
        outputs: (B, S, H) encoder outputs, zero at padded positions.
        keys: (B, S, H) attention keys derived from ``outputs`` once per document.
        mask: (B, S) bool, True at real source tokens.
        src: (B, S) source token ids, for copying.
    """

    outputs: Tensor
    keys: Tensor
    mask: Tensor
    src: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.outputs.size(0))

    def index_select(self, docs: Tensor) -> Memory:
        """Keep the documents ``docs`` (1-D long tensor), in that order."""
        return Memory(
            outputs=self.outputs.index_select(0, docs),
            keys=self.keys.index_select(0, docs),
            mask=self.mask.index_select(0, docs),
            src=self.src.index_select(0, docs),
        )


@dataclass(frozen=True)
class DecoderState:
    """Recurrent decoder state for N = B * K rows, document-major.

    Attributes:
        h, c: (L, N, H) LSTM states.
        input_feed: (N, H) previous attentional hidden state (Luong et al. 2015 input feeding).
        coverage: (N, S) sum of past attention distributions, or None when coverage is off.
    """

    h: Tensor
    c: Tensor
    input_feed: Tensor
    coverage: Tensor | None

    @property
    def rows(self) -> int:
        return int(self.input_feed.size(0))

    def index_select(self, rows: Tensor) -> DecoderState:
        """Keep the rows ``rows`` (1-D long tensor), in that order: beam reordering and pruning."""
        return DecoderState(
            h=self.h.index_select(1, rows),
            c=self.c.index_select(1, rows),
            input_feed=self.input_feed.index_select(0, rows),
            coverage=None if self.coverage is None else self.coverage.index_select(0, rows),
        )

    def repeat_rows(self, k: int) -> DecoderState:
        """Repeat every row ``k`` times in place order: (N, ...) -> (N * k, ...)."""
        rows = torch.arange(self.rows, device=self.input_feed.device).repeat_interleave(k)
        return self.index_select(rows)
