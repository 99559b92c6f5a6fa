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
from operator import methodcaller

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
_strip_edges = methodcaller("strip", _EDGE_PUNCTUATION)


def _is_word(candidate: str) -> bool:
    # isalnum() on the whole word settles the common case at C speed.
    return candidate.isalnum() or any(ch.isalnum() for ch in candidate)


def words(text: str) -> list[str]:
    """Lower-cased whitespace words with edge punctuation stripped; pure punctuation dropped."""
    return [word for word in map(_strip_edges, text.lower().split()) if _is_word(word)]


def word_set(text: str) -> set[str]:
    """Every word of ``text`` (see :func:`words`), and maybe strings that are no word (pure
    punctuation, ""): what a membership test of words needs, built in one C-speed pass.

    Lower-casing before splitting and stripping gives the words :func:`words` gives: no
    lower-case mapping makes or removes whitespace or edge punctuation."""
    return set(map(_strip_edges, text.lower().split()))


def novel_words(summary: str, source: str) -> list[str]:
    """The summary's words that its source does not hold, in order (duplicates kept)."""
    return _novel(words(summary), word_set(source))


def _novel(summary_words: list[str], seen: set[str]) -> list[str]:
    return [word for word in summary_words if word not in seen]


def novel_share(summary: str, source: str) -> float:
    """Share of the summary's words absent from the source (0.0 for an empty summary)."""
    return _share(words(summary), word_set(source))


def _share(summary_words: list[str], seen: set[str]) -> float:
    total = len(summary_words)
    return len(_novel(summary_words, seen)) / total if total else 0.0


def repeated_words(summary: str) -> list[str]:
    """Content words occurring more than once in ``summary``, each named once, in order."""
    return _repeated(words(summary))


def _repeated(summary_words: list[str]) -> list[str]:
    content = [w for w in summary_words if w not in FUNCTION_WORDS and not w.isdigit()]
    if len(set(content)) == len(content):  # most summaries: no Counter needed
        return []
    return [word for word, count in Counter(content).items() if count > 1]


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
    summary_words = words(summary)
    share = _share(summary_words, word_set(source))
    repeats = len(_repeated(summary_words))
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
