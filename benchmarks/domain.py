"""Issue 24: the ``out_of_domain`` flag and the new ``novel_word`` rule on the bundled model.

    python -m benchmarks.domain [--attach] [--test_outputs N] [--news_outputs N] [--repeats N]

``--attach`` first computes the bundled model's domain profile (``s2s_model.domain``) from its
own training split (known words, house-style summary words) and validation split (threshold)
and saves it in its config.json; the weights and tokenizer files must come back byte for byte.

Then it measures, with the profile as saved:

- the share of documents flagged ``out_of_domain``: the Debian validation split (where the
  threshold was set, so about 2% by construction), the **test split** (held out; target: at
  most 5%), the **CNN/DailyMail validation subset** (``../shared/data/cnndm-train-subset``,
  4,368 articles; target: at least 90%), its articles cut to their first 60 and 150 words
  (newswire-length stand-ins: no Reuters text is at hand), and lines of random bytes;
- the same with two word-piece signals calibrated the same way (pieces per word, the share of
  single-piece words), which the profile does not use;
- how the profile's settings were chosen: a small grid on the validation split and a seeded
  sample of CNN/DailyMail *training* articles, never on the data of the targets;
- ``novel_word`` before (most words not in the source) and after (most words in neither the
  source nor the model's house-style summary words), on the human references of the validation
  and test splits and on the model's own summaries of test documents and of news articles;
- the host cost of ``quality.assess`` and of a row (``pipeline.transforms.summary_row``) with
  and without the profile: in process, interleaved, best of ``--repeats``.

Writes benchmarks/results/<date>/domain.json (benchmarks/sitting.py).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import lzma
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from benchmarks.sitting import machine, result_stem, write_json
from benchmarks.trust import read_pairs
from pipeline.sources import Document
from pipeline.transforms import is_blank, summary_row
from s2s_model import Summarizer, Summary
from s2s_model.bundled import BUNDLED_MODELS, DEFAULT_MODEL
from s2s_model.domain import (
    CALIBRATION_QUANTILE,
    PRIOR_WORDS,
    SUMMARY_DOC_SHARE,
    DomainProfile,
    attach_profile,
    build_profile,
    frequent_words,
    quantile,
)
from s2s_model.quality import FLAGS, Quality, _repeated, _share, assess, word_set, words
from s2s_model.tokenizer import TextTokenizer

ROOT = Path(__file__).resolve().parents[1]
CNNDM = ROOT.parent / "shared" / "data" / "cnndm-train-subset"
CNNDM_VALID = CNNDM / "cnndm_val_subset.jsonl.gz"
CNNDM_TRAIN = CNNDM / "cnndm_train_subset.jsonl.xz"
SELECTION_ARTICLES = 2000
RANDOM_BYTES = 100_000
SEED = 0
WORD_START = "\u2581"  # SentencePiece's mark of a piece that starts a word


def _articles(path: Path, limit: int | None = None) -> list[str]:
    opener: Callable[..., Any] = lzma.open if path.suffix == ".xz" else gzip.open
    with opener(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line)["article"] for line in handle]
    rows = [text for text in rows if text.strip()]
    if limit is not None:
        random.Random(SEED).shuffle(rows)
        rows = rows[:limit]
    return rows


def _first_words(texts: Sequence[str], n: int) -> list[str]:
    return [" ".join(text.split()[:n]) for text in texts]


def random_lines() -> list[str]:
    """100 kB of seeded random bytes as the job reads them (pipeline/sources.py): a document
    per b"\\n"-ended line, UTF-8 with U+FFFD for what is not, blank ones dead-lettered."""
    data = random.Random(SEED).randbytes(RANDOM_BYTES)
    lines = [line.decode("utf-8", errors="replace") for line in data.split(b"\n")]
    return [line for line in lines if not is_blank(line)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def attach() -> dict[str, Any]:
    """Compute the bundled model's profile from its splits and save it; check the weights and
    tokenizer files are unchanged."""
    train_sources, train_summaries = read_pairs("train")
    valid_sources, _ = read_pairs("valid")
    unchanged = ("model.safetensors", "tokenizer.model")
    model = BUNDLED_MODELS[DEFAULT_MODEL].directory
    before = {name: _sha256(model / name) for name in unchanged}
    profile = build_profile(list(zip(train_sources, train_summaries, strict=True)), valid_sources)
    attach_profile(model, profile)
    after = {name: _sha256(model / name) for name in unchanged}
    if before != after:
        raise SystemExit(f"attaching the profile changed {unchanged}: {before} -> {after}")
    return {"stats": dict(profile.stats), "threshold": profile.threshold}


def flagged(profile: DomainProfile, texts: Sequence[str]) -> dict[str, Any]:
    shares = [profile.known_share(word_set(text)) for text in texts]
    out = sum(share < profile.threshold for share in shares)
    return {
        "documents": len(texts),
        "flagged": out,
        "flagged_pct": round(100 * out / len(texts), 2),
        "known_share_p50": round(quantile(shares, 0.5), 4),
    }


def _piece_signals(pieces: spm.SentencePieceProcessor, text: str) -> tuple[float, float]:
    """(pieces per word, share of words that are one piece) of ``text``'s first 400 pieces."""
    ids = pieces.encode(text, out_type=int)[:400]
    starts = [pieces.id_to_piece(i).startswith(WORD_START) for i in ids]
    word_count = max(1, sum(starts))
    single = sum(
        1 for k, start in enumerate(starts) if start and (k + 1 == len(ids) or starts[k + 1])
    )
    return len(ids) / word_count, single / word_count


