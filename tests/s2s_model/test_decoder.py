"""One decoding step: shapes, rows independent of each other, remapped memory, copying and
shortlists."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from s2s_model import PAD_ID, DecoderState, Memory, Seq2Seq
from tests.conftest import tiny_model

VOCAB = 30
LENGTHS = [5, 2, 4]
BEAMS = 3


def model(**overrides: Any) -> Seq2Seq:
    return tiny_model(VOCAB, seed=6, num_layers=2, **overrides)


def encoded(net: Seq2Seq, lengths: list[int] = LENGTHS) -> tuple[Memory, DecoderState, Tensor]:
    """Memory of len(lengths) documents, a K-row state per document and K distinct tokens each."""
    gen = torch.Generator().manual_seed(7)
    sources = [torch.randint(4, VOCAB, (n,), generator=gen) for n in lengths]
    src = torch.nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=PAD_ID)
    memory, state = net.encode(src, torch.tensor(lengths))
    prev = torch.randint(4, VOCAB, (len(lengths) * BEAMS,), generator=gen)  # (N,)
    return memory, state.repeat_rows(BEAMS), prev


VARIANTS: list[dict[str, Any]] = [
    {"attention": "general"},
    {"attention": "additive", "copy": True, "coverage": True},
    {"attention": "dot", "coverage": True},
    {"attention": "none"},
    {"rnn_type": "GRU", "attention": "additive", "copy": True},
]


@pytest.mark.parametrize("variant", VARIANTS)
@torch.inference_mode()
def test_a_step_gives_normalised_log_probs_and_the_next_state(variant: dict[str, Any]) -> None:
    net = model(**variant)
    memory, state, prev = encoded(net)
    rows, source = len(LENGTHS) * BEAMS, max(LENGTHS)
    log_probs, new, align = net.decoder.step(prev, state, memory)
    assert log_probs.shape == (rows, VOCAB)
    assert torch.allclose(log_probs.logsumexp(dim=-1), torch.zeros(rows), atol=1e-5)
    assert new.h.shape == state.h.shape and new.input_feed.shape == (rows, 16)
    assert align.shape == (rows, source)
    if variant["attention"] == "none":
        assert not align.any() and new.coverage is None
        return
    real = memory.mask.repeat_interleave(BEAMS, dim=0)  # (N, S)
    assert not align[~real].any()
    assert torch.allclose(align.sum(dim=-1), torch.ones(rows), atol=1e-5)
    if variant.get("coverage"):
        assert state.coverage is not None and new.coverage is not None
        assert torch.allclose(new.coverage, state.coverage + align)


@pytest.mark.parametrize("variant", VARIANTS)
@torch.inference_mode()
def test_each_row_steps_as_it_would_alone(variant: dict[str, Any]) -> None:
    # Rows are document-major: row r belongs to document r // K and reads only its memory.
    net = model(**variant)
    memory, state, prev = encoded(net)
    together, new, _ = net.decoder.step(prev, state, memory)
    again, _, _ = net.decoder.step(prev, state, memory)
    assert torch.equal(together, again), "a step keeps nothing between calls"
    for row in range(prev.numel()):
        doc = torch.tensor([row // BEAMS])
        own = memory.index_select(doc).compacted().resize_source(LENGTHS[row // BEAMS])
        one = state.index_select(torch.tensor([row])).resize_source(LENGTHS[row // BEAMS])
        alone, new_alone, _ = net.decoder.step(prev[row : row + 1], one, own)
        assert torch.allclose(alone[0], together[row], atol=1e-5)
        assert torch.allclose(new_alone.h[:, 0], new.h[:, row], atol=1e-5)


@torch.inference_mode()
def test_a_remapped_memory_steps_as_a_compacted_one() -> None:
    # Three of four documents left -> rows remapped (not copied); the answer must not change.
    net = model(attention="additive", coverage=True, copy=True)
    memory, state, prev = encoded(net, [5, 2, 4, 3])
    docs = torch.tensor([3, 0, 2])
    rows = (docs.unsqueeze(1) * BEAMS + torch.arange(BEAMS)).flatten()
    remapped = memory.index_select(docs)
    assert remapped.rows is not None, "the memory is remapped, not copied"
    kept_state, kept_prev = state.index_select(rows), prev[rows]
    mapped, mapped_state, _ = net.decoder.step(kept_prev, kept_state, remapped)
    plain, plain_state, _ = net.decoder.step(kept_prev, kept_state, remapped.compacted())
    assert torch.allclose(mapped, plain, atol=1e-6)
    assert mapped_state.coverage is not None and plain_state.coverage is not None
    assert torch.allclose(mapped_state.coverage, plain_state.coverage, atol=1e-6)


@torch.inference_mode()
def test_with_the_generator_shut_copying_puts_the_attention_on_source_ids() -> None:
    # p_gen -> 0: the output distribution is the attention summed onto each source token's id.
    net = model(attention="general", copy=True)
    assert net.decoder.copy_gate is not None
    with torch.no_grad():
        net.decoder.copy_gate.bias.fill_(-60.0)
    memory, state, prev = encoded(net)
    log_probs, _, align = net.decoder.step(prev, state, memory)
    src = memory.src.repeat_interleave(BEAMS, dim=0)  # (N, S)
    expected = torch.zeros_like(log_probs).scatter_add_(1, src, align)
    assert torch.allclose(log_probs.exp(), expected, atol=1e-5)


@pytest.mark.parametrize("copy", [False, True])
@torch.inference_mode()
def test_a_shortlist_scores_only_each_documents_ids(copy: bool) -> None:
    net = model(attention="general", copy=copy)
    memory, state, prev = encoded(net)
    full, _, _ = net.decoder.step(prev, state, memory)
    gen = torch.Generator().manual_seed(3)
    allowed = torch.rand(len(LENGTHS), VOCAB, generator=gen) < 0.4
    allowed[:, :4] = True
    allowed.scatter_(1, memory.src, True)  # a document's own source ids are always allowed
    listed = memory.with_allowed(allowed)
    assert listed.vocab is not None and listed.columns is not None
    short, _, _ = net.decoder.step(prev, state, listed)
    assert short.shape == (prev.numel(), listed.vocab.numel())  # (N, U)
    mine = listed.columns.repeat_interleave(BEAMS, dim=0)  # (N, U)
    assert torch.isinf(short[~mine]).all() and torch.isfinite(short[mine]).all()
    assert torch.allclose(short.logsumexp(dim=-1), torch.zeros(prev.numel()), atol=1e-5)
    if not copy:
        # The model's distribution renormalised over the document's ids.
        kept = full[:, listed.vocab].masked_fill(~mine, float("-inf"))
        assert torch.allclose(short[mine], kept.log_softmax(dim=-1)[mine], atol=1e-5)
    shared = net.shortlisted(listed)
    assert shared.generator is not None
    with_layer, _, _ = net.decoder.step(prev, state, shared)
    assert torch.allclose(with_layer, short, atol=1e-6)
