"""Corpora for the pipeline tests, built at test time, with their expected accounting.

The dirty corpus holds one or more of every way a record can fail, next to clean records in
every format; ``DirtyCorpus`` says, per reason, how many dead letters a correct run produces, and
how many blank lines it skips (no records: apart from ``read``).
"""

from __future__ import annotations

import bz2
import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import make_texts

# Tests pass --max_doc_chars MAX_DOC_CHARS so that LONG_LINE_CHARS is cut while reading.
MAX_DOC_CHARS = 1000
LONG_LINE_CHARS = 5000


@dataclass
class DirtyCorpus:
    root: Path
    summarized: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    skipped_blank: int = 0
    replaced_ids: set[str] = field(default_factory=set)
    truncated_ids: set[str] = field(default_factory=set)

    @property
    def pattern(self) -> str:
        return str(self.root / "*")

    @property
    def read(self) -> int:
        return self.summarized + sum(self.reasons.values())

    @property
    def counts(self) -> dict[str, int]:
        """The manifest's ``counts`` of a fresh run over this corpus (nothing reused)."""
        return {
            "read": self.read,
            "summarized": self.summarized,
            "dead_lettered": sum(self.reasons.values()),
            "reused": 0,
            "decoded": self.summarized,
            "skipped_blank": self.skipped_blank,
        }


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def lines_before_gzip_breaks(path: Path) -> int:
    """Lines Python's gzip yields from a truncated file before it raises."""
    count = 0
    try:
        with gzip.open(path, "rb") as handle:
            for _ in handle:
                count += 1
    except EOFError:
        return count
    raise AssertionError(f"{path} is not truncated")


def build_dirty_corpus(root: Path) -> DirtyCorpus:
    """Every format and every failure; returns what a correct run must report."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = DirtyCorpus(root)
    _plain(corpus)
    _jsonl(corpus)
    _binary_lines(corpus)
    _compressed(corpus)
    _parquet(corpus)
    (root / "empty.txt").write_bytes(b"")  # no records at all
    return corpus


def _plain(corpus: DirtyCorpus) -> None:
    blank = ["", "   ", "\t"]  # no records: skipped
    # Records with no text: not blank (other characters than spaces and tabs), but nothing the
    # tokenizer reads.
    no_tokens = ["\x01\x02", "\u00a0\u200b"]
    write_lines(corpus.root / "plain.txt", make_texts(30, seed=11) + blank + no_tokens)
    corpus.summarized += 30
    corpus.skipped_blank += len(blank)
    corpus.reasons["empty_document"] += len(no_tokens)
    long_line = ("library " * LONG_LINE_CHARS)[:LONG_LINE_CHARS]
    write_lines(corpus.root / "long.txt", [long_line])
    corpus.summarized += 1
    corpus.truncated_ids.add(f"{corpus.root / 'long.txt'}:1")


def _jsonl(corpus: DirtyCorpus) -> None:
    good = [json.dumps({"id": f"r{i}", "text": t}) for i, t in enumerate(make_texts(10, seed=12))]
    surrogate = '{"id": "s1", "text": "bad \\ud800 surrogate package"}'
    bad = {
        "malformed_json": ["{not json", "[" * 1900 + "]" * 1900],
        "not_an_object": ["[1, 2]"],
        "missing_field": ['{"id": "m1"}', '{"id": "m2", "text": null}'],
        "wrong_field_type": ['{"id": "w1", "text": 42}', '{"text": ["a list"]}'],
        "empty_document": ['{"id": "e1", "text": "  "}'],
    }
    blank = ["", "  "]  # no records: skipped
    lines = good[:5] + [surrogate] + [line for lines in bad.values() for line in lines]
    lines += blank + good[5:]
    write_lines(corpus.root / "records.jsonl", lines)
    corpus.summarized += len(good) + 1
    corpus.skipped_blank += len(blank)
    corpus.replaced_ids.add("s1")
    for reason, lines_of_reason in bad.items():
        corpus.reasons[reason] += len(lines_of_reason)


def _binary_lines(corpus: DirtyCorpus) -> None:
    path = corpus.root / "latin1.txt"
    path.write_bytes(b"caf\xe9 package library server\nthe driver module\n\x00\x00 nul data\n")
    corpus.summarized += 3
    corpus.replaced_ids.add(f"{path}:1")


def _compressed(corpus: DirtyCorpus) -> None:
    with gzip.open(corpus.root / "zipped.txt.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(f"{t}\n" for t in make_texts(20, seed=13))
    with bz2.open(corpus.root / "bzipped.txt.bz2", "wt", encoding="utf-8") as handle:
        handle.writelines(f"{t}\n" for t in make_texts(10, seed=14))
    corpus.summarized += 30
    whole = gzip.compress("".join(f"{t}\n" for t in make_texts(400, seed=15)).encode())
    broken = corpus.root / "broken.txt.gz"
    broken.write_bytes(whole[: len(whole) * 6 // 10])
    corpus.summarized += lines_before_gzip_breaks(broken)
    corpus.reasons["unreadable_shard"] += 1


def _parquet(corpus: DirtyCorpus) -> None:
    texts: list[str | None] = list(make_texts(7, seed=16))
    texts.insert(3, None)
    table = pa.table({"id": [f"p{i}" for i in range(len(texts))], "text": texts})
    pq.write_table(table, corpus.root / "table.parquet")
    corpus.summarized += 7
    corpus.reasons["missing_field"] += 1


def summarize_args(inputs: list[str], output: Path, model: Path | str, *extra: str) -> list[str]:
    """argv for run(): small batches and short summaries keep the tests quick; the CPU, which
    the tests compare against (on a GPU machine 'auto' would take the GPU)."""
    argv = [arg for pattern in inputs for arg in ("--input", pattern)]
    return [
        *argv,
        "--output",
        str(output),
        "--model",
        str(model),
        "--max_len",
        "6",
        "--beam_size",
        "2",
        "--max_doc_chars",
        str(MAX_DOC_CHARS),
        "--device",
        "cpu",
        *extra,
    ]