def piece_alternatives(
    tokenizer: TextTokenizer, sets: dict[str, list[str]], calibrate: str
) -> dict[str, Any]:
    """Two word-piece signals, each with its threshold at the calibration quantile of the
    validation split (pieces per word: above it is flagged; single-piece share: below)."""
    pieces = spm.SentencePieceProcessor()
    pieces.LoadFromSerializedProto(tokenizer.to_bytes())
    signals = {name: [_piece_signals(pieces, t) for t in texts] for name, texts in sets.items()}
    ppw_limit = quantile([-s[0] for s in signals[calibrate]], CALIBRATION_QUANTILE)
    single_limit = quantile([s[1] for s in signals[calibrate]], CALIBRATION_QUANTILE)
    return {
        "pieces_per_word": {
            name: round(100 * sum(-s[0] < ppw_limit for s in v) / len(v), 2)
            for name, v in signals.items()
        },
        "single_piece_word_share": {
            name: round(100 * sum(s[1] < single_limit for s in v) / len(v), 2)
            for name, v in signals.items()
        },
        "threshold_quantile": CALIBRATION_QUANTILE,
    }


def selection_grid(
    train_sources: Sequence[str], valid: Sequence[str], news: Sequence[str]
) -> list[dict[str, Any]]:
    """The settings tried before choosing: known-word document share x prior x quantile, on
    the validation split and a sample of CNN/DailyMail training articles (whole, first 60 words)."""
    counts: Counter[str] = Counter()
    for text in train_sources:
        counts.update(word_set(text))
    news60 = _first_words(news, 60)
    rows = []
    for min_docs in (10, 20, 40):
        known = frozenset(word for word, n in counts.items() if n >= min_docs)
        for prior in (0.0, PRIOR_WORDS):
            draft = DomainProfile(known, frozenset(), 0.0, prior)
            shares = [draft.known_share(word_set(t)) for t in valid]
            for q in (0.02, 0.03):
                profile = DomainProfile(known, frozenset(), quantile(shares, q), prior)
                rows.append({
                    "known_min_documents": min_docs, "prior_words": prior, "quantile": q,
                    "news_train_flagged_pct": flagged(profile, news)["flagged_pct"],
                    "news_train_first60_flagged_pct": flagged(profile, news60)["flagged_pct"],
                })  # fmt: skip
    return rows


