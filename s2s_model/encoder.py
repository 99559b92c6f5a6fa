"""Embeddings and a multi-layer (bi)directional LSTM or GRU over packed sequences."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import (
    PackedSequence,
    invert_permutation,
    pack_padded_sequence,
    pad_packed_sequence,
)

from s2s_model.config import ModelConfig
from s2s_model.rnn import make_rnn, rnn_name
from s2s_model.transfer import upload


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding
        self.dropout = nn.Dropout(config.dropout)
        # Registered as ``lstm`` or ``gru``: the state-dict names say which cells they hold.
        self.add_module(
            rnn_name(config),
            make_rnn(
                config, config.embed_dim, config.encoder_hidden, bidirectional=config.bidirectional
            ),
        )

    @property
    def rnn(self) -> nn.Module:
        """The cells (``nn.LSTM`` or ``nn.GRU``, or their quantized forms)."""
        module: nn.Module = getattr(self, rnn_name(self.config))
        return module

    def forward(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Encode a padded batch.

        Args:
            src: (B, S) token ids, PAD after each document's end.
            src_len: (B,) lengths, each at least 1.

        Returns:
            outputs (B, S', H) with S' = max(src_len), zero past each length, and the final
            states h, c (L, B, H): forward and backward directions concatenated per layer
            (c is None for GRU cells, which have none).
        """
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        packed = _pack(embedded, _on_host(src_len))
        with _full_precision(embedded.device):
            packed_out, final = self.rnn(packed)  # states (L * D, B, H / D), in input order
        h, c = final if isinstance(final, tuple) else (final, None)
        cell = None if c is None else self._merge_directions(c)
        return self._unpack(packed_out), self._merge_directions(h), cell

    @staticmethod
    def _unpack(packed: PackedSequence) -> Tensor:
        """Packed outputs -> (B, S', H) in input order. ``pad_packed_sequence`` would also read
        the sorting indices back to the host to reorder lengths nobody uses; reordering here
        reads nothing."""
        plain = PackedSequence(packed.data, packed.batch_sizes)
        outputs, _ = pad_packed_sequence(plain, batch_first=True)  # (B, S', H), sorted
        if packed.unsorted_indices is None:
            return outputs
        return outputs.index_select(0, packed.unsorted_indices)

    def _merge_directions(self, state: Tensor) -> Tensor:
        """(L * D, B, H / D) -> (L, B, H): per layer, [forward; backward] (OpenNMT-py's layout)."""
        if not self.config.bidirectional:
            return state
        layers, batch, half = state.size(0) // 2, state.size(1), state.size(2)
        return state.view(layers, 2, batch, half).transpose(1, 2).reshape(layers, batch, 2 * half)


def _on_host(lengths: Tensor) -> Tensor:
    """``lengths`` on the host, as packing needs them (no copy, and no sync, if already there)."""
    return lengths if lengths.device.type == "cpu" else lengths.cpu()


def _pack(embedded: Tensor, lengths: Tensor) -> PackedSequence:
    """(B, S, E) padded inputs and their (B,) host lengths -> a packed batch, longest first.

    What ``pack_padded_sequence(..., enforce_sorted=False)`` does, but its order goes to the
    device from pinned memory without waiting for the device.
    """
    lengths, order = torch.sort(lengths.to(torch.int64), descending=True)
    order = upload(order, embedded.device)
    packed = pack_padded_sequence(embedded.index_select(0, order), lengths, batch_first=True)
    return PackedSequence(packed.data, packed.batch_sizes, order, invert_permutation(order))


def _full_precision(device: torch.device) -> AbstractContextManager[object]:
    """Autocast off on ``device``: the encoder's RNN runs in its weights' dtype (fp32) under
    any policy. CUDA's autocast would run cuDNN's LSTM in fp16 whatever the autocast dtype, and
    CPU bf16 autocast takes oneDNN's bf16 LSTM, which fails on CPUs without native bf16 ("could
    not create a primitive descriptor"). The encoder runs once per document, so fp32 costs
    little."""
    if not torch.amp.is_autocast_available(device.type):
        return nullcontext()
    return torch.autocast(device.type, enabled=False)


def lengths_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True at real positions."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)
