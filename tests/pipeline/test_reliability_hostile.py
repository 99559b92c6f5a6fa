"""A hostile corpus (tests/hostile_corpus.py) through the whole pipeline: the job finishes, every
record comes out exactly once with the outcome it must have, every dead letter says why, and a
50 MB line costs no memory beyond what a short line costs (``--max_doc_chars`` cuts it while
reading, long before the tokenizer)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.dead_letters import RAW_EXCERPT_CHARS, REASONS
from tests.hostile_corpus import (
    MAX_DOC_CHARS,
    SUMMARY,
    HostileCorpus,
    build_hostile_corpus,
    hostile_args,
)

# Less than one copy of the 50 MB line: reading it whole (bytes, then text) measured +88 MB.
ALLOWED_GROWTH_MB = 40
RUN_TIMEOUT_S = 600

MEASURE = """
import json, resource, sys
from pipeline.run import run
report = run(sys.argv[1:])
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps({"peak_mb": peak_mb, "counts": report.manifest["counts"]}))
"""


@dataclass
class Measured:
    corpus: HostileCorpus
    output: Path
    peak_mb: int


def _run_measured(corpus: HostileCorpus, output: Path, model: Path) -> Measured:
    """The job in a fresh process (as ``python -m pipeline`` runs it), with its peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *hostile_args(corpus, output, model)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Measured(corpus, output, json.loads(done.stdout.splitlines()[-1])["peak_mb"])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Measured:
    root = tmp_path_factory.mktemp("hostile")
    return _run_measured(build_hostile_corpus(root / "corpus"), root / "out", tiny_checkpoint)


def _outcomes(output: Path) -> tuple[list[dict], list[dict]]:
    return (
        pq.read_table(output / "summaries").to_pylist(),
        pq.read_table(output / "dead_letter").to_pylist(),
    )


def test_every_hostile_record_comes_out_once_with_its_outcome(hostile: Measured) -> None:
    rows, dead = _outcomes(hostile.output)
    got = Counter(
        [(r["source"], r["doc_id"], SUMMARY) for r in rows]
        + [(d["source"], d["doc_id"], d["reason"]) for d in dead]
    )
    expected: Counter[tuple[str, str, str]] = Counter()
    for record in hostile.corpus.records:
        choices = record.outcome.split("|")  # random bytes: summarized, or nothing readable
        outcome = next((o for o in choices if got[(record.source, record.doc_id, o)]), choices[0])
        expected[(record.source, record.doc_id, outcome)] += 1
    assert got - expected == Counter(), "records that should not be there (or twice)"
    assert expected - got == Counter(), "records lost or with the wrong outcome"
    manifest = json.loads((hostile.output / "_SUCCESS.json").read_text())
    assert manifest["counts"] == {
        "read": len(hostile.corpus.records),
        "summarized": len(rows),
        "dead_lettered": len(dead),
        "reused": 0,
        "decoded": len(rows),
        "skipped_blank": hostile.corpus.skipped_blank,
    }
    assert manifest["counters"]["records_read"] == len(hostile.corpus.records)


def test_every_dead_letter_says_why(hostile: Measured) -> None:
    _, dead = _outcomes(hostile.output)
    assert {d["reason"] for d in dead} <= set(REASONS)
    assert all(d["detail"].strip() for d in dead)
    assert all(len(d["raw"]) <= RAW_EXCERPT_CHARS for d in dead)
    nested = [d for d in dead if "RecursionError" in d["detail"]]
    assert len(nested) == 3, "the deeply nested JSON lines"


def test_long_lines_are_cut_and_flagged_and_bad_bytes_flagged(hostile: Measured) -> None:
    rows, _ = _outcomes(hostile.output)
    by_id = {r["doc_id"]: r for r in rows}
    corpus = hostile.corpus.root
    for name in ("huge-line.txt", "bomb.txt.gz"):
        assert by_id[f"{corpus / name}:1"]["truncated"]
        assert not by_id[f"{corpus / name}:2"]["truncated"]
    assert by_id[f"{corpus / 'scripts.txt'}:11"]["truncated"]  # 3 x --max_doc_chars of 'x'
    # A jsonl record of 1 MiB (500 x what a text line may hold) is read whole, cut and flagged.
    assert by_id["huge"]["truncated"] and not by_id["after-huge"]["truncated"]
    replaced = {i for i, r in by_id.items() if r["replaced_invalid_utf8"]}
    encodings = {f"{corpus / 'encodings.txt'}:{n}" for n in (1, 2, 3, 4)}
    assert encodings <= replaced
    assert not replaced & {f"{corpus / 'encodings.txt'}:{n}" for n in (5, 6, 7, 8)}
    assert all(r["src_tokens"] <= 400 and r["summary"] is not None for r in rows)
    assert MAX_DOC_CHARS * 4 < 50 * 1024 * 1024  # the huge line really is over the limit


@pytest.mark.slow
def test_a_50_mb_line_costs_no_more_memory_than_a_short_one(
    hostile: Measured, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    twin = build_hostile_corpus(tmp_path / "corpus", big_line_bytes=1000)
    short = _run_measured(twin, tmp_path / "out", tiny_checkpoint)
    assert hostile.corpus.big_line is not None and twin.big_line is not None
    assert hostile.corpus.big_line.stat().st_size > 50 * 1024 * 1024
    assert len(twin.records) == len(hostile.corpus.records)
    growth = hostile.peak_mb - short.peak_mb
    assert growth < ALLOWED_GROWTH_MB, f"peak RSS {short.peak_mb} MB -> {hostile.peak_mb} MB"
