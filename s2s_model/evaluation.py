"""ROUGE evaluation and the lead-N baseline, in pure Python.

Scores come from Google's ``rouge-score`` (the package the summarization literature reports with):
F1 of ROUGE-1, ROUGE-2, ROUGE-L and summary-level ROUGE-Lsum, Porter-stemmed, averaged over
documents and multiplied by 100. ``rougeLsum`` needs one sentence per line; summaries are split
into sentences here with a small rule (:func:`split_sentences`) because ``rouge-score``'s own
splitter needs NLTK data files that a fresh machine does not have.

The lead-N baseline takes the first N whitespace words of each source. N is chosen on the file
being evaluated (the N with the best mean ROUGE-L F1), so the baseline is an upper bound for any
fixed N: a model has to beat the best truncation, not a guessed one.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rouge_score import rouge_scorer, tokenizers

from s2s_model.quality import rates

if TYPE_CHECKING:
    from s2s_model.config import DecodeConfig
    from s2s_model.domain import DomainProfile
    from s2s_model.summarizer import Summarizer

logger = logging.getLogger(__name__)

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# Documents summarized between two progress reports of ``summarize_all``.
PROGRESS_CHUNK = 128
# (documents done, documents in all, seconds so far)
Progress = Callable[[int, int, float], None]
DEFAULT_MAX_LEAD_WORDS = 100
# A sentence ends at a word ending in . ! or ? (optionally followed by a closing quote or
# bracket) when the next word starts with an upper-case letter, a digit or an opening quote; and,
# in tokenized text (CNN/DailyMail as See et al. prepared it, lower-cased), only at a standalone
# . ! ? whatever follows, closing tokens kept with it. A synopsis is one sentence anyway.
_ATTACHED_END = re.compile(r"[.!?][\"')\]]?$")
_NEXT_STARTS = re.compile(r"^[\"'(\[]?[A-Z0-9]")
_TOKEN_ENDS = frozenset({".", "!", "?"})
_TOKEN_CLOSERS = frozenset({"''", "'", ")", "-rrb-"})


@dataclass(frozen=True)
class RougeScores:
    """Mean F1 x 100 over ``n_docs`` documents."""

    rouge1: float
    rouge2: float
    rougeL: float
    rougeLsum: float
    n_docs: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LeadBaseline:
    """The best lead-N baseline on a file: N, its scores, and mean ROUGE-L F1 for every N tried."""

    n: int
    scores: RougeScores
    rougeL_by_n: dict[int, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "scores": self.scores.to_dict(),
            "rougeL_by_n": {str(k): round(v, 4) for k, v in self.rougeL_by_n.items()},
        }


@dataclass(frozen=True)
class EvaluationReport:
    """Everything ``s2s evaluate`` prints: system ROUGE, best lead-N, lengths and speed, and the
    quality rates (``quality.rates``) of the system and of the references, in %."""

    system: RougeScores
    lead: LeadBaseline | None
    mean_words: dict[str, float]
    docs_per_second: float | None = None
    seconds: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    quality: dict[str, dict[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_docs": self.system.n_docs,
            "system": self.system.to_dict(),
            "lead": None if self.lead is None else self.lead.to_dict(),
            "mean_words": self.mean_words,
            "docs_per_second": self.docs_per_second,
            "seconds": self.seconds,
            "quality": self.quality,
            **self.extra,
        }


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, words joined by single spaces: at newlines, after a word
    ending in . ! ? before a capital or digit, and after a standalone . ! ? (tokenized text)."""
    sentences: list[str] = []
    for line in text.splitlines():
        sentences.extend(_line_sentences(line.split()))
    return sentences


def _line_sentences(words: list[str]) -> list[str]:
    """One line's sentences; a line holding a standalone . ! ? is tokenized text, where a word
    ending in a period is an abbreviation ("oct. 13") and only the standalone ones end sentences."""
    tokenized = not _TOKEN_ENDS.isdisjoint(words)
    sentences: list[str] = []
    current: list[str] = []
    token_ended = attached_ended = False
    for word in words:
        if current and (
            (token_ended and word not in _TOKEN_CLOSERS)
            or (attached_ended and _NEXT_STARTS.match(word))
        ):
            sentences.append(" ".join(current))
            current, token_ended = [], False
        current.append(word)
        token_ended = token_ended or word in _TOKEN_ENDS
        attached_ended = not tokenized and bool(_ATTACHED_END.search(word))
    if current:
        sentences.append(" ".join(current))
    return sentences


