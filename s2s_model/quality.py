"""Cheap per-summary quality signals, in pure Python: what a reader of millions of rows can filter.

Words are whitespace tokens with the punctuation at their edges stripped, compared case-blind
(``"Qt,"`` and ``"qt"`` are one word). Two signals:

- ``novel_words``: the share of a summary's words absent from its source. Synopses legitimately
  add a few ("library for ..."), but a summary made mostly of novel words is off the source (out
  of domain, or invented), and a novel word the model glued from copied pieces ("x8664") shows up
  here.
- ``repeated_words``: how many content words (not in :data:`FUNCTION_WORDS`) occur more than
  once ("CDs and DVDs for CDs" has one).

``flags`` turns them, and what decoding knows, into a list of short names (see :data:`FLAGS`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FLAGS = ("novel_word", "repeat", "truncated_source", "forced_end")

# Words that may repeat in a good summary ("library for X - development files for Y").
FUNCTION_WORDS = frozenset(
    (
        *("a", "an", "and", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it"),
        *("its", "of", "on", "or", "over", "the", "to", "via", "with", "without", "that"),
        *("this", "which", "using", "based"),
    )
)
_EDGE_PUNCTUATION = "\"'`()[]{}<>,.;:!?*"


def words(text: str) -> list[str]:
    """Lower-cased whitespace words with edge punctuation stripped; pure punctuation dropped."""
    out = []
    for raw in text.split():
        word = raw.strip(_EDGE_PUNCTUATION).lower()
        if any(ch.isalnum() for ch in word):
            out.append(word)
    return out


def novel_words(summary: str, source: str) -> list[str]:
    """The summary's words that its source does not hold, in order (duplicates kept)."""
    seen = set(words(source))
    return [word for word in words(summary) if word not in seen]


def novel_share(summary: str, source: str) -> float:
    """Share of the summary's words absent from the source (0.0 for an empty summary)."""
    total = len(words(summary))
    return len(novel_words(summary, source)) / total if total else 0.0


def repeated_words(summary: str) -> list[str]:
    """Content words occurring more than once in ``summary``, each named once, in order."""
    counts = Counter(w for w in words(summary) if w not in FUNCTION_WORDS and not w.isdigit())
    return [word for word, count in counts.items() if count > 1]


def vocabulary(texts: Iterable[str]) -> set[str]:
    """Every word (see :func:`words`) of ``texts``: the known words of a training corpus."""
    known: set[str] = set()
    for text in texts:
        known.update(words(text))
    return known


def unknown_words(summary: str, source: str, known: Iterable[str] | set[str]) -> list[str]:
    """Novel words that are not in ``known`` either (a vocabulary of real words): glued or cut
    copies such as "x8664" or "GlobalPlat"."""
    vocabulary = known if isinstance(known, set | frozenset) else set(known)
    return [word for word in novel_words(summary, source) if word not in vocabulary]


@dataclass(frozen=True)
class Quality:
    """One summary's signals: ``novel_words`` (a share), ``repeated_words`` (a count), ``flags``."""

    novel_words: float
    repeated_words: int
    flags: list[str]


def assess(
    summary: str,
    source: str,
    *,
    truncated: bool = False,
    forced_end: bool = False,
    max_novel_share: float = 0.5,
) -> Quality:
    """The quality signals of one summary of ``source``.

    Flags: ``novel_word`` when more than ``max_novel_share`` of the words are absent from the
    source, ``repeat`` when a content word repeats, ``truncated_source`` when the model read only
    the start of the source, ``forced_end`` when decoding hit the maximum length instead of
    choosing to end.
    """
    share = novel_share(summary, source)
    repeats = len(repeated_words(summary))
    flags = [
        name
        for name, on in zip(
            FLAGS, (share > max_novel_share, repeats > 0, truncated, forced_end), strict=True
        )
        if on
    ]
    return Quality(novel_words=round(share, 4), repeated_words=repeats, flags=flags)


def rates(
    summaries: Sequence[str], sources: Sequence[str], known: set[str] | None = None
) -> dict[str, float]:
    """Percentages over documents: ``repeat`` (a content word repeats: the ``repeat`` flag),
    ``novel_words`` (mean share of words absent from the source, x 100), ``novel_word`` (the
    flag: most words absent) and, with ``known`` words, ``unknown_word`` (a word neither in the
    source nor in ``known``: a glued or cut copy)."""
    if len(summaries) != len(sources):
        raise ValueError(f"{len(summaries)} summaries but {len(sources)} sources")
    n = max(1, len(summaries))
    pairs = list(zip(summaries, sources, strict=True))
    assessed = [assess(s, src) for s, src in pairs]
    out = {
        "repeat": 100.0 * sum("repeat" in q.flags for q in assessed) / n,
        "novel_words": 100.0 * sum(q.novel_words for q in assessed) / n,
        "novel_word": 100.0 * sum("novel_word" in q.flags for q in assessed) / n,
    }
    if known is not None:
        out["unknown_word"] = (
            100.0 * sum(bool(unknown_words(s, src, known)) for s, src in pairs) / n
        )
    return out
