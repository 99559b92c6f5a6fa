"""What a model knows of its training domain, saved with it, and the out-of-domain test.

A summarizer trained on Debian package descriptions writes package-style phrases for any text
(issue 24: "GNU R package for Rohr Industries" for a Reuters article), and nothing in its output
says so: its scores do not separate such documents (median -0.353 against -0.322 in domain).
What does separate them is the source itself: how many of its words the model saw while it was
trained. :class:`DomainProfile` keeps

- ``known_words``: the words (as :func:`s2s_model.quality.word_set` gives them) found in at
  least one in :data:`KNOWN_DOC_SHARE` of the training sources; the signal of a document is
  :meth:`DomainProfile.known_share`, the share of its distinct words that are known, with
  :data:`PRIOR_WORDS` known pseudo-words added so that a description of three words is not
  judged on three words alone;
- ``threshold``: the :data:`CALIBRATION_QUANTILE` quantile of that share over the validation
  sources, so that about 2% of in-domain documents fall below it by construction; a document
  below it is **out of domain**;
- ``summary_words``: the words found in at least one in :data:`SUMMARY_DOC_SHARE` of the
  training summaries: the house style ("library", "development", "files"), which a good summary
  adds without the source holding it (see ``quality.assess``'s ``novel_word``).

It is plain data in the checkpoint's ``config.json`` (``metadata["domain"]``, written by
``s2s train`` at the end of training or by :func:`attach_profile` for an existing model), so no
checkpoint-format change is needed. A model without it (older checkpoints, OpenNMT-py imports)
has no profile: nothing is ever flagged out of domain for it.

Cost: the share is one C-speed set difference with the source's word set, which
``quality.assess`` builds anyway for ``novel_words``; no extra pass over the text (about 2.5
microseconds a Debian description, benchmarks/domain.py).
Why words and not word pieces: on the bundled model, pieces per word and the share of
single-piece words overlap far more between news and Debian descriptions (see
``benchmarks/domain.py``, which measures them side by side).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2s_model.atomic import atomic_write
from s2s_model.checkpoint import CONFIG_FILE, load_checkpoint
from s2s_model.errors import S2SError
from s2s_model.quality import word_set, words

METADATA_KEY = "domain"
PROFILE_VERSION = 1
# A source word is known when at least 1 in 1,500 training sources holds it (40 of the bundled
# model's 58,565): rarer words (names of one package) say nothing about the domain. Chosen with
# the bundled model on its validation split and a CNN/DailyMail *training* sample, never on the
# data the targets are measured on (benchmarks/domain.py).
KNOWN_DOC_SHARE = 1 / 1500
# A summary word is house style when at least 1 in 3,000 training summaries holds it (20 of
# the bundled model's): "library", "development", "files", "GNU", "bindings", ...
SUMMARY_DOC_SHARE = 1 / 3000
# Fewer documents than this never make a word known, whatever the corpus size.
MIN_DOCUMENTS = 2
# The most words of each list kept (the most frequent first), to bound config.json.
MAX_WORDS = 20_000
# Known pseudo-words added to every document's count (see the module docstring).
PRIOR_WORDS = 3.0
# The share of validation sources allowed below the threshold.
CALIBRATION_QUANTILE = 0.02
# Quantiles of the validation split's known share saved with the profile, for reading.
REPORTED_QUANTILES = (0.01, 0.02, 0.05, 0.5)


class DomainError(S2SError, ValueError):
    """A checkpoint's domain section that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class DomainProfile:
    """A model's training domain; ``is_out_of_domain`` tells a document far from it.

    ``stats``: how the profile was made (documents, word counts, the validation split's
    quantiles), kept for people; nothing reads it back."""

    known_words: frozenset[str]
    summary_words: frozenset[str]
    threshold: float
    prior_words: float = PRIOR_WORDS
    stats: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def known_share(self, source_words: AbstractSet[str]) -> float:
        """Share of ``source_words`` (a ``quality.word_set``) the model knows, smoothed."""
        total = len(source_words)
        # One C-speed pass over the source's words; the difference is small (most are known),
        # so building it is cheaper than building the intersection (measured).
        known = total - len(source_words - self.known_words)
        return (known + self.prior_words) / (total + self.prior_words)

    def is_out_of_domain(self, source_words: AbstractSet[str]) -> bool:
        return self.known_share(source_words) < self.threshold

    def to_metadata(self) -> dict[str, Any]:
        """The JSON of ``config.json``'s ``metadata["domain"]``."""
        return {
            "version": PROFILE_VERSION,
            "signal": "known_share",
            "threshold": self.threshold,
            "prior_words": self.prior_words,
            "stats": dict(self.stats),
            "known_words": _joined(self.known_words),
            "summary_words": _joined(self.summary_words),
        }


