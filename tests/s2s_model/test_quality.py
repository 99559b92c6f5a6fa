"""Per-summary quality signals: words, novel words, repeats, flags and rates."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2s_model.domain import DomainProfile
from s2s_model.quality import (
    FLAGS,
    FUNCTION_WORDS,
    assess,
    novel_share,
    novel_words,
    rates,
    repeated_words,
    unknown_words,
    vocabulary,
    word_set,
    words,
)

SOURCE = "Qt is a toolkit. This package contains the Python 3 bindings for the Qt 6 Help module."


def test_words_are_lower_cased_without_edge_punctuation() -> None:
    assert words('The "Qt" (Help) module, x86_64-linux - v1.2.') == [
        "the",
        "qt",
        "help",
        "module",
        "x86_64-linux",
        "v1.2",
    ]


def test_novel_words_are_the_summary_words_the_source_lacks() -> None:
    assert novel_words("Python bindings for Qt 6Help", SOURCE) == ["6help"]
    assert novel_share("Python bindings for Qt 6Help", SOURCE) == pytest.approx(1 / 5)
    assert novel_share("", SOURCE) == 0.0


def test_repeated_words_count_content_words_only() -> None:
    assert repeated_words("CDs and DVDs for CDs") == ["cds"]
    assert repeated_words("Clang tools for Clang - tools") == ["clang", "tools"]
    assert repeated_words("library for the parsing of the files for Python 3 and 3") == []


def test_unknown_words_are_in_neither_source_nor_known_vocabulary() -> None:
    known = vocabulary(["a library for Python", "help module"])
    summary = "Python library for the x8664 Help module"
    assert unknown_words(summary, "x86_64 only", known) == ["the", "x8664"]


@pytest.mark.parametrize(
    ("summary", "truncated", "forced_end", "expected"),
    [
        ("Python 3 bindings for the Qt 6 Help module", False, False, []),
        ("GNU R package for ring, slowly wind", False, False, ["novel_word"]),
        ("Qt bindings for Qt", False, False, ["repeat"]),
        ("Qt Help module", True, True, ["truncated_source", "forced_end"]),
    ],
)
def test_flags(summary: str, truncated: bool, forced_end: bool, expected: list[str]) -> None:
    quality = assess(summary, SOURCE, truncated=truncated, forced_end=forced_end)
    assert quality.flags == expected
    assert set(quality.flags) <= set(FLAGS)
    assert 0.0 <= quality.novel_words <= 1.0


def test_rates_are_percentages_of_summaries() -> None:
    summaries = ["Qt bindings for Qt", "Qt Help module", "GNU R package for ring", "Qt x8664"]
    sources = [SOURCE] * 4
    result = rates(summaries, sources, known=vocabulary([SOURCE]))
    assert result["repeat"] == pytest.approx(25.0)
    assert result["novel_word"] == pytest.approx(25.0)
    assert result["unknown_word"] == pytest.approx(50.0)  # "gnu r ... ring" and "x8664"
    assert "unknown_word" not in rates(summaries, sources)
    with pytest.raises(ValueError, match="summaries but"):
        rates(summaries, sources[:2])


def _reference_words(text: str) -> list[str]:
    """The definition the fast ``words`` and ``word_set`` must keep (per word, in Python)."""
    out = []
    for raw in text.split():
        word = raw.strip("\"'`()[]{}<>,.;:!?*").lower()
        if any(ch.isalnum() for ch in word):
            out.append(word)
    return out


_SPECIAL = [*"aZ9_-.,;:!?*\"'()[]{}<> \t\n\u00a0\u2003", "\u0130", "\u00df", "\u01c4", "\u212a"]
_TEXT = st.text(alphabet=st.sampled_from(_SPECIAL) | st.characters(), max_size=60)


@settings(max_examples=400, deadline=None)
@given(summary=_TEXT, source=_TEXT)
def test_fast_words_and_signals_match_the_per_word_definition(summary: str, source: str) -> None:
    assert words(summary) == _reference_words(summary)
    assert set(_reference_words(source)) <= word_set(source)
    seen = set(_reference_words(source))
    expected_novel = [w for w in _reference_words(summary) if w not in seen]
    assert novel_words(summary, source) == expected_novel
    counts = Counter(
        w for w in _reference_words(summary) if w not in FUNCTION_WORDS and not w.isdigit()
    )
    assert repeated_words(summary) == [w for w, n in counts.items() if n > 1]


# Known: every word of SOURCE but "qt" and "6"; house style: "library", "development", "files".
DOMAIN = DomainProfile(
    known_words=frozenset(words(SOURCE)) - {"qt", "6"},
    summary_words=frozenset({"library", "development", "files"}),
    threshold=0.6,
    prior_words=3.0,
)
NEWS = "Shares fell sharply on Wall Street on Monday after the central bank raised rates."


def test_out_of_domain_needs_a_profile_and_a_far_source() -> None:
    near = assess("Python 3 bindings for the Qt 6 Help module", SOURCE, domain=DOMAIN)
    # SOURCE: 15 distinct words, 13 known: (13 + 3) / (15 + 3).
    assert near.known_share == pytest.approx(16 / 18, abs=1e-4)
    assert "out_of_domain" not in near.flags
    far = assess("Wall Street rates", NEWS, domain=DOMAIN)
    # NEWS: 13 distinct words, "the" alone known: (1 + 3) / (13 + 3) < 0.6.
    assert far.known_share == pytest.approx(4 / 16, abs=1e-4)
    assert far.flags == ["out_of_domain"]
    plain = assess("Wall Street rates", NEWS)
    assert plain.known_share is None and plain.flags == []


def test_novel_word_counts_the_models_house_style_as_known() -> None:
    summary = "Qt Help library - development files"  # 5 words; 3 novel, all house style
    assert assess(summary, SOURCE).flags == ["novel_word"]
    with_style = assess(summary, SOURCE, domain=DOMAIN)
    assert with_style.flags == []
    assert with_style.novel_words == pytest.approx(3 / 5)  # the column keeps its definition
    invented = "Qt library for Rohr Industries"  # 5 words, "rohr" and "industries" invented
    assert assess(invented, SOURCE, domain=DOMAIN).flags == []  # 2 / 5, not more than half
    assert assess("Rohr Industries library", SOURCE, domain=DOMAIN).flags == ["novel_word"]


def test_flags_keep_the_order_of_FLAGS() -> None:
    quality = assess("Gold gold prices", NEWS, truncated=True, forced_end=True, domain=DOMAIN)
    assert quality.flags == list(FLAGS)


def test_rates_with_a_domain_count_out_of_domain_sources() -> None:
    summaries = ["Qt Help library - development files", "Rohr Industries library"]
    result = rates(summaries, [SOURCE, NEWS], domain=DOMAIN)
    assert result["out_of_domain"] == pytest.approx(50.0)
    assert result["novel_word"] == pytest.approx(50.0)
    assert rates(summaries, [SOURCE, NEWS])["novel_word"] == pytest.approx(100.0)
    assert "out_of_domain" not in rates(summaries, [SOURCE, NEWS])
