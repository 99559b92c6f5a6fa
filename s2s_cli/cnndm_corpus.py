"""The CNN/DailyMail corpus (See et al. 2017's preprocessing) as training and evaluation JSONL.

Input is the shared subset (``../shared/data/cnndm-train-subset/``): JSONL records with
``article`` and ``highlights`` (one reference sentence per line), lower-cased and PTB-tokenized.
Empty rows and repeated articles are dropped (its SOURCE.md: 67 empty, 818 duplicates); sources are
cut to 400 words and targets to 100 words, as See et al. trained. The validation split is left
whole in ``valid.jsonl`` and two disjoint seeded samples are drawn from it, spread over the split:
``tune.jsonl`` (what training validates on and picks decoding settings with) and ``eval.jsonl``
(what the model is scored on, with its full references).
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from s2s_model.errors import S2SError
from s2s_model.evaluation import rouge, split_sentences

TEXT_FIELD = "article"
SUMMARY_FIELD = "highlights"
SOURCE_WORDS = 400
TARGET_WORDS = 100
LEAD_SENTENCES = 3
SAMPLE_SEED = 26
INFO_FILE = "corpus_info.json"
# PTB tokens that end a sentence, and closing quotes that stay with the sentence they close.


class CnndmError(S2SError, ValueError):
    """The corpus cannot be read; the message names the file and the fix."""


@dataclass(frozen=True)
class Article:
    """One story: ``highlights`` holds one reference sentence per line."""

    id: str
    article: str
    highlights: str


def read_articles(path: str | os.PathLike[str]) -> list[Article]:
    """Records of a ``.jsonl``, ``.jsonl.gz`` or ``.jsonl.xz`` file (fields id, article,
    highlights)."""
    file = Path(path)
    opener: Any = lzma.open if file.name.endswith(".xz") else gzip.open
    if not file.name.endswith((".xz", ".gz")):
        opener = open
    try:
        with opener(file, "rt", encoding="utf-8") as handle:
            return [_article(json.loads(line), file, n) for n, line in enumerate(handle, 1)]
    except (OSError, EOFError, json.JSONDecodeError) as err:
        raise CnndmError(f"{file}: cannot be read as CNN/DM JSONL ({err})") from None


def _article(record: Any, file: Path, number: int) -> Article:
    try:
        return Article(str(record["id"]), record["article"] or "", record["highlights"] or "")
    except (KeyError, TypeError):
        raise CnndmError(
            f"{file}: record {number} lacks id/article/highlights; is it the CNN/DM subset?"
        ) from None


def clean(articles: Iterable[Article]) -> tuple[list[Article], dict[str, int]]:
    """The articles with text on both sides, each article text once (the first kept), and the
    counts of those dropped."""
    kept: list[Article] = []
    seen: set[str] = set()
    dropped = {"empty": 0, "duplicate": 0}
    for item in articles:
        if not item.article.strip() or not item.highlights.strip():
            dropped["empty"] += 1
        elif item.article in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(item.article)
            kept.append(item)
    return kept, dropped


def cut_words(text: str, limit: int) -> str:
    """The first ``limit`` words of ``text``, its line breaks kept."""
    lines, left = [], limit
    for line in text.splitlines():
        words = line.split()[:left]
        if words:
            lines.append(" ".join(words))
        left -= len(words)
        if left <= 0:
            break
    return "\n".join(lines)


def lead(text: str, n: int = LEAD_SENTENCES) -> str:
    """The first ``n`` sentences of ``text``, one per line (See et al.'s lead-3 baseline)."""
    return "\n".join(split_sentences(text)[:n])


def one_sentence_per_line(text: str) -> str:
    """``text`` with its sentences on lines of their own, for ROUGE-Lsum."""
    return "\n".join(split_sentences(text))


def disjoint_samples(
    rows: Sequence[Article], sizes: Sequence[int], *, seed: int = SAMPLE_SEED
) -> list[list[Article]]:
    """Disjoint seeded samples of ``rows`` of the given ``sizes``, each in the split's order."""
    if sum(sizes) > len(rows):
        raise CnndmError(f"samples of {list(sizes)} need {sum(sizes)} articles, have {len(rows)}")
    order = random.Random(seed).sample(range(len(rows)), sum(sizes))
    samples, start = [], 0
    for size in sizes:
        samples.append([rows[i] for i in sorted(order[start : start + size])])
        start += size
    return samples


def write_corpus(
    train_file: str | os.PathLike[str],
    valid_file: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    tune_docs: int,
    eval_docs: int,
) -> dict[str, Any]:
    """Write ``train.jsonl`` (cut), ``valid.jsonl``, ``tune.jsonl`` (cut) and ``eval.jsonl`` (full
    references) with fields id, article, highlights, and ``corpus_info.json``; return the info."""
    train, train_dropped = clean(read_articles(train_file))
    valid, valid_dropped = clean(read_articles(valid_file))
    tune, evaluation = disjoint_samples(valid, (tune_docs, eval_docs))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "train.jsonl", (_cut(a) for a in train))
    _write(out / "valid.jsonl", valid)
    _write(out / "tune.jsonl", (_cut(a) for a in tune))
    _write(out / "eval.jsonl", evaluation)
    info = {
        "inputs": [str(train_file), str(valid_file)],
        "dropped": {"train": train_dropped, "valid": valid_dropped},
        "records": {"train": len(train), "valid": len(valid)},
        "samples": {"tune": len(tune), "eval": len(evaluation), "seed": SAMPLE_SEED},
        "cut_words": {"source": SOURCE_WORDS, "target": TARGET_WORDS},
        "text_field": TEXT_FIELD,
        "summary_field": SUMMARY_FIELD,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _cut(item: Article) -> Article:
    return Article(
        item.id, cut_words(item.article, SOURCE_WORDS), cut_words(item.highlights, TARGET_WORDS)
    )


def _write(path: Path, rows: Iterable[Article]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")


def score(rows: Sequence[Article], predictions: Sequence[str]) -> dict[str, dict[str, float]]:
    """ROUGE F1 x 100 (``s2s_model.evaluation.rouge``) of ``predictions`` and of lead-3 against
    the full references of ``rows``, every text one sentence per line for ROUGE-Lsum."""

    references = [item.highlights for item in rows]
    systems = {
        "model": [one_sentence_per_line(text) for text in predictions],
        "lead-3": [lead(item.article) for item in rows],
    }
    return {name: rouge(references, texts).to_dict() for name, texts in systems.items()}
