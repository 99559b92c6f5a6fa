"""Every column of every row of the sample corpus, summarized by the bundled model, pinned.

The job's own work (tokenizing, batching, detokenizing, quality columns, Parquet) is rebuilt for
speed from time to time; none of that may change a row. ``examples_rows.jsonl`` holds the rows
that main gave before such work (sorted by doc_id; paths relative to the repository).
Scores are compared to 1e-5 (another CPU may round the last bits differently); everything
else exactly. After a change that is meant to change rows (a new bundled model, new quality
rules), regenerate the file and say why in the commit:

    python -m tests.pipeline.test_pipeline_rows_pinned --write
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.run import run

ROOT = Path(__file__).resolve().parents[2]
PINNED = Path(__file__).with_name("examples_rows.jsonl")
# n_best 2 so that the n_best column is pinned too (the best summary is the same as with 1).
FLAGS = ("--id_field", "id", "--n_best", "2")
SCORE_TOLERANCE = 1e-5


def summarize_examples(output: Path) -> list[dict[str, Any]]:
    """The rows of the sample corpus, sorted by doc_id, with repository-relative paths."""
    pattern = str(ROOT / "examples" / "debian" / "part-*")
    report = run(["--input", pattern, "--output", str(output), *FLAGS])
    assert report.dead_lettered == 0
    rows = pq.read_table(output / "summaries").to_pylist()
    for row in rows:
        row["source"] = str(Path(row["source"]).relative_to(ROOT))
        row["doc_id"] = row["doc_id"].removeprefix(f"{ROOT}/")
    return sorted(rows, key=lambda row: row["doc_id"])


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float):
        return math.isclose(got, want, rel_tol=SCORE_TOLERANCE, abs_tol=SCORE_TOLERANCE)
    if isinstance(want, list):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    return bool(got == want)


@pytest.mark.slow
def test_rows_of_the_sample_corpus_are_unchanged(tmp_path: Path) -> None:
    pinned = [json.loads(line) for line in PINNED.read_text(encoding="utf-8").splitlines()]
    rows = summarize_examples(tmp_path / "out")
    assert [row["doc_id"] for row in rows] == [row["doc_id"] for row in pinned]
    changed = [
        (want["doc_id"], column, got[column], want[column])
        for got, want in zip(rows, pinned, strict=True)
        for column in want.keys() | got.keys()
        if not _same(got.get(column), want.get(column))
    ]
    assert not changed, f"{len(changed)} values changed, first: {changed[:5]}"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pinned_rows = summarize_examples(Path(tmp) / "out")
    PINNED.write_text(
        "".join(json.dumps(row, sort_keys=True) + "\n" for row in pinned_rows), encoding="utf-8"
    )
    print(f"wrote {len(pinned_rows)} rows to {PINNED}")
