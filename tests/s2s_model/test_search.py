"""Beam and greedy search: hand-computed cases, a brute-force oracle, and invariances."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from s2s_model import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    DecodeConfig,
    DecoderState,
    Hypothesis,
    Memory,
    ModelConfig,
    SearchStats,
    Seq2Seq,
    beam_search,
    greedy_search,
)
from s2s_model import search as search_module
from s2s_model.quantize import quantize_model
from tests.conftest import tiny_model

A, B = 4, 5
VOCAB = 6


class ScriptedModel:
    """Next-token probabilities looked up by (step, previous token); EOS is certain otherwise."""

    def __init__(self, table: dict[tuple[int, int], dict[int, float]]) -> None:
        self.table = table
        self.config = ModelConfig(vocab_size=VOCAB)

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Memory, DecoderState]:
        batch = src.size(0)
        zeros = torch.zeros(batch, 1, 1)
        memory = Memory(zeros, zeros, torch.ones(batch, 1, dtype=torch.bool), src[:, :1])
        step = torch.zeros(1, batch, 1)
        return memory, DecoderState(step, step.clone(), torch.zeros(batch, 1), None)

    def decode_step(
        self, prev: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState]:
        rows = []
        for token, step in zip(prev.tolist(), state.h[0, :, 0].tolist(), strict=True):
            probs = self.table.get((int(step), token), {EOS_ID: 1.0})
            row = torch.full((VOCAB,), -math.inf)
            for tok, p in probs.items():
                row[tok] = math.log(p)
            rows.append(row)
        new = DecoderState(state.h + 1, state.c, state.input_feed, None)
        return torch.stack(rows), new


SCRIPT = {
    (0, BOS_ID): {A: 0.6, B: 0.4},
    (1, A): {A: 0.5, B: 0.4, EOS_ID: 0.1},
    (1, B): {EOS_ID: 0.9, A: 0.05, B: 0.05},
    (2, A): {EOS_ID: 1.0},
    (2, B): {EOS_ID: 0.6, A: 0.4},
}


def run(
    search: Callable[..., list[list[Hypothesis]]], config: DecodeConfig, docs: int = 1
) -> list[list[Hypothesis]]:
    src = torch.full((docs, 3), 7)
    return search(ScriptedModel(SCRIPT), src, torch.full((docs,), 3), config)


def test_greedy_follows_the_most_likely_token() -> None:
    (hyp,) = run(greedy_search, DecodeConfig(max_len=5))[0]
    assert hyp.tokens == [A, A]
    assert hyp.log_prob == pytest.approx(math.log(0.6 * 0.5 * 1.0), abs=1e-6)


def test_beam_finds_the_better_short_summary() -> None:
    # A A EOS = .30 but B EOS = .36: a beam of 2 sees it, greedy does not.
    best, second = run(beam_search, DecodeConfig(beam_size=2, n_best=2, max_len=3))[0]
    assert best.tokens == [B]
    assert best.log_prob == pytest.approx(math.log(0.36), abs=1e-6)
    assert best.score == pytest.approx(best.log_prob)
    assert second.tokens == [A, A]
    assert second.log_prob == pytest.approx(math.log(0.30), abs=1e-6)


def test_average_length_penalty_prefers_the_longer_summary() -> None:
    # avg: B -> log(.36) / 2 = -0.511, A A -> log(.30) / 3 = -0.401, A B -> log(.144) / 3.
    config = DecodeConfig(beam_size=2, n_best=2, max_len=3, length_penalty="avg")
    best, second = run(beam_search, config)[0]
    assert best.tokens == [A, A]
    assert best.score == pytest.approx(math.log(0.30) / 3, abs=1e-6)
    assert second.tokens == [B]
    assert second.score == pytest.approx(math.log(0.36) / 2, abs=1e-6)


def test_wu_length_penalty_formula() -> None:
    config = DecodeConfig(beam_size=2, max_len=3, length_penalty="wu", alpha=0.6)
    (best,) = run(beam_search, config)[0]
    expected = {
        (B,): math.log(0.36) / ((5 + 2) / 6) ** 0.6,
        (A, A): math.log(0.30) / ((5 + 3) / 6) ** 0.6,
    }
    assert best.score == pytest.approx(max(expected.values()), abs=1e-6)
    assert tuple(best.tokens) == max(expected, key=lambda k: expected[k])


def test_max_len_forces_eos_and_counts_its_log_prob() -> None:
    (hyp,) = run(greedy_search, DecodeConfig(max_len=1))[0]
    assert hyp.tokens == [A]
    assert hyp.log_prob == pytest.approx(math.log(0.6 * 0.1), abs=1e-6)
    best = run(beam_search, DecodeConfig(beam_size=2, max_len=1))[0][0]
    assert best.tokens == [B]  # B then forced EOS (.36) beats A then forced EOS (.06)


def test_min_len_forbids_an_early_eos() -> None:
    best = run(beam_search, DecodeConfig(beam_size=2, min_len=2, max_len=3))[0][0]
    assert best.tokens == [A, A]
    assert best.log_prob == pytest.approx(math.log(0.30), abs=1e-6)


def test_every_document_of_a_batch_gets_the_same_answer() -> None:
    results = run(beam_search, DecodeConfig(beam_size=2, max_len=3), docs=3)
    assert [r[0].tokens for r in results] == [[B]] * 3


# --- when a document stops -------------------------------------------------------------------

# Beam 2: step 1 finishes EOS (.06) and keeps A (.9) and B (.04); step 2 ranks A A (.45) and
# A EOS (.27) first, so A EOS finishes: two finished hypotheses, the beam size.
STOP_SCRIPT = {
    (0, BOS_ID): {A: 0.9, EOS_ID: 0.06, B: 0.04},
    (1, A): {A: 0.5, EOS_ID: 0.3, B: 0.2},
}


def run_script(
    search: Callable[..., list[list[Hypothesis]]],
    script: dict[tuple[int, int], dict[int, float]],
    config: DecodeConfig,
    stats: SearchStats,
) -> Hypothesis:
    """The best hypothesis for one document under ``script``; the work is added to ``stats``."""
    model: Any = ScriptedModel(script)
    options = {"stats": stats} if search is beam_search else {}
    return search(model, torch.full((1, 3), 7), torch.tensor([3]), config, **options)[0][0]


@pytest.mark.parametrize("penalty", ["none", "avg"])
def test_a_document_stops_once_beam_size_hypotheses_have_finished(penalty: str) -> None:
    # fairseq's rule, and what makes a beam of one greedy: it stops although the live A A would
    # end better (A A EOS = .45 > A EOS = .27; avg: log(.45) / 3 > log(.27) / 2), as greedy
    # search shows. The rule is part of what the search returns, not a shortcut.
    config = DecodeConfig(beam_size=2, max_len=3, length_penalty=penalty)  # type: ignore[arg-type]
    stats = SearchStats()
    best = run_script(beam_search, STOP_SCRIPT, config, stats)
    assert stats.steps == 2
    assert best.tokens == [A]
    assert best.log_prob == pytest.approx(math.log(0.27), abs=1e-6)
    greedy = run_script(greedy_search, STOP_SCRIPT, config, SearchStats())
    assert greedy.tokens == [A, A]
    assert greedy.log_prob == pytest.approx(math.log(0.45), abs=1e-6)
    assert greedy.score > best.score


def test_a_document_stops_when_no_live_hypothesis_can_win() -> None:
    # EOS (.7) finishes at step 1 with one of two hypotheses; the live A (.2) can only fall.
    script = {(0, BOS_ID): {EOS_ID: 0.7, A: 0.2, B: 0.1}}
    stats = SearchStats()
    best = run_script(beam_search, script, DecodeConfig(beam_size=2, max_len=3), stats)
    assert (best.tokens, stats.steps) == ([], 1)


def _done_without_the_bound(active: Any, config: DecodeConfig) -> Tensor:
    """``search._done`` less its bound: a document stops at ``beam_size`` finished hypotheses
    or with no live one."""
    best_live = active.beam_lp.max(dim=1).values
    done: Tensor = (active.count >= config.beam_size) | torch.isinf(best_live)
    return done


@pytest.mark.parametrize(
    ("penalty", "alpha", "fires"),
    [
        ("none", 1.0, True),
        ("avg", 0.3, True),
        ("wu", 1.0, True),
        # A penalty this steep leaves the bound too loose to stop anything here, but a bound
        # that forgot the penalty (live log-prob <= floor) would stop wrongly.
        ("wu", 2.0, False),
    ],
)
def test_stopping_on_the_bound_never_changes_the_result(
    penalty: str, alpha: float, fires: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sharper next-token distributions and a likelier EOS: hypotheses finish at varied steps,
    # so that some documents stop on the bound (a plain random model never ends before max_len).
    model = tiny_model(40, seed=9)
    with torch.no_grad():
        model.decoder.generator.weight *= 8.0
        model.decoder.generator.bias[EOS_ID] += 0.5
    sources, _, _ = random_batch(9, 12, 40)
    config = DecodeConfig(
        beam_size=4,
        n_best=2,
        max_len=15,
        length_penalty=penalty,  # type: ignore[arg-type]
        alpha=alpha,
    )

    def search_alone() -> tuple[list[list[Hypothesis]], int]:
        stats = SearchStats()
        found = [
            beam_search(model, s.unsqueeze(0), torch.tensor([s.numel()]), config, stats=stats)[0]
            for s in sources
        ]
        return found, stats.steps

    stopped, stopped_steps = search_alone()
    monkeypatch.setattr(search_module, "_done", _done_without_the_bound)
    full, full_steps = search_alone()
    if fires:
        assert stopped_steps < full_steps, "the bound stopped some document early"
    for s, f in zip(stopped, full, strict=True):
        assert [h.tokens for h in s] == [h.tokens for h in f]
        assert [h.score for h in s] == pytest.approx([h.score for h in f], abs=1e-6)


# --- a brute-force oracle on a tiny random model --------------------------------------------

ORACLE_VOCAB = 7  # PAD BOS EOS UNK + 3 words
WORDS = (4, 5, 6)
MAX_LEN = 4


@torch.inference_mode()
def sequence_log_prob(model: Seq2Seq, src: Tensor, tokens: tuple[int, ...]) -> float:
    """Sum of the model's log-probs for ``tokens`` then EOS, fed one document alone."""
    memory, state = model.encode(src.unsqueeze(0), torch.tensor([src.numel()]))
    total, prev = 0.0, BOS_ID
    for token in (*tokens, EOS_ID):
        log_probs, state = model.decode_step(torch.tensor([prev]), state, memory)
        total += float(log_probs[0, token])
        prev = token
    return total


