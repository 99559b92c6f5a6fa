"""Embeddings and a multi-layer (bi)directional LSTM over packed sequences."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s2s_model.config import ModelConfig


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            input_size=config.embed_dim,
            hidden_size=config.encoder_hidden,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )

    def forward(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encode a padded batch.

        Args:
            src: (B, S) token ids, PAD after each document's end.
            src_len: (B,) lengths, each at least 1.

        Returns:
            outputs (B, S', H) with S' = max(src_len), zero past each length, and the final
            states h, c (L, B, H): forward and backward directions concatenated per layer.
        """
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(
            embedded, src_len.cpu(), batch_first=True, enforce_sorted=False
        )
        # Under CPU bf16 autocast, oneDNN's bf16 LSTM fails on CPUs without native bf16 ("could
        # not create a primitive descriptor"): the encoder's LSTM stays fp32 on the CPU.
        with torch.autocast("cpu", enabled=False):
            packed_out, (h, c) = self.lstm(packed)  # h, c: (L * D, B, H / D)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True)  # (B, S', H)
        return outputs, self._merge_directions(h), self._merge_directions(c)

    def _merge_directions(self, state: Tensor) -> Tensor:
        """(L * D, B, H / D) -> (L, B, H): per layer, [forward; backward] (OpenNMT-py's layout)."""
        if not self.config.bidirectional:
            return state
        layers, batch, half = state.size(0) // 2, state.size(1), state.size(2)
        return state.view(layers, 2, batch, half).transpose(1, 2).reshape(layers, batch, 2 * half)


def lengths_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True at real positions."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)