def _one_sentence_per_line(text: str) -> str:
    return "\n".join(split_sentences(text))


def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(references: Sequence[str], predictions: Sequence[str]) -> RougeScores:
    """Mean ROUGE F1 x 100 of ``predictions`` against ``references`` (same length, same order)."""
    if len(references) != len(predictions):
        raise ValueError(
            f"{len(references)} references but {len(predictions)} predictions: they must pair up"
        )
    if not references:
        raise ValueError("no documents to score")
    scorer = _scorer()
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for reference, prediction in zip(references, predictions, strict=True):
        scores = scorer.score(_one_sentence_per_line(reference), _one_sentence_per_line(prediction))
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    n = len(references)
    means = {name: 100.0 * total / n for name, total in totals.items()}
    return RougeScores(n_docs=n, **means)


def lead_words(text: str, n: int) -> str:
    """The first ``n`` whitespace-separated words of ``text``."""
    return " ".join(text.split()[:n])


def _prefix_lcs(prediction: Sequence[str], reference: Sequence[str]) -> list[int]:
    """LCS length of ``prediction[:i]`` with ``reference``, for i = 0 .. len(prediction)."""
    row = [0] * (len(reference) + 1)
    out = [0]
    for token in prediction:
        previous_diagonal = 0
        for j, ref_token in enumerate(reference, start=1):
            above = row[j]
            row[j] = previous_diagonal + 1 if token == ref_token else max(above, row[j - 1])
            previous_diagonal = above
        out.append(row[-1])
    return out


def _lead_rouge_l_curve(
    source: str, reference: str, max_n: int, tokenizer: tokenizers.DefaultTokenizer
) -> list[float]:
    """ROUGE-L F1 of lead-N against ``reference`` for N = 1 .. max_n (same as rouge-score)."""
    ref_tokens = tokenizer.tokenize(reference)
    word_tokens = [tokenizer.tokenize(word) for word in source.split()[:max_n]]
    flat = [token for tokens in word_tokens for token in tokens]
    lcs = _prefix_lcs(flat, ref_tokens)
    curve = []
    length = 0
    for n in range(1, max_n + 1):
        if n <= len(word_tokens):
            length += len(word_tokens[n - 1])
        denominator = length + len(ref_tokens)
        # F1 of P = lcs/len(pred) and R = lcs/len(ref) is 2 * lcs / (len(pred) + len(ref)).
        curve.append(2.0 * lcs[length] / denominator if lcs[length] and denominator else 0.0)
    return curve


def best_lead_baseline(
    sources: Sequence[str], references: Sequence[str], *, max_n: int = DEFAULT_MAX_LEAD_WORDS
) -> LeadBaseline:
    """Lead-N with the N in 1..max_n that maximises mean ROUGE-L F1 on these documents.

    The smallest such N wins ties. The curve is computed with rouge-score's own tokenizer and
    stemmer and an exact LCS, then the chosen N is scored again with rouge-score itself.
    """
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} sources but {len(references)} references")
    if not sources:
        raise ValueError("no documents to score")
    if max_n < 1:
        raise ValueError(f"max_n={max_n} must be at least 1")
    tokenizer = tokenizers.DefaultTokenizer(use_stemmer=True)
    totals = [0.0] * max_n
    for source, reference in zip(sources, references, strict=True):
        for i, value in enumerate(_lead_rouge_l_curve(source, reference, max_n, tokenizer)):
            totals[i] += value
    by_n = {n: 100.0 * totals[n - 1] / len(sources) for n in range(1, max_n + 1)}
    best_n = max(by_n, key=lambda n: (by_n[n], -n))
    scores = rouge(references, [lead_words(source, best_n) for source in sources])
    return LeadBaseline(n=best_n, scores=scores, rougeL_by_n=by_n)


def mean_words(texts: Sequence[str]) -> float:
    """Mean whitespace word count."""
    return sum(len(text.split()) for text in texts) / max(1, len(texts))


