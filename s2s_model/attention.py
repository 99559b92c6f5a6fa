"""Masked global attention over the encoder outputs (Luong et al. 2015; Bahdanau et al. 2015).

Keys are computed from the encoder outputs once per document (``keys``); each decoding step then
only projects its queries. Queries arrive grouped per document, (B, K, H), so the K beam rows of a
document attend to that document's memory without copying it K times.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from s2s_model.config import ModelConfig

# Added to scores at padded source positions: finite so a fully masked row cannot produce NaN.
MASKED_SCORE = -1e9


class GlobalAttention(nn.Module):
    """Luong or Bahdanau attention; with kind 'none' it has no parameters and is never read (the
    decoder then uses its LSTM output as the attentional state)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.kind = config.attention
        if self.kind == "none":
            return
        if self.kind == "general":
            self.linear_in = nn.Linear(hidden, hidden, bias=False)
        elif self.kind == "additive":
            self.linear_context = nn.Linear(hidden, hidden, bias=False)
            self.linear_query = nn.Linear(hidden, hidden, bias=True)
            self.v = nn.Linear(hidden, 1, bias=False)
        self.linear_out = nn.Linear(2 * hidden, hidden, bias=self.kind == "additive")
        self.coverage_weight = nn.Parameter(torch.zeros(hidden)) if config.coverage else None
        # ``general`` keys through an int8 layer holding W^T (``quantize_model`` sets it).
        self.int8_keys: nn.Module | None = None

    def keys(self, outputs: Tensor) -> Tensor:
        """(B, S, H) encoder outputs -> (B, S, H) keys, once per document.

        For ``general``, score = (W q) . m = q . (W^T m), so the projection moves to the keys.
        """
        if self.kind == "general" and self.int8_keys is not None:
            keys: Tensor = self.int8_keys(outputs)
        elif self.kind == "general":
            keys = outputs @ self.linear_in.weight
        elif self.kind == "additive":
            keys = self.linear_context(outputs)
        else:
            keys = outputs
        return keys

    def forward(
        self,
        query: Tensor,
        outputs: Tensor,
        keys: Tensor,
        mask: Tensor,
        coverage: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Attend from K queries per document.

        Args:
            query: (B, K, H) decoder outputs.
            outputs: (B, S, H) encoder outputs; keys: (B, S, H); mask: (B, S) bool.
            coverage: (B, K, S) summed past attention, or None.

        Returns:
            attn_h (B, K, H) = W_out [context; query] (then tanh, except ``additive``), align
            (B, K, S) and context (B, K, H).
        """
        align, context = self.read(query, outputs, keys, mask, coverage)
        return self.combine(context, query), align, context

    def read(
        self,
        query: Tensor,
        outputs: Tensor,
        keys: Tensor,
        mask: Tensor,
        coverage: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """(B, K, H) queries -> align (B, K, S) and context (B, K, H); arguments as ``forward``."""
        scores = self._scores(query, keys, coverage)  # (B, K, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), MASKED_SCORE)
        align = torch.softmax(scores, dim=-1)
        return align, torch.bmm(align, outputs)

    def combine(self, context: Tensor, query: Tensor) -> Tensor:
        """Context and query (..., H) each -> the attentional state (..., H)."""
        attn_h: Tensor = self.linear_out(torch.cat([context, query], dim=-1))
        if self.kind != "additive":
            # Luong's tanh; the additive form stays linear, as in OpenNMT-py's ``mlp`` attention,
            # so that its models import unchanged.
            attn_h = torch.tanh(attn_h)
        return attn_h

    def _scores(self, query: Tensor, keys: Tensor, coverage: Tensor | None) -> Tensor:
        """(B, K, H) queries, (B, S, H) keys -> (B, K, S) unnormalised scores."""
        if self.kind == "additive":
            features = keys.unsqueeze(1) + self.linear_query(query).unsqueeze(2)  # (B, K, S, H)
            if coverage is not None and self.coverage_weight is not None:
                features = features + coverage.unsqueeze(-1) * self.coverage_weight
            additive: Tensor = self.v(torch.tanh(features)).squeeze(-1)
            return additive
        scores = torch.bmm(query, keys.transpose(1, 2))  # (B, K, S)
        if coverage is not None and self.coverage_weight is not None:
            # q . (k_i + c_i w) = q . k_i + c_i (q . w): the coverage feature enters each key.
            scores = scores + coverage * (query @ self.coverage_weight).unsqueeze(-1)
        return scores