def has_repeat(tokens: tuple[int, ...], n: int) -> bool:
    grams = [tokens[i : i + n] for i in range(len(tokens) - n + 1)]
    return n > 0 and len(grams) != len(set(grams))


def oracle(
    model: Seq2Seq, src: Tensor, config: DecodeConfig
) -> list[tuple[tuple[int, ...], float]]:
    scored = []
    for length in range(config.min_len, MAX_LEN + 1):
        for tokens in itertools.product(WORDS, repeat=length):
            if has_repeat(tokens, config.no_repeat_ngram_size):
                continue
            log_prob = sequence_log_prob(model, src, tokens)
            scored.append((tokens, log_prob / config.penalty(length + 1)))
    return sorted(scored, key=lambda item: -item[1])


@pytest.mark.parametrize(
    ("penalty", "min_len", "ngram", "seed", "attention"),
    [
        ("none", 0, 0, 0, "additive"),
        ("avg", 0, 0, 1, "additive"),
        ("wu", 1, 0, 2, "additive"),
        ("none", 2, 2, 3, "additive"),
        ("avg", 0, 1, 4, "additive"),
        ("avg", 0, 0, 5, "none"),
        ("wu", 1, 2, 6, "none"),
    ],
)
def test_a_wide_beam_returns_the_exact_best_sequences(
    penalty: str, min_len: int, ngram: int, seed: int, attention: str
) -> None:
    # 3 words, at most 4 of them: 121 summaries, fewer than the beam of 128. So no candidate is
    # ever pruned and the stop at beam_size finished hypotheses cannot come before the last one
    # ends: the search is exhaustive (narrower beams: see the tests of when a document stops).
    model = tiny_model(ORACLE_VOCAB, seed=seed, num_layers=2, attention=attention)
    config = DecodeConfig(
        beam_size=128,
        n_best=3,
        min_len=min_len,
        max_len=MAX_LEN,
        length_penalty=penalty,  # type: ignore[arg-type]
        alpha=1.0,
        ban_unk=True,
        no_repeat_ngram_size=ngram,
    )
    sources = [torch.tensor([4, 5, 6, 4, 5]), torch.tensor([6, 6])]
    src = torch.nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=PAD_ID)
    with torch.inference_mode():
        found = beam_search(model, src, torch.tensor([5, 2]), config)
        for doc, source in enumerate(sources):
            expected = oracle(model, source, config)[:3]
            assert [tuple(h.tokens) for h in found[doc]] == [tokens for tokens, _ in expected]
            for hyp, (_, score) in zip(found[doc], expected, strict=True):
                assert hyp.score == pytest.approx(score, abs=1e-5)


