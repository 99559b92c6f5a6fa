"""Memory and DecoderState: frozen, reorderable, rows remapped rather than copied."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from s2s_model import DecoderState, Memory

S, H, V = 5, 3, 12


def memory(lengths: list[int], seed: int = 0) -> Memory:
    """B documents, each's rows recognisable: outputs and keys hold document i's values."""
    gen = torch.Generator().manual_seed(seed)
    batch, longest = len(lengths), max(lengths)
    mask = torch.arange(longest).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, S)
    outputs = torch.randn(batch, longest, H, generator=gen) * mask.unsqueeze(2)
    keys = torch.randn(batch, longest, H, generator=gen) * mask.unsqueeze(2)
    src = torch.randint(4, V, (batch, longest), generator=gen) * mask
    return Memory(outputs, keys, mask, src)


def state(rows: int, coverage_len: int | None = None, layers: int = 2) -> DecoderState:
    """Row r holds r everywhere, so where every row went can be read off."""
    ids = torch.arange(rows, dtype=torch.float32)
    h = ids.view(1, rows, 1).expand(layers, rows, H).clone()  # (L, N, H)
    coverage = None
    if coverage_len is not None:
        coverage = ids.view(rows, 1).expand(rows, coverage_len).clone()  # (N, S)
    return DecoderState(h, -h, ids.view(rows, 1).expand(rows, H).clone(), coverage)


def test_state_is_frozen() -> None:
    # A model is shared by threads: per-call state lives in these values, never mutated.
    with pytest.raises(dataclasses.FrozenInstanceError):
        memory([2, 3]).src = torch.zeros(1)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        state(2).h = torch.zeros(1)  # type: ignore[misc]


def test_documents_leaving_are_remapped_until_half_the_rows_are_stale() -> None:
    full = memory([5, 3, 4, 2])
    kept = full.index_select(torch.tensor([3, 1, 2]))
    # 3 of 4 rows still live: the big tensors stay as they are, ``rows`` points into them.
    assert kept.outputs is full.outputs and kept.keys is full.keys and kept.mask is full.mask
    assert kept.rows is not None and kept.rows.tolist() == [3, 1, 2]
    assert kept.batch_size == 3
    assert torch.equal(kept.src, full.src[[3, 1, 2]])
    compact = kept.compacted()
    assert compact.rows is None
    assert torch.equal(compact.outputs, full.outputs[[3, 1, 2]])
    assert torch.equal(compact.keys, full.keys[[3, 1, 2]])
    assert torch.equal(compact.mask, full.mask[[3, 1, 2]])
    # Another departure leaves 2 of 4 live rows: now they are copied, through both mappings.
    two = kept.index_select(torch.tensor([2, 0]))
    assert two.rows is None
    assert torch.equal(two.outputs, full.outputs[[2, 3]])
    assert torch.equal(two.src, full.src[[2, 3]])


def test_compacting_a_compact_memory_changes_nothing() -> None:
    full = memory([2, 3])
    assert full.compacted() is full


def test_resize_source_cuts_or_pads_with_masked_zeros() -> None:
    full = memory([5, 3])
    longer = full.resize_source(S + 2)
    assert longer.outputs.shape == (2, S + 2, H) and longer.src.shape == (2, S + 2)
    assert not longer.mask[:, S:].any()
    assert not longer.outputs[:, S:].any() and not longer.keys[:, S:].any()
    assert not longer.src[:, S:].any()  # PAD is 0
    assert torch.equal(longer.outputs[:, :S], full.outputs)
    assert longer.mask.dtype == torch.bool
    shorter = full.resize_source(3)
    assert torch.equal(shorter.mask, full.mask[:, :3])
    assert torch.equal(shorter.src, full.src[:, :3])


def test_cat_pads_the_shorter_source_and_compacts_remapped_memories() -> None:
    first = memory([2, 4, 3], seed=1).index_select(torch.tensor([2, 0]))  # remapped rows
    second = memory([5], seed=2)
    both = Memory.cat(first, second)
    assert both.rows is None and both.batch_size == 3
    assert both.outputs.shape == (3, 5, H)
    assert torch.equal(both.outputs[:2, :4], first.compacted().outputs)
    assert not both.mask[:2, 4:].any()
    assert torch.equal(both.outputs[2], second.outputs[0])
    assert both.allowed is None and both.vocab is None


def test_a_shortlist_scores_the_union_of_the_documents_ids() -> None:
    allowed = torch.zeros(2, V, dtype=torch.bool)
    allowed[0, [0, 1, 2, 3, 7]] = True
    allowed[1, [0, 1, 2, 3, 9, 5]] = True
    listed = memory([2, 3]).with_allowed(allowed)
    assert listed.vocab is not None and listed.columns is not None
    assert listed.vocab.tolist() == [0, 1, 2, 3, 5, 7, 9]  # sorted: column j is id vocab[j]
    assert listed.columns.tolist() == [
        [True, True, True, True, False, True, False],
        [True, True, True, True, True, False, True],
    ]
    # A document leaving keeps the union (still a superset), so nothing is rebuilt.
    alone = listed.index_select(torch.tensor([1]))
    assert alone.vocab is listed.vocab
    assert alone.columns is not None and alone.columns.tolist() == [listed.columns[1].tolist()]
    cleared = listed.with_allowed(None)
    assert cleared.allowed is None and cleared.vocab is None and cleared.columns is None


def test_cat_keeps_a_shortlist_only_when_both_have_one() -> None:
    allowed = torch.ones(1, V, dtype=torch.bool)
    listed = memory([2]).with_allowed(allowed)
    assert Memory.cat(listed, listed).allowed is not None
    assert Memory.cat(listed, memory([3])).vocab is None


def test_decoder_rows_are_reordered_pruned_and_repeated() -> None:
    start = state(3, coverage_len=4)
    picked = start.index_select(torch.tensor([2, 2, 0]))  # a beam step: row 2 twice, row 0
    assert picked.rows == 3
    assert picked.h[:, :, 0].tolist() == [[2, 2, 0]] * 2
    assert picked.c is not None and picked.c[:, :, 0].tolist() == [[-2, -2, 0]] * 2
    assert picked.input_feed[:, 0].tolist() == [2, 2, 0]
    assert picked.coverage is not None and picked.coverage[:, 0].tolist() == [2, 2, 0]
    beams = start.repeat_rows(2)  # document-major: each row's copies side by side
    assert beams.h[0, :, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert beams.input_feed.shape == (6, H)


def test_decoder_states_cat_pad_coverage_to_the_longer_source() -> None:
    both = DecoderState.cat(state(2, coverage_len=3), state(1, coverage_len=5))
    assert both.rows == 3 and both.h.shape == (2, 3, H)
    assert both.h[0, :, 0].tolist() == [0, 1, 0]
    assert both.coverage is not None and both.coverage.shape == (3, 5)
    assert not both.coverage[:2, 3:].any()
    assert DecoderState.cat(state(2), state(1)).coverage is None


def test_resizing_the_source_touches_only_the_coverage() -> None:
    plain = state(2)
    assert plain.resize_source(9) is plain
    covered = state(2, coverage_len=4).resize_source(2)
    assert covered.coverage is not None and covered.coverage.shape == (2, 2)
    assert covered.h.shape == (2, 2, H)