def novel_word_rates(
    profile: DomainProfile, summaries: Sequence[str], sources: Sequence[str]
) -> dict[str, float]:
    """% of summaries flagged novel_word by the old rule (no profile) and the new one."""
    n = max(1, len(summaries))
    before = sum(
        "novel_word" in assess(s, t).flags for s, t in zip(summaries, sources, strict=True)
    )
    after = sum(
        "novel_word" in assess(s, t, domain=profile).flags
        for s, t in zip(summaries, sources, strict=True)
    )
    return {
        "documents": len(summaries),
        "before_pct": round(100 * before / n, 2),
        "after_pct": round(100 * after / n, 2),
    }


def novel_word_alternatives(
    train_summaries: Sequence[str], splits: dict[str, tuple[list[str], list[str]]]
) -> list[dict[str, Any]]:
    """% of human references flagged novel_word by other rules: a higher share without style
    words, and style words from fewer or more training summaries."""
    rules: list[tuple[str, float, frozenset[str]]] = [
        (f"source only, more than {limit:.0%} novel", limit, frozenset()) for limit in (0.5, 0.75)
    ]
    for share in (1 / 600, SUMMARY_DOC_SHARE):
        style, _, minimum = frequent_words(train_summaries, doc_share=share, split=words)
        rules.append((f"style words in >= {minimum} training summaries", 0.5, style))
    rows = []
    for name, limit, style in rules:
        profile = DomainProfile(frozenset(), style, 0.0)
        row: dict[str, Any] = {"rule": name, "style_words": len(style)}
        for split, (refs, sources) in splits.items():
            hits = sum(
                "novel_word" in assess(r, t, domain=profile, max_novel_share=limit).flags
                for r, t in zip(refs, sources, strict=True)
            )
            row[f"references_{split}_pct"] = round(100 * hits / len(refs), 2)
        rows.append(row)
    return rows


def decode(summarizer: Summarizer, texts: Sequence[str]) -> tuple[list[str], float]:
    started = time.perf_counter()
    summaries = summarizer.summarize(list(texts))
    return [s.text for s in summaries], time.perf_counter() - started


# -- host cost ----------------------------------------------------------------------------------


def assess_before(
    summary: str, source: str, *, truncated: bool = False, forced_end: bool = False
) -> Quality:
    """``quality.assess`` as it was before issue 24, line for line."""
    summary_words = words(summary)
    share = _share(summary_words, word_set(source))
    repeats = len(_repeated(summary_words))
    flags = [
        name
        for name, on in zip(
            FLAGS[:4], (share > 0.5, repeats > 0, truncated, forced_end), strict=True
        )
        if on
    ]
    return Quality(novel_words=round(share, 4), repeated_words=repeats, flags=flags)


def _best_of(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each function, the functions run in turn (interleaved)."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def host_cost(
    summarizer: Summarizer, profile: DomainProfile, sources: Sequence[str],
    summaries: Sequence[str], repeats: int,
) -> dict[str, Any]:  # fmt: skip
    """Microseconds per document: assess before / after (with and without a profile), and
    tokenizing + building the row without / with the profile."""
    pairs = list(zip(summaries, sources, strict=True))
    docs = [Document(f"d{i}", "bench", text) for i, text in enumerate(sources)]
    results = [
        Summary(text=s, score=-0.5, tokens=[5] * 6, n_best=[(s, -0.5)], src_tokens=50,
                truncated=False)
        for s in summaries
    ]  # fmt: skip

    def rows(domain: DomainProfile | None) -> Callable[[], object]:
        def build() -> object:
            for doc, result in zip(docs, results, strict=True):
                summarizer.read(doc.text)  # the tokenizing the model handler does anyway
                summary_row(doc, result, "m", with_n_best=False, reuse_key="k", domain=domain)
            return None

        return build

    timed = _best_of(
        {
            "assess_before": lambda: [assess_before(s, t) for s, t in pairs],
            "assess_no_profile": lambda: [assess(s, t) for s, t in pairs],
            "assess_profile": lambda: [assess(s, t, domain=profile) for s, t in pairs],
            "read_and_row_no_profile": rows(None),
            "read_and_row_profile": rows(profile),
        },
        repeats,
    )
    per_doc = {name: round(1e6 * seconds / len(pairs), 2) for name, seconds in timed.items()}
    return {
        "documents": len(pairs),
        "repeats": repeats,
        "us_per_doc_best": per_doc,
        "assess_profile_vs_before": round(per_doc["assess_profile"] / per_doc["assess_before"], 3),
        "row_profile_vs_no_profile": round(
            per_doc["read_and_row_profile"] / per_doc["read_and_row_no_profile"], 3
        ),
    }