# --- invariances on random models ------------------------------------------------------------

MODEL_VARIANTS: list[dict[str, Any]] = [
    {"attention": "general"},
    {"attention": "dot", "num_layers": 2},
    {"attention": "additive", "copy": True, "coverage": True},
    {"attention": "general", "copy": True, "bridge": False, "bidirectional": False},
    {"attention": "none"},
    {"attention": "none", "num_layers": 2, "bridge": False, "bidirectional": False},
    {"rnn_type": "GRU", "attention": "additive", "coverage": True},
    {"rnn_type": "GRU", "num_layers": 2, "copy": True, "bridge": False},
    {"attention": "additive", "copy": True, "extended_vocab": True},
    {"rnn_type": "GRU", "copy": True, "copy_gate": "opennmt", "extended_vocab": True},
]


def random_batch(
    seed: int, docs: int, vocab: int, *, unknown: int = 0
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Random documents of ids 4..vocab-1; with ``unknown`` > 0, words vocab..vocab+unknown-1
    are outside the vocabulary too, each written as its extended id vocab + first position."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 25, (docs,), generator=gen)
    words = [torch.randint(4, vocab + unknown, (int(n),), generator=gen) for n in lengths]
    sources = [extended_ids(w, vocab) for w in words]
    padded = torch.nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=PAD_ID)
    return sources, padded, lengths


