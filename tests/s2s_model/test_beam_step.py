"""One search step's rules on plain tensors: what may be emitted, forced ends, n-gram blocking and
the per-row top-k."""

from __future__ import annotations

import random

import pytest
import torch
from torch import Tensor

from s2s_model import BOS_ID, EOS_ID, PAD_ID, UNK_ID, DecodeConfig
from s2s_model.beam_step import ban_repeated_ngrams, constrain, force_eos, row_topk

V = 10
NEG_INF = float("-inf")


def log_probs(rows: int, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, V, generator=gen).log_softmax(dim=-1)


def history(*rows: list[int], width: int = 6) -> Tensor:
    """(N, W) right-aligned, PAD on the left."""
    return torch.tensor([[PAD_ID] * (width - len(r)) + r for r in rows])


@pytest.mark.parametrize("ban_unk", [False, True])
def test_specials_are_never_emitted(ban_unk: bool) -> None:
    scores = log_probs(3)
    original = scores.clone()
    steps, max_lens = torch.tensor([0, 1, 2]), torch.tensor([5, 5, 5])
    out, forced, eos = constrain(
        scores, history([], [4], [4, 5]), steps, max_lens, DecodeConfig(ban_unk=ban_unk)
    )
    assert torch.isinf(out[:, [PAD_ID, BOS_ID]]).all()
    assert bool(torch.isinf(out[:, UNK_ID]).all()) is ban_unk
    allowed = [t for t in range(V) if t not in (PAD_ID, BOS_ID, UNK_ID)]
    assert torch.equal(out[:, allowed], original[:, allowed])
    assert not forced.any()
    assert torch.equal(eos, original[:, EOS_ID])


def test_min_len_forbids_eos_only_in_short_rows() -> None:
    scores = log_probs(3)
    original = scores.clone()
    out, _, eos = constrain(
        scores,
        history([], [4], [4, 5]),
        torch.tensor([0, 1, 2]),
        torch.tensor([5, 5, 5]),
        DecodeConfig(min_len=2),
    )
    assert torch.isinf(out[:2, EOS_ID]).all()
    assert out[2, EOS_ID] == original[2, EOS_ID]
    assert torch.equal(eos, original[:, EOS_ID]), "the EOS a forced row would take"


@pytest.mark.parametrize(
    ("compat", "forced_rows"), [("none", [False, True, True]), ("opennmt", [False] * 3)]
)
def test_rows_at_their_maximum_length_may_only_end(compat: str, forced_rows: list[bool]) -> None:
    # OpenNMT-py ends a hypothesis at max_len as it is, so nothing is forced there.
    config = DecodeConfig(compat=compat)  # type: ignore[arg-type]
    steps, max_lens = torch.tensor([2, 3, 4]), torch.tensor([3, 3, 3])
    _, forced, _ = constrain(
        log_probs(3), history([4, 5], [4, 5, 6], [4, 5, 6, 7]), steps, max_lens, config
    )
    assert forced.tolist() == forced_rows


def test_a_row_with_every_token_blocked_is_forced_to_end() -> None:
    # Unigram blocking over a history that holds every ordinary token, UNK banned, EOS too early:
    # nothing is left, so the row ends (no hypothesis is left without a way to end).
    config = DecodeConfig(no_repeat_ngram_size=1, ban_unk=True, min_len=10)
    full = list(range(4, V))
    out, forced, _ = constrain(
        log_probs(2),
        history(full, [4], width=V),
        torch.tensor([6, 1]),
        torch.tensor([20, 20]),
        config,
    )
    assert forced.tolist() == [True, False]
    assert torch.isinf(out[0, 4:]).all() and torch.isinf(out[1, 4])


def test_word_rules_need_the_word_pieces() -> None:
    for config in (DecodeConfig(whole_words=True), DecodeConfig(no_repeat_words=True)):
        with pytest.raises(ValueError, match="need the word pieces: pass words="):
            constrain(log_probs(1), history([4]), torch.tensor([1]), torch.tensor([5]), config)


def test_force_eos_replaces_only_the_forced_rows() -> None:
    values = torch.tensor([[-0.1, -0.5, -0.9], [-0.2, -0.3, -0.4]])
    columns = torch.tensor([[4, 5, 6], [7, 8, 9]])
    eos = torch.tensor([-3.0, -4.0])
    new_values, new_columns = force_eos(values, columns, torch.tensor([False, True]), eos)
    assert new_values[0].tolist() == values[0].tolist()
    assert new_columns[0].tolist() == [4, 5, 6]
    assert new_values[1].tolist() == [-4.0, NEG_INF, NEG_INF]
    assert new_columns[1, 0] == EOS_ID


def test_ngram_blocking_by_hand() -> None:
    # History 4 5 4 6 4: after "4", bigrams 4 5 and 4 6 were seen; no trigram starts with "6 4".
    hist = history([4, 5, 4, 6, 4])
    two = ban_repeated_ngrams(log_probs(1), hist, 2, None)
    assert torch.isinf(two[0]).nonzero().flatten().tolist() == [5, 6]
    three = ban_repeated_ngrams(log_probs(1), hist, 3, None)
    assert not torch.isinf(three).any()
    # With a shortlist, ids are columns of ``vocab``: id 5 is column 3, id 6 column 4.
    vocab = torch.tensor([0, 2, 4, 5, 6, 9])
    listed = ban_repeated_ngrams(torch.zeros(1, 6), hist, 2, vocab)
    assert torch.isinf(listed[0]).nonzero().flatten().tolist() == [3, 4]


def has_repeat(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_ngram_blocking_bans_exactly_the_tokens_that_would_repeat_one(n: int) -> None:
    rng = random.Random(n)
    rows = [[rng.randint(4, 7) for _ in range(rng.randint(0, 8))] for _ in range(80)]
    rows = [r for r in rows if not has_repeat(r, n)]  # histories the rule itself would allow
    banned = torch.isinf(
        ban_repeated_ngrams(torch.zeros(len(rows), V), history(*rows, width=8), n, None)
    )
    for row, bans in zip(rows, banned, strict=True):
        expected = [t for t in range(1, V) if has_repeat([*row, t], n)]
        # PAD, never emitted anyway, may be banned where the left padding repeats itself.
        assert bans[1:].nonzero().flatten().add(1).tolist() == expected


def test_a_history_shorter_than_n_blocks_nothing() -> None:
    scores = log_probs(1)
    assert torch.equal(ban_repeated_ngrams(scores, history([4, 4], width=2), 3, None), scores)


@pytest.mark.parametrize("width", [16_000, 16_000 + 5, 40])
def test_row_topk_equals_topk(width: int) -> None:
    gen = torch.Generator().manual_seed(width)
    scores = torch.randn(33, width, generator=gen)
    scores[3, :] = NEG_INF
    scores[4, 7:] = NEG_INF  # fewer finite values than k
    values, columns = row_topk(scores, 8)
    expected_values, expected_columns = scores.topk(8, dim=1)
    assert torch.equal(values, expected_values)
    finite = torch.isfinite(expected_values)
    assert torch.equal(columns[finite], expected_columns[finite])
    assert torch.equal(scores.gather(1, columns), values)


def test_row_topk_takes_at_most_the_row_width() -> None:
    scores = torch.tensor([[0.5, 0.1, 0.9]])
    values, columns = row_topk(scores, 8)
    assert columns.tolist() == [[2, 0, 1]]
    assert torch.equal(values, scores[:, [2, 0, 1]])
