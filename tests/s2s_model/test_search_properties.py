"""Properties of beam search over random models and random decoding settings (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from s2s_model import BOS_ID, EOS_ID, PAD_ID, UNK_ID, DecodeConfig, beam_search
from tests.conftest import tiny_model
from tests.s2s_model.test_search import has_repeat, random_batch, sequence_log_prob

configs = st.builds(
    DecodeConfig,
    beam_size=st.integers(1, 5),
    min_len=st.integers(0, 3),
    max_len=st.integers(1, 8),
    max_len_a=st.sampled_from([0.0, 0.5]),
    max_len_b=st.integers(1, 10),
    length_penalty=st.sampled_from(["none", "avg", "wu"]),
    alpha=st.floats(0.0, 1.5),
    no_repeat_ngram_size=st.integers(0, 3),
    ban_unk=st.booleans(),
    compat=st.sampled_from(["none", "opennmt"]),
)


@settings(max_examples=25, deadline=None)
@given(config=configs, seed=st.integers(0, 10_000), budget=st.sampled_from([None, 1, 50]))
def test_every_hypothesis_obeys_the_rules(
    config: DecodeConfig, seed: int, budget: int | None
) -> None:
    attention = "none" if seed % 3 == 0 else "additive"
    model = tiny_model(20, seed=seed % 7, attention=attention, copy=seed % 3 == 1)
    sources, src, lengths = random_batch(seed, 4, 20)
    results = beam_search(model, src, lengths, config, max_batch_tokens=budget)
    assert len(results) == len(sources)
    for source, hyps in zip(sources, results, strict=True):
        cap = config.max_len_for(source.numel())
        assert 1 <= len(hyps) <= config.n_best
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for hyp in hyps:
            forbidden = {PAD_ID, BOS_ID, EOS_ID} | ({UNK_ID} if config.ban_unk else set())
            assert not forbidden & set(hyp.tokens)
            assert len(hyp.tokens) <= cap
            assert math.isfinite(hyp.score)
            if config.no_repeat_ngram_size:
                assert not has_repeat(tuple(hyp.tokens), config.no_repeat_ngram_size)
            if config.compat == "none":
                exact = sequence_log_prob(model, source, tuple(hyp.tokens))
                assert abs(hyp.log_prob - exact) < 1e-3
                assert math.isclose(
                    hyp.score, hyp.log_prob / config.penalty(len(hyp.tokens) + 1), rel_tol=1e-6
                )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), beam=st.integers(1, 4))
def test_a_batch_gives_what_each_document_gives_alone(seed: int, beam: int) -> None:
    model = tiny_model(20, seed=seed % 5)
    sources, src, lengths = random_batch(seed, 5, 20)
    config = DecodeConfig(beam_size=beam, max_len=6, length_penalty="avg")
    together = beam_search(model, src, lengths, config)
    for i, source in enumerate(sources):
        alone = beam_search(model, source.unsqueeze(0), lengths[i : i + 1], config)[0]
        assert alone[0].tokens == together[i][0].tokens
        assert abs(alone[0].score - together[i][0].score) < 1e-5