def extended_ids(words: Tensor, vocab: int) -> Tensor:
    """Word ids -> model ids: a word >= vocab becomes vocab + its first position."""
    first: dict[int, int] = {}
    ids = [w if w < vocab else vocab + first.setdefault(w, p) for p, w in enumerate(words.tolist())]
    return torch.tensor(ids)


def variant_batch(variant: int, seed: int, docs: int) -> tuple[list[Tensor], Tensor, Tensor]:
    """``random_batch`` over 40 ids, with 15 unknown words for the extended-vocabulary models."""
    unknown = 15 if MODEL_VARIANTS[variant].get("extended_vocab") else 0
    return random_batch(seed, docs, 40, unknown=unknown)


@pytest.mark.parametrize("variant", range(len(MODEL_VARIANTS)))
def test_beam_of_one_equals_greedy(variant: int) -> None:
    model = tiny_model(40, seed=variant, **MODEL_VARIANTS[variant])
    _, src, lengths = variant_batch(variant, variant, 8)
    for penalty in ("none", "avg", "wu"):
        config = DecodeConfig(beam_size=1, max_len=12, length_penalty=penalty)
        with torch.inference_mode():
            greedy = greedy_search(model, src, lengths, config)
            beam = beam_search(model, src, lengths, config)
        for g, b in zip(greedy, beam, strict=True):
            assert g[0].tokens == b[0].tokens
            assert g[0].score == pytest.approx(b[0].score, abs=1e-5)


@pytest.mark.parametrize("variant", range(len(MODEL_VARIANTS)))
def test_results_do_not_depend_on_batch_mates(variant: int) -> None:
    model = tiny_model(40, seed=10 + variant, **MODEL_VARIANTS[variant])
    sources, src, lengths = variant_batch(variant, variant, 10)
    config = DecodeConfig(beam_size=4, n_best=2, max_len=15, length_penalty="avg")
    with torch.inference_mode():
        together = beam_search(model, src, lengths, config)
        order = list(reversed(range(len(sources))))
        shuffled_src = torch.nn.utils.rnn.pad_sequence(
            [sources[i] for i in order], batch_first=True
        )
        shuffled = beam_search(model, shuffled_src, lengths[order], config)
        for i, source in enumerate(sources):
            alone = beam_search(model, source.unsqueeze(0), lengths[i : i + 1], config)[0]
            again = shuffled[order.index(i)]
            for a, t, s in zip(alone, together[i], again, strict=True):
                assert a.tokens == t.tokens == s.tokens
                assert a.score == pytest.approx(t.score, abs=1e-5)
                assert a.score == pytest.approx(s.score, abs=1e-5)


