"""The encoder: packed (bi)LSTM outputs in input order, zero past each end, states per layer."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from s2s_model import PAD_ID
from s2s_model.encoder import Encoder, lengths_mask
from tests.conftest import tiny_model

VOCAB = 30
LENGTHS = [3, 7, 1, 5]  # unsorted: packing sorts them, and the outputs come back in this order


def encoder(*, bidirectional: bool, layers: int = 2) -> Encoder:
    model = tiny_model(VOCAB, seed=4, bidirectional=bidirectional, num_layers=layers)
    return model.encoder


def batch(lengths: list[int], seed: int = 0) -> tuple[Tensor, Tensor, list[Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    sources = [torch.randint(4, VOCAB, (n,), generator=gen) for n in lengths]
    src = torch.nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=PAD_ID)
    return src, torch.tensor(lengths), sources


@pytest.mark.parametrize("bidirectional", [True, False])
@torch.inference_mode()
def test_shapes_and_zeros_past_each_end(bidirectional: bool) -> None:
    enc = encoder(bidirectional=bidirectional)
    src, lengths, _ = batch(LENGTHS)
    padded = torch.cat([src, torch.zeros(4, 3, dtype=torch.long)], dim=1)  # extra padding
    outputs, h, c = enc(padded, lengths)
    assert outputs.shape == (4, max(LENGTHS), 16)  # trimmed to the longest source
    assert h.shape == c.shape == (2, 4, 16)
    real = lengths_mask(lengths, max(LENGTHS))
    assert not outputs[~real].any()
    assert outputs[real].abs().sum(dim=-1).min() > 0


@pytest.mark.parametrize("bidirectional", [True, False])
@torch.inference_mode()
def test_a_document_encodes_the_same_alone_as_in_a_batch(bidirectional: bool) -> None:
    enc = encoder(bidirectional=bidirectional)
    src, lengths, sources = batch(LENGTHS)
    outputs, h, c = enc(src, lengths)
    for i, source in enumerate(sources):
        alone, h_alone, c_alone = enc(source.unsqueeze(0), torch.tensor([source.numel()]))
        assert torch.allclose(outputs[i, : source.numel()], alone[0], atol=1e-6)
        assert torch.allclose(h[:, i], h_alone[:, 0], atol=1e-6)
        assert torch.allclose(c[:, i], c_alone[:, 0], atol=1e-6)


@torch.inference_mode()
def test_final_states_are_forward_then_backward_per_layer() -> None:
    # The forward direction ends at the last real token, the backward one at the first: the top
    # layer's final state is [forward at len - 1; backward at 0] of its outputs (OpenNMT-py).
    enc = encoder(bidirectional=True)
    src, lengths, _ = batch(LENGTHS)
    outputs, h, _ = enc(src, lengths)
    half = h.size(2) // 2
    for i, n in enumerate(LENGTHS):
        assert torch.allclose(h[-1, i, :half], outputs[i, n - 1, :half], atol=1e-6)
        assert torch.allclose(h[-1, i, half:], outputs[i, 0, half:], atol=1e-6)


@torch.inference_mode()
def test_one_direction_ends_at_the_last_real_token() -> None:
    enc = encoder(bidirectional=False, layers=1)
    src, lengths, _ = batch(LENGTHS)
    outputs, h, _ = enc(src, lengths)
    for i, n in enumerate(LENGTHS):
        assert torch.allclose(h[0, i], outputs[i, n - 1], atol=1e-6)


def test_lengths_mask() -> None:
    mask = lengths_mask(torch.tensor([2, 0, 3]), 4)
    assert mask.tolist() == [
        [True, True, False, False],
        [False, False, False, False],
        [True, True, True, False],
    ]
