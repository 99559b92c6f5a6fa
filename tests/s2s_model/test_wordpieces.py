"""Word-level decoding rules over word pieces: finishing copied words, no repeated content words.

Hand cases on a made-up vocabulary, then the rules inside beam and greedy search on tiny random
models: every hypothesis obeys them, and they keep search's invariances (batch mates, refilling,
beam of one = greedy, a shortlist of everything).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from s2s_model import EOS_ID, PAD_ID, DecodeConfig, beam_search, greedy_search
from s2s_model.tokenizer import Tokenizer
from s2s_model.wordpieces import (
    WordPieces,
    ban_repeated_words,
    finish_copied_words,
    word_pieces,
)
from tests.conftest import tiny_model
from tests.s2s_model.test_search import random_batch

# Made-up pieces: starts carry "▁", as SentencePiece writes them.
PIECES = ["<pad>", "<s>", "</s>", "<unk>", "▁Fire", "W", "all", "▁the", "buffer", "▁mini",
          "▁go", "▁Go", "lang", "▁(", "Go", "▁for", ","]  # fmt: skip
ID = {piece: i for i, piece in enumerate(PIECES)}
WORD_OF = {"Fire": 1, "W": 2, "all": 3, "buffer": 4, "mini": 5, "go": 6, "lang": 7}


def made_up_words() -> WordPieces:
    size = len(PIECES)
    starts = torch.tensor([i < 4 or p.startswith("▁") for i, p in enumerate(PIECES)])
    texts = [p.lstrip("▁") for p in PIECES]
    word = torch.tensor([WORD_OF.get(t.lower() if t.lower() == "go" else t, 0) for t in texts])
    word[:4] = 0
    content = word > 0
    opening = torch.zeros(size, dtype=torch.bool)
    opening[ID["▁("]] = True
    closing = torch.zeros(size, dtype=torch.bool)
    closing[ID[","]] = True
    return WordPieces(starts, content, opening, closing, word)


def ids(*pieces: str) -> list[int]:
    return [ID[p] for p in pieces]


def allowed_after(history: list[str], source: list[str], rule: str) -> set[str]:
    width = 6
    row = [PAD_ID] * (width - len(history)) + ids(*history)
    log_probs = torch.zeros(1, len(PIECES))
    words = made_up_words()
    if rule == "whole":
        src = torch.tensor([ids(*source)])
        finish_copied_words(log_probs, torch.tensor([row]), src, words, None)
    else:
        ban_repeated_words(log_probs, torch.tensor([row]), words, None)
    return {PIECES[i] for i in torch.isfinite(log_probs[0]).nonzero().flatten().tolist()}


SOURCE = ["▁Fire", "W", "all", ",", "▁the", "▁mini", "buffer", "▁Go", "lang", ",", "lang"]
STARTS = {p for i, p in enumerate(PIECES) if i < 4 or p.startswith("▁")}


def test_a_copied_word_is_finished_as_the_source_has_it() -> None:
    assert allowed_after(["▁the", "▁Fire", "W"], SOURCE, "whole") == {"all"}
    # "FireWall," in the source: the word may end before the comma, or go on with it.
    assert allowed_after(["▁Fire", "W", "all"], SOURCE, "whole") == STARTS | {","}
    # "Golang,lang": the comma is inside the word, which goes on.
    assert allowed_after(["▁Go", "lang"], SOURCE, "whole") == {","}


def test_a_piece_of_another_word_is_not_glued_to_a_copied_one() -> None:
    allowed = allowed_after(["▁the"], SOURCE, "whole")
    assert "buffer" not in allowed and "W" not in allowed and "lang" not in allowed
    assert allowed >= STARTS


def test_a_single_piece_is_a_word_of_its_own() -> None:
    assert allowed_after(["▁Go"], SOURCE, "whole") == STARTS | {"lang"}


def test_other_words_may_not_go_on_with_a_piece_from_inside_a_source_word() -> None:
    inside = {"W", "all", "buffer", "lang"}  # "," closes a word: it stays allowed
    assert allowed_after(["▁go"], SOURCE, "whole") == set(PIECES) - inside
    assert allowed_after([], SOURCE, "whole") == set(PIECES) - inside
    assert allowed_after(["▁go"], ["▁the"], "whole") == set(PIECES)


def test_a_content_word_starts_once_whatever_its_case_or_bracket() -> None:
    banned = set(PIECES) - allowed_after(["▁Go", "lang", "▁for"], [], "repeat")
    assert banned == {"▁go", "▁Go"}
    banned = set(PIECES) - allowed_after(["▁Go", "▁for", "▁("], [], "repeat")
    assert banned == {"▁go", "▁Go", "Go"}
    assert set(PIECES) - allowed_after(["▁Go", "lang", "▁for"], [], "repeat") == banned - {"Go"}


def test_word_pieces_of_a_sentencepiece_model(tiny_tokenizer: Tokenizer) -> None:
    words = word_pieces(tiny_tokenizer)
    sp = getattr(tiny_tokenizer, "_sp")  # noqa: B009
    for i in range(4, tiny_tokenizer.vocab_size):
        piece = sp.id_to_piece(i)
        assert bool(words.starts[i]) == piece.startswith("▁")
        assert not words.content[i] or piece.lstrip("▁").isalpha()
    assert bool(words.starts[:4].all()) and not bool(words.content[:4].any())


# --- inside search, on tiny random models --------------------------------------------------------

VOCAB = 40


def random_words(seed: int) -> WordPieces:
    """Every third id starts a word; ids 4-21 are content words in 6 case-blind classes."""
    ids_ = torch.arange(VOCAB)
    starts = (ids_ % 3 == 0) | (ids_ < 4)
    content = (ids_ >= 4) & (ids_ < 22)
    word = torch.where(content, (ids_ + seed) % 6 + 1, 0)
    opening = ids_ == 39
    closing = ids_ == 38
    return WordPieces(starts, content & (word > 0), opening, closing, word)


def split_words(tokens: list[int], words: WordPieces) -> list[list[int]]:
    out: list[list[int]] = []
    for token in tokens:
        if bool(words.starts[token]) or not out:
            out.append([token])
        else:
            out[-1].append(token)
    return out


def source_words(source: Tensor, words: WordPieces) -> list[list[int]]:
    return split_words(source.tolist(), words)


def obeys_whole_words(tokens: list[int], source: Tensor, words: WordPieces, cap: int) -> bool:
    """A word whose first piece starts a source word is a source word's prefix, and ends where
    that word ends (or is one piece); the last word may be cut by the length cap. Other words hold
    no piece that the source has inside a word (after their first, or first in the summary)."""
    written = split_words(tokens, words)
    copies = [w for w in source_words(source, words) if bool(words.starts[w[0]])]
    inside = {t for w in source_words(source, words) for t in w[1:] if not words.closing[t]}
    for k, word in enumerate(written):
        candidates = [c for c in copies if c[:1] == word[:1]]
        if not candidates:
            pieces = word if k == 0 and not bool(words.starts[word[0]]) else word[1:]
            if inside & set(pieces):
                return False
            continue
        if not any(c[: len(word)] == word for c in candidates):
            return False
        complete = len(word) == 1 or any(
            c == word or (c[: len(word)] == word == c[: len(c) - 1] and bool(words.closing[c[-1]]))
            for c in candidates
        )
        if not complete and not (k == len(written) - 1 and len(tokens) >= cap):
            return False
    return True


def content_starts(tokens: list[int], words: WordPieces) -> list[int]:
    out = []
    for i, token in enumerate(tokens):
        before = tokens[i - 1] if i else PAD_ID
        starts = bool(words.starts[token]) or bool(words.opening[before])
        if bool(words.content[token]) and starts:
            out.append(int(words.word[token]))
    return out


CONFIGS = [
    DecodeConfig(beam_size=4, n_best=2, max_len=12, whole_words=True),
    DecodeConfig(beam_size=3, max_len=10, no_repeat_words=True, length_penalty="avg"),
    DecodeConfig(
        beam_size=4, max_len=12, whole_words=True, no_repeat_words=True, no_repeat_ngram_size=2
    ),
]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("config", CONFIGS)
def test_every_hypothesis_obeys_the_word_rules(seed: int, config: DecodeConfig) -> None:
    attention = "none" if seed == 3 else "general"
    model = tiny_model(VOCAB, seed=seed, attention=attention, copy=seed % 3 != 0 and seed != 3)
    words = random_words(seed)
    sources, src, lengths = random_batch(seed, 8, VOCAB)
    results = beam_search(model, src, lengths, config, words=words)
    for source, hyps in zip(sources, results, strict=True):
        for hyp in hyps:
            assert math.isfinite(hyp.score) and EOS_ID not in hyp.tokens
            cap = config.max_len_for(source.numel())
            if config.whole_words:
                assert obeys_whole_words(hyp.tokens, source, words, cap)
            if config.no_repeat_words:
                said = content_starts(hyp.tokens, words)
                assert len(said) == len(set(said))


@pytest.mark.parametrize("config", CONFIGS)
def test_word_rules_keep_the_search_invariances(config: DecodeConfig) -> None:
    model = tiny_model(VOCAB, seed=5, copy=True)
    words = random_words(5)
    sources, src, lengths = random_batch(11, 6, VOCAB)
    together = beam_search(model, src, lengths, config, words=words)
    refilled = beam_search(model, src, lengths, config, max_batch_tokens=40, words=words)
    everything = DecodeConfig(**{**config.to_dict(), "shortlist": VOCAB})
    frequent = torch.arange(4, VOCAB)
    shortlisted = beam_search(model, src, lengths, everything, frequent=frequent, words=words)
    for i, source in enumerate(sources):
        alone = beam_search(model, source.unsqueeze(0), lengths[i : i + 1], config, words=words)
        for other in (together[i], refilled[i], shortlisted[i]):
            assert [h.tokens for h in alone[0]] == [h.tokens for h in other]
            assert [h.score for h in alone[0]] == pytest.approx([h.score for h in other], abs=1e-5)
    greedy_config = DecodeConfig(**{**config.to_dict(), "beam_size": 1, "n_best": 1})
    greedy = greedy_search(model, src, lengths, greedy_config, words=words)
    beam = beam_search(model, src, lengths, greedy_config, words=words)
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam]


def test_the_rules_need_the_word_pieces() -> None:
    model = tiny_model(VOCAB)
    _, src, lengths = random_batch(0, 2, VOCAB)
    with pytest.raises(ValueError, match="words="):
        beam_search(model, src, lengths, DecodeConfig(no_repeat_words=True))