# -- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--attach",
        action="store_true",
        help="compute the bundled model's profile and save it first",
    )
    parser.add_argument(
        "--test_outputs",
        type=int,
        default=1155,
        help="test documents the model summarizes (novel_word on outputs)",
    )
    parser.add_argument(
        "--news_outputs",
        type=int,
        default=200,
        help="CNN/DailyMail validation articles the model summarizes",
    )
    parser.add_argument("--repeats", type=int, default=7, help="best of N for the host cost")
    parser.add_argument("--name", default="domain", help="result file name (benchmarks/sitting)")
    args = parser.parse_args(argv)  # fmt: skip

    result: dict[str, Any] = {"machine": machine()}
    if args.attach:
        result["attached"] = attach()
    summarizer = Summarizer.load(threads=2)
    profile = summarizer.domain
    if profile is None:
        raise SystemExit("the bundled model has no domain profile: run with --attach")
    result["profile"] = {"threshold": profile.threshold, **profile.stats}
    result["fingerprint"] = summarizer.fingerprint

    train_sources, train_summaries = read_pairs("train")
    valid_sources, valid_refs = read_pairs("valid")
    test_sources, test_refs = read_pairs("test")
    news = _articles(CNNDM_VALID)
    sets = {
        "debian_valid (calibration)": valid_sources,
        "debian_test (held out)": test_sources,
        "cnndm_valid": news,
        "cnndm_valid_first150": _first_words(news, 150),
        "cnndm_valid_first60": _first_words(news, 60),
        "random_bytes_lines": random_lines(),
    }
    result["out_of_domain"] = {name: flagged(profile, texts) for name, texts in sets.items()}
    result["piece_signals"] = piece_alternatives(
        summarizer.tokenizer,
        {k: v for k, v in sets.items() if not k.startswith("random")},
        "debian_valid (calibration)",
    )
    result["selection"] = {
        "data": f"debian valid + {SELECTION_ARTICLES} CNN/DailyMail training articles (seed 0)",
        "grid": selection_grid(
            train_sources, valid_sources, _articles(CNNDM_TRAIN, SELECTION_ARTICLES)
        ),
    }
    novel: dict[str, Any] = {
        "references_valid": novel_word_rates(profile, valid_refs, valid_sources),
        "references_test": novel_word_rates(profile, test_refs, test_sources),
    }
    novel["alternatives"] = novel_word_alternatives(
        train_summaries,
        {"valid": (valid_refs, valid_sources), "test": (test_refs, test_sources)},
    )
    test_docs = test_sources[: args.test_outputs]
    outputs, seconds = decode(summarizer, test_docs)
    novel["outputs_test"] = {**novel_word_rates(profile, outputs, test_docs),
                             "decode_seconds": round(seconds, 1)}  # fmt: skip
    news_docs = _articles(CNNDM_VALID, args.news_outputs)
    news_out, seconds = decode(summarizer, news_docs)
    novel["outputs_cnndm_valid"] = {
        **novel_word_rates(profile, news_out, news_docs),
        "out_of_domain_pct": flagged(profile, news_docs)["flagged_pct"],
        "decode_seconds": round(seconds, 1),
        "examples": [
            {"summary": s, "article": a[:160]}
            for s, a in zip(news_out[:5], news_docs[:5], strict=True)
        ],
    }
    result["novel_word"] = novel
    result["host_cost"] = host_cost(
        summarizer, profile, test_sources + valid_sources, test_refs + valid_refs, args.repeats
    )
    result["machine"] = machine()
    path = write_json(result_stem(args.name).with_suffix(".json"), result)
    print(
        json.dumps({k: result[k] for k in ("out_of_domain", "novel_word", "host_cost")}, indent=1)
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