def evaluate_predictions(
    references: Sequence[str],
    predictions: Sequence[str],
    *,
    sources: Sequence[str] | None = None,
    seconds: float | None = None,
    max_lead_words: int = DEFAULT_MAX_LEAD_WORDS,
    known_words: set[str] | None = None,
    domain: DomainProfile | None = None,
) -> EvaluationReport:
    """Score ``predictions``; with ``sources`` also the best lead-N baseline, source length and
    the quality rates (with ``known_words``, the words of the training corpus, also the share of
    summaries holding a word in neither the source nor that corpus: a glued or cut copy; with
    the model's ``domain`` (``Summarizer.domain``), ``novel_word`` as the pipeline's rows count
    it and the share of sources flagged ``out_of_domain``)."""
    system = rouge(references, predictions)
    lengths = {"reference": mean_words(references), "prediction": mean_words(predictions)}
    lead = None
    quality = None
    if sources is not None:
        quality = {
            "system": rates(predictions, sources, known_words, domain=domain),
            "reference": rates(references, sources, known_words, domain=domain),
        }
        lead = best_lead_baseline(sources, references, max_n=max_lead_words)
        lengths["source"] = mean_words(sources)
        lengths["lead"] = mean_words([lead_words(source, lead.n) for source in sources])
    speed = len(references) / seconds if seconds else None
    return EvaluationReport(
        system=system,
        lead=lead,
        mean_words=lengths,
        docs_per_second=speed,
        seconds=seconds,
        quality=quality,
    )


def summarize_all(
    summarizer: Summarizer,
    texts: Sequence[str],
    decode: DecodeConfig | None = None,
    *,
    on_progress: Progress | None = None,
) -> tuple[list[str], float]:
    """Summaries of ``texts`` (same order) and the wall-clock seconds the decoding took.

    With ``on_progress``, the texts are summarized ``PROGRESS_CHUNK`` at a time and
    ``on_progress(done, total, seconds)`` is called after each chunk (a summary does not depend
    on the documents batched with it, so the summaries are the same)."""
    started = time.perf_counter()
    summaries: list[str] = []
    step = PROGRESS_CHUNK if on_progress else max(1, len(texts))
    for first in range(0, len(texts), step):
        chunk = summarizer.summarize(list(texts[first : first + step]), decode)
        summaries += [summary.text for summary in chunk]
        if on_progress:
            on_progress(len(summaries), len(texts), time.perf_counter() - started)
    seconds = time.perf_counter() - started
    logger.info("summarized %d documents in %.1f s", len(texts), seconds)
    return summaries, seconds


def format_report(report: EvaluationReport, *, system_name: str = "model") -> str:
    """A plain-text table of the report: one row per system, then lengths and speed."""
    header = f"{'system':<16}{'R-1':>8}{'R-2':>8}{'R-L':>8}{'R-Lsum':>8}{'words':>8}"
    rows = [header, "-" * len(header)]
    rows.append(_row(system_name, report.system, report.mean_words["prediction"]))
    if report.lead is not None:
        rows.append(_row(f"lead-{report.lead.n}", report.lead.scores, report.mean_words["lead"]))
    rows.append(f"{'reference':<16}{'':>32}{report.mean_words['reference']:>8.2f}")
    rows.append("")
    rows.append(f"documents: {report.system.n_docs}")
    if "source" in report.mean_words:
        rows.append(f"mean source words: {report.mean_words['source']:.1f}")
    if report.lead is not None:
        margin_l = report.system.rougeL - report.lead.scores.rougeL
        margin_lsum = report.system.rougeLsum - report.lead.scores.rougeLsum
        rows.append(f"over best lead-N: R-L {margin_l:+.2f}, R-Lsum {margin_lsum:+.2f}")
    if report.quality is not None:
        rows += _quality_rows(report.quality, system_name)
    if report.docs_per_second is not None:
        rows.append(f"speed: {report.docs_per_second:.1f} docs/s ({report.seconds:.1f} s)")
    return "\n".join(rows)


QUALITY_LABELS = {
    "unknown_word": "glued or cut word (in neither source nor training corpus)",
    "repeat": "a content word repeated",
    "novel_word": "most words novel (not in the source, nor house style)",
    "novel_words": "mean share of words not in the source",
    "out_of_domain": "source far from the model's training domain",
}


def _quality_rows(quality: dict[str, dict[str, float]], system_name: str) -> list[str]:
    """The quality rates (% of summaries) of the system beside the references'."""
    rows = ["", f"{'quality (% of summaries)':<60}{system_name:>12}{'reference':>12}"]
    for key, label in QUALITY_LABELS.items():
        if key in quality["system"]:
            rows.append(
                f"{label:<60}{quality['system'][key]:>12.2f}{quality['reference'][key]:>12.2f}"
            )
    return rows


def _row(name: str, scores: RougeScores, words: float) -> str:
    return (
        f"{name:<16}{scores.rouge1:>8.2f}{scores.rouge2:>8.2f}{scores.rougeL:>8.2f}"
        f"{scores.rougeLsum:>8.2f}{words:>8.2f}"
    )
