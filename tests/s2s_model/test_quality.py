"""Per-summary quality signals: words, novel words, repeats, flags and rates."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
