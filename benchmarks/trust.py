"""Can a user trust the summaries? Glued or cut words, stutter, and ROUGE-L on held-out Debian data.

    python -m benchmarks.trust [--split valid|test] [--model DIR] [--decode '{"beam_size": 4}']
        [--examples 8] [--docs N] [--json_out FILE]

For a model and the bundled model's own held-out split (split by source package; built from
``../shared/data/debian-descriptions`` by ``s2s corpus debian`` into ``build/debian-synopsis/data``
when missing), prints:

- ROUGE-L (rouge-score, stemmed, as ``s2s evaluate``);
- ``unknown_word``: % of summaries holding a word found neither in the source nor anywhere in the
  training corpus (descriptions and synopses): glued or cut copies such as "x8664";
- ``repeat``: % of summaries repeating a content word (``s2s_model.quality.repeated_words``);
- the same two rates for the reference synopses, and examples of each failure.

It also reports the tokenizer round trip: % of sources whose ``decode(encode(text))`` differs
from the text with its whitespace collapsed, and the characters lost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from s2s_model import DecodeConfig, Summarizer
from s2s_model.evaluation import rouge
from s2s_model.quality import rates, repeated_words, unknown_words, words

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "build" / "debian-synopsis" / "data"
SHARED_CORPUS = ROOT.parent / "shared/data/debian-descriptions/debian_descriptions.jsonl.gz"
TEXT, SUMMARY = "description", "synopsis"


def split_file(split: str) -> Path:
    """The bundled model's ``split`` (train, valid, test), built from the shared corpus once."""
    path = DATA / f"{split}.jsonl"
    if not path.exists():
        if not SHARED_CORPUS.exists():
            raise SystemExit(f"no {path} and no {SHARED_CORPUS} to build it from")
        subprocess.run(
            [str(Path(sys.executable).with_name("s2s")), "corpus", "debian", str(DATA),
             "--from_jsonl", str(SHARED_CORPUS)],
            check=True, capture_output=True,
        )  # fmt: skip
    return path


def read_pairs(split: str) -> tuple[list[str], list[str]]:
    """(sources, references) of a split."""
    sources, references = [], []
    with split_file(split).open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            sources.append(record[TEXT])
            references.append(record[SUMMARY])
    return sources, references


@cache
def training_vocabulary() -> frozenset[str]:
    """Every word (``quality.words``) of the training split's descriptions and synopses."""
    sources, references = read_pairs("train")
    vocabulary: set[str] = set()
    for text in sources + references:
        vocabulary.update(words(text))
    return frozenset(vocabulary)


def round_trip(summarizer: Summarizer, texts: list[str]) -> dict[str, Any]:
    """Share of texts the tokenizer does not give back (whitespace collapsed), and lost chars."""
    lost: Counter[str] = Counter()
    changed = 0
    for text in texts:
        expected = " ".join(text.split())
        got = summarizer.tokenizer.decode(summarizer.tokenizer.encode(text))
        if got != expected:
            changed += 1
            lost.update(set(expected) - set(got))
    return {
        "changed_pct": 100.0 * changed / max(1, len(texts)),
        "lost_chars": dict(lost.most_common(20)),
    }


def measure(
    summarizer: Summarizer,
    sources: list[str],
    references: list[str],
    decode: DecodeConfig,
    examples: int,
) -> dict[str, Any]:
    """Decode ``sources`` and score them: ROUGE-L, the failure rates, examples."""
    started = time.perf_counter()
    predictions = [s.text for s in summarizer.summarize(sources, decode)]
    seconds = time.perf_counter() - started
    known = set(training_vocabulary())
    unknown_examples: list[dict[str, Any]] = []
    repeat_examples: list[dict[str, Any]] = []
    for pred, src, ref in zip(predictions, sources, references, strict=True):
        bad = unknown_words(pred, src, known)
        if bad and len(unknown_examples) < examples:
            unknown_examples.append({"model": pred, "reference": ref, "words": bad})
        again = repeated_words(pred)
        if again and len(repeat_examples) < examples:
            repeat_examples.append({"model": pred, "reference": ref, "words": again})
    return {
        "docs": len(sources),
        "decode": decode.to_dict(),
        "rougeL": rouge(references, predictions).rougeL,
        "model": rates(predictions, sources, known),
        "reference": rates(references, sources, known),
        "seconds": seconds,
        "unknown_examples": unknown_examples,
        "repeat_examples": repeat_examples,
        "predictions": predictions,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
    parser.add_argument("--decode", default="{}", help="JSON of DecodeConfig fields to override")
    parser.add_argument("--docs", type=int, default=0, help="first N documents only (0: all)")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json_out", type=Path, default=None)
    args = parser.parse_args(argv)

    summarizer = Summarizer.load(args.model, threads=args.threads)
    sources, references = read_pairs(args.split)
    if args.docs:
        sources, references = sources[: args.docs], references[: args.docs]
    decode = DecodeConfig.from_dict({**summarizer.decode.to_dict(), **json.loads(args.decode)})
    result = measure(summarizer, sources, references, decode, args.examples)
    result["round_trip"] = round_trip(summarizer, sources + references)
    model, ref = result["model"], result["reference"]
    print(f"{args.split}: {result['docs']} documents, {result['seconds']:.1f} s")
    print(f"ROUGE-L {result['rougeL']:.2f}")
    print(f"unknown (glued/cut) word: model {model['unknown_word']:.2f}%  "
          f"reference {ref['unknown_word']:.2f}%")  # fmt: skip
    print(f"repeated content word:    model {model['repeat']:.2f}%  reference {ref['repeat']:.2f}%")
    print(f"tokenizer round trip changes {result['round_trip']['changed_pct']:.2f}% of texts; "
          f"lost: {result['round_trip']['lost_chars']}")  # fmt: skip
    for name in ("unknown_examples", "repeat_examples"):
        print(f"\n{name}:")
        for example in result[name]:
            print(f"  {example['model']!r} / {example['reference']!r}  {example['words']}")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
