"""Masked global attention: padding never read, keys computed once, beams grouped per document."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from s2s_model import ModelConfig
from s2s_model.attention import GlobalAttention
from s2s_model.config import AttentionKind

H = 8
KINDS = ["general", "dot", "additive"]


def attention(kind: AttentionKind, *, coverage: bool = False, seed: int = 0) -> GlobalAttention:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=10, hidden_size=H, attention=kind, coverage=coverage)
    layer = GlobalAttention(config).eval()
    weight = getattr(layer, "coverage_weight", None)  # kind "none" has no parameters at all
    if weight is not None:
        with torch.no_grad():
            weight.normal_()  # zero at initialisation: make it count
    return layer


def inputs(batch: int, beams: int, source: int, seed: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """query (B, K, H), outputs (B, S, H), mask (B, S) with document b holding S - b tokens."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, beams, H, generator=gen)
    outputs = torch.randn(batch, source, H, generator=gen)
    lengths = torch.tensor([source - b for b in range(batch)])
    mask = torch.arange(source).unsqueeze(0) < lengths.unsqueeze(1)
    return query, outputs * mask.unsqueeze(2), mask


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_padding_get_no_weight(kind: AttentionKind) -> None:
    layer = attention(kind)
    query, outputs, mask = inputs(3, 2, 6)
    attn_h, align, context = layer(query, outputs, layer.keys(outputs), mask, None)
    assert attn_h.shape == (3, 2, H) and context.shape == (3, 2, H)
    assert align.shape == (3, 2, 6)
    assert torch.all(align[~mask.unsqueeze(1).expand_as(align)] == 0)
    assert torch.allclose(align.sum(dim=-1), torch.ones(3, 2))
    assert torch.allclose(context, align @ outputs, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_whatever_lies_in_the_padding_changes_nothing(kind: AttentionKind) -> None:
    layer = attention(kind)
    query, outputs, mask = inputs(2, 3, 5)
    keys = layer.keys(outputs)
    noisy_outputs = torch.where(mask.unsqueeze(2), outputs, torch.full_like(outputs, 50.0))
    noisy_keys = torch.where(mask.unsqueeze(2), keys, torch.full_like(keys, -50.0))
    clean = layer(query, outputs, keys, mask, None)
    noisy = layer(query, noisy_outputs, noisy_keys, mask, None)
    for a, b in zip(clean, noisy, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_each_documents_beams_read_only_that_document(kind: AttentionKind) -> None:
    layer = attention(kind)
    query, outputs, mask = inputs(3, 4, 6)
    keys = layer.keys(outputs)
    together = layer(query, outputs, keys, mask, None)
    for b in range(3):
        for k in range(4):
            alone = layer(
                query[b : b + 1, k : k + 1],
                outputs[b : b + 1],
                keys[b : b + 1],
                mask[b : b + 1],
                None,
            )
            for a, t in zip(alone, together, strict=True):
                assert torch.allclose(a[0, 0], t[b, k], atol=1e-6)


def test_general_keys_move_the_projection_off_the_query() -> None:
    # Luong's general score is (W q) . m; the layer computes q . (W^T m) with keys made once.
    layer = attention("general")
    query, outputs, mask = inputs(2, 3, 4)
    align, _ = layer.read(query, outputs, layer.keys(outputs), mask, None)
    scores = layer.linear_in(query) @ outputs.transpose(1, 2)  # (B, K, S)
    expected = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
    assert torch.allclose(align, expected, atol=1e-6)


def test_dot_keys_are_the_outputs() -> None:
    layer = attention("dot")
    _, outputs, _ = inputs(2, 1, 4)
    assert torch.equal(layer.keys(outputs), outputs)


@pytest.mark.parametrize("kind", KINDS)
def test_coverage_enters_each_key_as_a_feature(kind: AttentionKind) -> None:
    # With one beam per document, adding the feature c_i w to key i gives the same scores
    # (inside tanh for additive, by linearity of the dot product otherwise).
    layer = attention(kind, coverage=True)
    assert layer.coverage_weight is not None
    query, outputs, mask = inputs(2, 1, 5)
    keys = layer.keys(outputs)
    coverage = torch.rand(2, 1, 5)
    with_coverage, _ = layer.read(query, outputs, keys, mask, coverage)
    featured = keys + coverage[:, 0].unsqueeze(2) * layer.coverage_weight  # (B, S, H)
    expected, _ = layer.read(query, outputs, featured, mask, None)
    assert torch.allclose(with_coverage, expected, atol=1e-5)
    without, _ = layer.read(query, outputs, keys, mask, None)
    assert not torch.allclose(with_coverage, without, atol=1e-3)


def test_a_fully_masked_row_stays_finite() -> None:
    layer = attention("general")
    query, outputs, _ = inputs(1, 2, 3)
    nothing = torch.zeros(1, 3, dtype=torch.bool)
    attn_h, align, context = layer(query, outputs, layer.keys(outputs), nothing, None)
    for tensor in (attn_h, align, context):
        assert torch.isfinite(tensor).all()


@pytest.mark.parametrize(("kind", "bounded"), [("general", True), ("additive", False)])
def test_luong_squashes_the_attentional_state_and_additive_does_not(
    kind: AttentionKind, bounded: bool
) -> None:
    # Additive stays linear, as OpenNMT-py's ``mlp`` attention, so its models import unchanged.
    query, outputs, mask = inputs(2, 2, 4)
    layer = attention(kind)
    with torch.no_grad():
        layer.linear_out.weight.mul_(100.0)
    attn_h, _, _ = layer(query, outputs, layer.keys(outputs), mask, None)
    assert bool((attn_h.abs() <= 1.0).all()) is bounded


def test_no_attention_has_no_parameters() -> None:
    assert list(attention("none").parameters()) == []
