"""One decoding step: LSTM with input feeding, attention, output layer, optional copy mixture."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s_model.attention import GlobalAttention
from s2s_model.config import ModelConfig
from s2s_model.state import DecoderState, Memory

# Floor on mixed probabilities before the log when copying, so log never sees an exact zero.
MIN_PROB = 1e-12


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            input_size=config.embed_dim + config.hidden_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.attention = GlobalAttention(config)
        self.generator = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_embeddings:
            self.generator.weight = embedding.weight
        self.copy_gate = (
            nn.Linear(2 * config.hidden_size + config.embed_dim, 1) if config.copy else None
        )

    def step(
        self, prev_tokens: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """Advance N = B * K rows by one token.

        Args:
            prev_tokens: (N,) previous tokens (BOS first).
            state: rows document-major, K = N // B consecutive rows per document.
            memory: B documents.

        Returns:
            log_probs (N, V), the new state, and the attention distribution (N, S).
        """
        batch = memory.batch_size
        rows = prev_tokens.size(0)
        beams = rows // batch
        emb = self.dropout(self.embedding(prev_tokens))  # (N, E)
        lstm_in = torch.cat([emb, state.input_feed], dim=-1).unsqueeze(0)  # (1, N, E + H)
        out, (h, c) = self.lstm(lstm_in, (state.h, state.c))  # out: (1, N, H)
        query = out.view(batch, beams, -1)  # (B, K, H)
        coverage = None if state.coverage is None else state.coverage.view(batch, beams, -1)
        attn_h, align, context = self.attention(
            query, memory.outputs, memory.keys, memory.mask, coverage
        )
        attn_h = self.dropout(attn_h.reshape(rows, -1))  # (N, H)
        align = align.reshape(rows, -1)  # (N, S)
        log_probs = self._output(attn_h, align, context.reshape(rows, -1), out[0], emb, memory)
        new_coverage = None if state.coverage is None else state.coverage + align
        return log_probs, DecoderState(h, c, attn_h, new_coverage), align

    def _output(
        self,
        attn_h: Tensor,
        align: Tensor,
        context: Tensor,
        dec_out: Tensor,
        emb: Tensor,
        memory: Memory,
    ) -> Tensor:
        """(N, H) attentional states -> (N, V) log-probabilities, mixed with copying if on."""
        logits = self.generator(attn_h)  # (N, V)
        if self.copy_gate is None:
            return F.log_softmax(logits, dim=-1)
        p_gen = torch.sigmoid(self.copy_gate(torch.cat([context, dec_out, emb], dim=-1)))  # (N, 1)
        rows, batch = attn_h.size(0), memory.batch_size
        src = memory.src.repeat_interleave(rows // batch, dim=0)  # (N, S)
        copy_probs = torch.zeros_like(logits).scatter_add_(1, src, align)  # (N, V)
        probs = p_gen * torch.softmax(logits, dim=-1) + (1.0 - p_gen) * copy_probs
        return torch.log(probs.clamp_min(MIN_PROB))