def biased_model(seed: int) -> Seq2Seq:
    """A model that would love to emit PAD, BOS and UNK and to repeat itself."""
    model = tiny_model(30, seed=seed)
    with torch.no_grad():
        model.decoder.generator.bias[[PAD_ID, BOS_ID, UNK_ID]] += 5.0
        model.decoder.generator.bias[7] += 3.0
    return model


def test_forbidden_tokens_are_never_emitted() -> None:
    model = biased_model(0)
    _, src, lengths = random_batch(1, 6, 30)
    config = DecodeConfig(beam_size=3, n_best=3, max_len=10, ban_unk=True)
    with torch.inference_mode():
        for search in (beam_search, greedy_search):
            for hyps in search(model, src, lengths, config):
                for hyp in hyps:
                    assert not {PAD_ID, BOS_ID, UNK_ID, EOS_ID} & set(hyp.tokens)
        unbanned = beam_search(model, src, lengths, DecodeConfig(beam_size=3, max_len=10))
    assert any(UNK_ID in h[0].tokens for h in unbanned)  # the bias works: banning mattered


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_blocking(n: int) -> None:
    model = biased_model(1)
    _, src, lengths = random_batch(2, 6, 30)
    with torch.inference_mode():
        free = beam_search(model, src, lengths, DecodeConfig(beam_size=3, min_len=8, max_len=8))
        blocked = beam_search(
            model,
            src,
            lengths,
            DecodeConfig(beam_size=3, n_best=3, min_len=8, max_len=8, no_repeat_ngram_size=n),
        )
    assert any(has_repeat(tuple(h[0].tokens), n) for h in free)
    for hyps in blocked:
        for hyp in hyps:
            assert not has_repeat(tuple(hyp.tokens), n)


@pytest.mark.parametrize("n", [1, 2])
def test_no_repeat_ngram_blocking_with_a_shortlist(n: int) -> None:
    # The shortlist skips ids, so a column is not its id: blocking must map ids to columns.
    model = biased_model(1)
    sources = [torch.tensor([7, 12, 13, 7]), torch.tensor([14, 15]), torch.tensor([7, 20])]
    src = torch.nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=PAD_ID)
    lengths = torch.tensor([4, 2, 2])
    frequent = torch.tensor([25, 26, 27, 9])
    config = DecodeConfig(beam_size=3, n_best=3, min_len=6, max_len=6, shortlist=4)
    free = beam_search(model, src, lengths, config, frequent=frequent)
    blocked_config = DecodeConfig(**{**config.to_dict(), "no_repeat_ngram_size": n})
    blocked = beam_search(model, src, lengths, blocked_config, frequent=frequent)
    assert any(has_repeat(tuple(h[0].tokens), n) for h in free)
    for i, hyps in enumerate(blocked):
        alone = beam_search(
            model, src[i : i + 1], lengths[i : i + 1], blocked_config, frequent=frequent
        )
        assert [h.tokens for h in alone[0]] == [h.tokens for h in hyps]
        allowed = set(sources[i].tolist()) | set(frequent.tolist()) | {UNK_ID}
        for hyp in hyps:
            assert not has_repeat(tuple(hyp.tokens), n)
            assert set(hyp.tokens) <= allowed


def test_lengths_scores_and_log_probs_are_consistent() -> None:
    model = tiny_model(30, seed=5, copy=True)
    sources, src, lengths = random_batch(3, 8, 30)
    config = DecodeConfig(
        beam_size=4,
        n_best=4,
        min_len=2,
        max_len=20,
        max_len_a=0.5,
        max_len_b=2,
        length_penalty="wu",
        alpha=0.7,
    )
    with torch.inference_mode():
        results = beam_search(model, src, lengths, config)
        for source, hyps in zip(sources, results, strict=True):
            cap = min(20, math.floor(0.5 * source.numel() + 2))
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
            for hyp in hyps:
                assert min(2, cap) <= len(hyp.tokens) <= cap
                assert hyp.score == pytest.approx(
                    hyp.log_prob / config.penalty(len(hyp.tokens) + 1)
                )
                exact = sequence_log_prob(model, source, tuple(hyp.tokens))
                assert hyp.log_prob == pytest.approx(exact, abs=1e-4)


