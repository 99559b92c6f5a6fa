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
With the model's ``s2s_model.domain.DomainProfile`` (its training domain, saved with it),
two flags use it: ``out_of_domain`` (few of the source's words were seen in training) and
``novel_word``, which then counts the model's house-style words ("library", "development
files") as known: 20.5% of the bundled model's human test references had most words absent from
their source, and 0.5% have most words in neither (benchmarks/domain.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from operator import methodcaller
from typing import Protocol

# In the order a row lists them; a new flag goes at the end, so earlier rows keep their order.
FLAGS = ("novel_word", "repeat", "truncated_source", "forced_end", "out_of_domain")
# novel_word: more than this share of the summary's words are novel.
MAX_NOVEL_SHARE = 0.5

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


class TrainingDomain(Protocol):
    """What the flags need of a model's training domain (``s2s_model.domain.DomainProfile``,
    which builds on this module's words and so is not imported here)."""

    @property
    def summary_words(self) -> frozenset[str]: ...

    @property
    def threshold(self) -> float: ...

    def known_share(self, source_words: AbstractSet[str]) -> float: ...


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
    """One summary's signals: ``novel_words`` (a share), ``repeated_words`` (a count), ``flags``;
    ``known_share`` is the share of the source's words the model knows (None without a domain
    profile; see ``DomainProfile.known_share``)."""

    novel_words: float
    repeated_words: int
    flags: list[str]
    known_share: float | None = None


def assess(
    summary: str,
    source: str,
    *,
    truncated: bool = False,
    forced_end: bool = False,
    max_novel_share: float = MAX_NOVEL_SHARE,
    domain: TrainingDomain | None = None,
) -> Quality:
    """The quality signals of one summary of ``source`` by a model of training ``domain``.

    Flags: ``novel_word`` when more than ``max_novel_share`` of the words are absent from the
    source (and, with a ``domain``, from the model's house-style summary words), ``repeat`` when a
    content word repeats, ``truncated_source`` when the model read only the start of the source,
    ``forced_end`` when decoding hit the maximum length instead of choosing to end,
    ``out_of_domain`` when the source is far from the ``domain`` (never without one).
    """
    summary_words = words(summary)
    source_words = word_set(source)  # built once: novel words and the domain both read it
    novel = _novel(summary_words, source_words)
    total = len(summary_words)
    share = len(novel) / total if total else 0.0
    invented, known_share, far = share, None, False
    if domain is not None:
        if novel:
            style = domain.summary_words
            invented = len([word for word in novel if word not in style]) / total
        known_share = domain.known_share(source_words)
        far = known_share < domain.threshold
    repeats = len(_repeated(summary_words))
    signals = (invented > max_novel_share, repeats > 0, truncated, forced_end, far)
    flags = [name for name, on in zip(FLAGS, signals, strict=True) if on]
    return Quality(
        novel_words=round(share, 4),
        repeated_words=repeats,
        flags=flags,
        known_share=None if known_share is None else round(known_share, 4),
    )


def rates(
    summaries: Sequence[str],
    sources: Sequence[str],
    known: set[str] | None = None,
    *,
    domain: TrainingDomain | None = None,
) -> dict[str, float]:
    """Percentages over documents: ``repeat`` (a content word repeats: the ``repeat`` flag),
    ``novel_words`` (mean share of words absent from the source, x 100), ``novel_word`` (the
    flag: most words novel; with ``domain``, novel and not house style), with ``known`` words
    ``unknown_word`` (a word neither in the source nor in ``known``: a glued or cut copy), and
    with ``domain`` ``out_of_domain`` (the flag: the source is far from the model's domain)."""
    if len(summaries) != len(sources):
        raise ValueError(f"{len(summaries)} summaries but {len(sources)} sources")
    n = max(1, len(summaries))
    pairs = list(zip(summaries, sources, strict=True))
    assessed = [assess(s, src, domain=domain) for s, src in pairs]
    out = {
        "repeat": 100.0 * sum("repeat" in q.flags for q in assessed) / n,
        "novel_words": 100.0 * sum(q.novel_words for q in assessed) / n,
        "novel_word": 100.0 * sum("novel_word" in q.flags for q in assessed) / n,
    }
    if known is not None:
        out["unknown_word"] = (
            100.0 * sum(bool(unknown_words(s, src, known)) for s, src in pairs) / n
        )
    if domain is not None:
        out["out_of_domain"] = 100.0 * sum("out_of_domain" in q.flags for q in assessed) / n
    return out