def domain_profile(metadata: Mapping[str, Any]) -> DomainProfile | None:
    """The profile in a checkpoint's ``metadata`` (``Checkpoint.metadata``), or None."""
    section = metadata.get(METADATA_KEY)
    if section is None:
        return None
    try:
        if section["version"] != PROFILE_VERSION:
            raise ValueError(f"version {section['version']!r}, this code reads {PROFILE_VERSION}")
        profile = DomainProfile(
            known_words=_split(section["known_words"]),
            summary_words=_split(section["summary_words"]),
            threshold=float(section["threshold"]),
            prior_words=float(section["prior_words"]),
            stats=dict(section.get("stats", {})),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DomainError(
            f"config.json's metadata.{METADATA_KEY} is not a usable domain profile ({err}):"
            f" remove the section (nothing is then flagged out of domain) or compute it again"
            " with s2s_model.domain.attach_profile"
        ) from None
    if not 0.0 <= profile.threshold <= 1.0 or profile.prior_words < 0:
        raise DomainError(
            f"config.json's metadata.{METADATA_KEY}: threshold {profile.threshold} must lie in"
            f" [0, 1] and prior_words {profile.prior_words} must not be negative"
        )
    return profile


def _joined(words: AbstractSet[str]) -> str:
    """Sorted words joined by single spaces: one line of config.json, not one per word. No word
    holds whitespace (words come from ``str.split()``); the empty word (what is left of a
    token of edge punctuation only) sorts first and comes back from ``_split``."""
    return " ".join(sorted(words))


def _split(value: Any) -> frozenset[str]:
    if not isinstance(value, str):
        raise TypeError(f"word lists are strings of words separated by spaces, not {value!r:.40}")
    return frozenset(value.split(" ")) if value else frozenset()


def frequent_words(
    texts: Iterable[str], *, doc_share: float, split: Callable[[str], Iterable[str]] = word_set
) -> tuple[frozenset[str], int, int]:
    """The words (as ``split`` gives them) in at least ``doc_share`` of ``texts`` (and at least
    :data:`MIN_DOCUMENTS`), at most :data:`MAX_WORDS` of them, with the document count and the
    minimum used. Sources are split by ``quality.word_set``, as ``known_share`` sees them."""
    counts: Counter[str] = Counter()
    documents = 0
    for text in texts:
        documents += 1
        counts.update(set(split(text)))
    minimum = max(MIN_DOCUMENTS, math.ceil(doc_share * documents))
    kept = [word for word, n in counts.most_common(MAX_WORDS) if n >= minimum]
    return frozenset(kept), documents, minimum


def quantile(values: Sequence[float], q: float) -> float:
    """The value below which ``q`` of ``values`` lie (the lower one; no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_profile(
    train_pairs: Sequence[tuple[str, str]],
    valid_sources: Sequence[str],
    *,
    quantile_below: float = CALIBRATION_QUANTILE,
) -> DomainProfile:
    """The profile of a model trained on ``train_pairs`` (source, summary), its threshold set
    on ``valid_sources``: sources it was not trained on, from the same domain."""
    if not train_pairs or not valid_sources:
        raise ValueError(
            f"a domain profile needs training pairs and validation sources, got"
            f" {len(train_pairs)} and {len(valid_sources)}"
        )
    known, documents, known_min = frequent_words(
        (source for source, _ in train_pairs), doc_share=KNOWN_DOC_SHARE
    )
    style, _, style_min = frequent_words(
        (summary for _, summary in train_pairs), doc_share=SUMMARY_DOC_SHARE, split=words
    )
    draft = DomainProfile(known_words=known, summary_words=style, threshold=0.0)
    shares = [draft.known_share(word_set(source)) for source in valid_sources]
    threshold = quantile(shares, quantile_below)
    stats = {
        "training_documents": documents,
        "known_words": len(known),
        "known_min_documents": known_min,
        "summary_words": len(style),
        "summary_min_documents": style_min,
        "validation_documents": len(valid_sources),
        "threshold_quantile": quantile_below,
        "validation_known_share": {
            f"p{round(100 * q)}": round(quantile(shares, q), 4) for q in REPORTED_QUANTILES
        },
        "validation_flagged": round(sum(s < threshold for s in shares) / len(shares), 4),
    }
    return DomainProfile(
        known_words=known, summary_words=style, threshold=round(threshold, 6), stats=stats
    )


def attach_profile(directory: str | os.PathLike[str], profile: DomainProfile) -> None:
    """Save ``profile`` in the checkpoint in ``directory``: its config.json alone is rewritten
    (atomically, in ``save_checkpoint``'s JSON layout), the weights, the tokenizer and any
    other file there are left as they are. The checkpoint is loaded first, so a directory that
    is no checkpoint is refused before anything is written. This changes the model's
    fingerprint (it covers config.json): earlier outputs' rows are then not reused by --reuse."""
    load_checkpoint(directory)
    path = Path(directory) / CONFIG_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    config["metadata"] = {**config.get("metadata", {}), METADATA_KEY: profile.to_metadata()}
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