@pytest.mark.parametrize("variant", range(len(MODEL_VARIANTS)))
@pytest.mark.parametrize("budget", [1, 60, 200])
def test_refilling_rows_gives_the_same_results(variant: int, budget: int) -> None:
    model = tiny_model(40, seed=20 + variant, **MODEL_VARIANTS[variant])
    _, src, lengths = variant_batch(variant, 30 + variant, 14)
    config = DecodeConfig(beam_size=3, n_best=2, min_len=1, max_len=10, no_repeat_ngram_size=2)
    plain = beam_search(model, src, lengths, config)
    refilled = beam_search(model, src, lengths, config, max_batch_tokens=budget)
    for p, r in zip(plain, refilled, strict=True):
        assert [h.tokens for h in p] == [h.tokens for h in r]
        assert [h.score for h in p] == pytest.approx([h.score for h in r], abs=1e-5)


def test_refill_admits_documents_as_others_finish() -> None:
    src = torch.full((6, 4), 7)
    lengths = torch.full((6,), 4)
    model = ScriptedModel(SCRIPT)
    seen: list[int] = []
    encode = model.encode

    def counting_encode(s: Tensor, n: Tensor) -> tuple[Memory, DecoderState]:
        seen.append(s.size(0))
        return encode(s, n)

    model.encode = counting_encode  # type: ignore[method-assign, assignment]
    config = DecodeConfig(beam_size=2, max_len=3)
    results = beam_search(model, src, lengths, config, max_batch_tokens=8)  # type: ignore[arg-type]
    assert [r[0].tokens for r in results] == [[B]] * 6
    assert seen == [2, 2, 2]  # two documents fit the budget; each pair enters as one leaves


def test_shortlist_limits_each_document_to_its_own_words() -> None:
    model = tiny_model(40, seed=31, copy=True)
    sources, src, lengths = random_batch(41, 10, 40)
    frequent = torch.arange(39, 3, -1)  # pretend the highest ids are the most frequent
    config = DecodeConfig(beam_size=3, n_best=3, max_len=10, shortlist=5)
    together = beam_search(model, src, lengths, config, frequent=frequent)
    refilled = beam_search(model, src, lengths, config, frequent=frequent, max_batch_tokens=40)
    allowed_common = set(frequent[:5].tolist())
    for i, source in enumerate(sources):
        alone = beam_search(
            model, source.unsqueeze(0), lengths[i : i + 1], config, frequent=frequent
        )
        assert [h.tokens for h in alone[0]] == [h.tokens for h in together[i]]
        assert [h.tokens for h in refilled[i]] == [h.tokens for h in together[i]]
        for hyp in together[i]:
            assert set(hyp.tokens) <= allowed_common | set(source.tolist()) | {UNK_ID}


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_a_shortlist_of_everything_changes_nothing(quantize: str) -> None:
    # int8: the shortlisted output layer stays int8 and scores exactly as the whole layer.
    model = quantize_model(tiny_model(40, seed=32), quantize, "cpu")
    _, src, lengths = random_batch(42, 8, 40)
    config = DecodeConfig(beam_size=3, max_len=10)
    full = beam_search(model, src, lengths, config)
    listed = beam_search(
        model,
        src,
        lengths,
        DecodeConfig(beam_size=3, max_len=10, shortlist=40),
        frequent=torch.arange(4, 40),
    )
    for f, s in zip(full, listed, strict=True):
        assert f[0].tokens == s[0].tokens
        assert f[0].score == pytest.approx(s[0].score, abs=1e-5)


def test_int8_general_attention_projects_keys_in_int8_close_to_float() -> None:
    model = tiny_model(40, seed=34, hidden_size=64, embed_dim=32)
    quantized = quantize_model(model, "int8", "cpu")
    assert model.decoder.attention.int8_keys is None, "the float model is left as it was"
    assert quantized.decoder.attention.int8_keys is not None
    outputs = torch.randn(3, 7, 64)
    exact = model.decoder.attention.keys(outputs)
    approximate = quantized.decoder.attention.keys(outputs)
    assert approximate.shape == exact.shape
    assert not torch.equal(approximate, exact)
    assert (approximate - exact).norm() < 0.05 * exact.norm()


def test_an_int8_output_layer_is_unpacked_once_however_often_documents_join() -> None:
    model = quantize_model(tiny_model(40, seed=33), "int8", "cpu")
    generator: Any = model.decoder.generator
    unpack = generator._weight_bias
    unpacks: list[int] = []

    def counted() -> Any:
        unpacks.append(1)
        return unpack()

    generator._weight_bias = counted
    _, src, lengths = random_batch(43, 8, 40)
    config = DecodeConfig(beam_size=2, max_len=6, shortlist=8)
    alone = beam_search(model, src, lengths, config, frequent=torch.arange(4, 40))
    refilled = beam_search(
        model, src, lengths, config, frequent=torch.arange(4, 40), max_batch_tokens=40
    )
    assert [r[0].tokens for r in refilled] == [r[0].tokens for r in alone]
    assert len(unpacks) == 1


def test_shortlist_needs_the_frequency_ranking() -> None:
    model = tiny_model(40)
    _, src, lengths = random_batch(1, 2, 40)
    with pytest.raises(ValueError, match="frequent"):
        beam_search(model, src, lengths, DecodeConfig(shortlist=5))


def test_search_stats_count_the_padding_attended() -> None:
    # Two documents of 10 and 2 tokens in one batch, exactly 3 tokens then EOS: 4 steps, each
    # attending over 2 x 10 positions of which 12 are real.
    model = tiny_model(30, seed=8)
    src = torch.nn.utils.rnn.pad_sequence(
        [torch.arange(4, 14), torch.tensor([5, 6])], batch_first=True, padding_value=PAD_ID
    )
    stats = SearchStats()
    config = DecodeConfig(beam_size=2, min_len=3, max_len=3)
    beam_search(model, src, torch.tensor([10, 2]), config, stats=stats)
    assert (stats.steps, stats.source_tokens, stats.padded_source_tokens) == (4, 48, 80)
    assert stats.padding_efficiency == pytest.approx(0.6)
    alone = SearchStats()
    beam_search(model, src[1:, :2], torch.tensor([2]), config, stats=alone)
    assert alone.padding_efficiency == 1.0


@pytest.mark.parametrize("gate", ["see", "opennmt"])
def test_unknown_words_are_copied_through_the_beams(gate: str) -> None:
    """With the generator shut, every summary token is copied: unknown words as their extended
    ids (V + first position in their own document), batched or alone, with or without refill."""
    model = tiny_model(40, seed=3, copy=True, copy_gate=gate, extended_vocab=True)
    assert model.decoder.copy_gate is not None
    with torch.no_grad():
        model.decoder.copy_gate.bias.fill_(-30.0 if gate == "see" else 30.0)  # copy only
    sources, src, lengths = random_batch(7, 9, 40, unknown=30)
    config = DecodeConfig(beam_size=3, n_best=2, max_len=8, compat="opennmt")
    together = beam_search(model, src, lengths, config)
    refilled = beam_search(model, src, lengths, config, max_batch_tokens=40)
    copied_unknown = 0
    for i, source in enumerate(sources):
        alone = beam_search(model, source.unsqueeze(0), lengths[i : i + 1], config)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.tokens for h in alone] == [h.tokens for h in refilled[i]]
        for hyp in together[i]:
            assert set(hyp.tokens) <= set(source.tolist())
            copied_unknown += sum(t >= 40 for t in hyp.tokens)
    assert copied_unknown > 0


def test_rules_that_need_vocabulary_ids_refuse_extended_ids() -> None:
    model = tiny_model(40, copy=True, extended_vocab=True)
    _, src, lengths = random_batch(1, 2, 40, unknown=5)
    for rule in ({"shortlist": 5}, {"whole_words": True}, {"no_repeat_words": True}):
        with pytest.raises(search_module.DecodeError, match=next(iter(rule))):
            beam_search(model, src, lengths, DecodeConfig(**rule), frequent=torch.arange(4, 40))


# --- the coverage penalty (OpenNMT-py's -coverage_penalty summary) ----------------------------

# Attention over a 3-token source by (step, previous token): the path B EOS reads position 0
# twice (coverage [2, 0, 0]: over 1 by 1), A A EOS reads each position once ([1, 1, 1]: 0).
ATTENTION = {
    (0, BOS_ID): [1.0, 0.0, 0.0],
    (1, A): [0.0, 1.0, 0.0],
    (1, B): [1.0, 0.0, 0.0],
    (2, A): [0.0, 0.0, 1.0],
    (2, B): [0.0, 0.0, 1.0],
}


class AttendingScriptedModel(ScriptedModel):
    """``ScriptedModel`` whose steps also attend, by the ATTENTION table, over 3 positions."""

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Memory, DecoderState]:
        _, state = super().encode(src, src_len)
        batch = src.size(0)
        zeros = torch.zeros(batch, 3, 1)
        return Memory(zeros, zeros, torch.ones(batch, 3, dtype=torch.bool), src[:, :3]), state

    def decode_step_attending(
        self, prev: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState, Tensor]:
        steps = zip(state.h[0, :, 0].tolist(), prev.tolist(), strict=True)
        align = [ATTENTION.get((int(step), token), [0.0] * 3) for step, token in steps]
        log_probs, new = self.decode_step(prev, state, memory)
        return log_probs, new, torch.tensor(align)


def test_the_coverage_penalty_ranks_a_summary_that_rereads_its_source_lower() -> None:
    # Without it B EOS (.36) beats A A EOS (.30); B EOS read position 0 twice: 0.5 x (2 - 1).
    config = DecodeConfig(beam_size=2, n_best=2, max_len=3, coverage_beta=0.5)
    src = torch.full((1, 3), 7)
    model: Any = AttendingScriptedModel(SCRIPT)  # scripted: not a Seq2Seq
    best, second = beam_search(model, src, torch.tensor([3]), config)[0]
    assert best.tokens == [A, A]
    assert best.score == pytest.approx(math.log(0.30), abs=1e-6)
    assert second.tokens == [B]
    assert second.score == pytest.approx(math.log(0.36) - 0.5, abs=1e-6)
    assert second.log_prob == pytest.approx(math.log(0.36), abs=1e-6)


def attention_sums(model: Seq2Seq, src: Tensor, tokens: tuple[int, ...]) -> Tensor:
    """(S,) the model's attention summed over the steps of ``tokens`` then EOS, fed alone."""
    memory, state = model.encode(src.unsqueeze(0), torch.tensor([src.numel()]))
    total, prev = torch.zeros(src.numel()), BOS_ID
    for token in (*tokens, EOS_ID):
        _, state, align = model.decode_step_attending(torch.tensor([prev]), state, memory)
        total += align[0]
        prev = token
    return total


@pytest.mark.parametrize("variant", [0, 2])  # general attention; additive + copy + coverage
@pytest.mark.parametrize("budget", [None, 1, 60])
def test_coverage_penalised_scores_match_a_recomputation(variant: int, budget: int | None) -> None:
    model = tiny_model(40, seed=40 + variant, **MODEL_VARIANTS[variant])
    sources, src, lengths = random_batch(50 + variant, 12, 40)
    plain = DecodeConfig(beam_size=3, n_best=3, max_len=10, length_penalty="avg")
    config = plain.with_overrides({"coverage_beta": 2.0})
    with torch.inference_mode():
        found = beam_search(model, src, lengths, config, max_batch_tokens=budget)
        unpenalised = beam_search(model, src, lengths, plain, max_batch_tokens=budget)
        penalised = 0
        for source, hyps, before in zip(sources, found, unpenalised, strict=True):
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
            for hyp in hyps:
                sums = attention_sums(model, source, tuple(hyp.tokens))
                cost = 2.0 * float((sums - 1.0).clamp(min=0.0).sum())
                penalised += cost > 0
                expected = hyp.log_prob / plain.penalty(len(hyp.tokens) + 1) - cost
                assert hyp.score == pytest.approx(expected, abs=1e-4)
            # The penalty ranks finished hypotheses; it does not steer the beam.
            assert {tuple(h.tokens) for h in hyps} == {tuple(h.tokens) for h in before}
    assert penalised, "no hypothesis re-read its source: the test would prove nothing"


def test_a_negative_coverage_beta_is_refused() -> None:
    with pytest.raises(ValueError, match=r"coverage_beta=-1.0 must be >= 0 \(0 turns it off\)"):
        DecodeConfig(coverage_beta=-1.0)
