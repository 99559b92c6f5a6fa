"""A big one-shard corpus runs in bounded memory.

Measured by hand with the tiny model (--beam_size 1 --max_len 2), peak RSS of the whole local
run: 10k lines 398 MB, 100k lines 438 MB, 1M lines 454 MB. The growth up to ~100k lines is the
Parquet writer filling its row-group buffer (sinks.ROW_GROUP_BYTES); past it memory is flat.
A Flatten on the data path (FnApiRunner materializes it), a whole-bundle sort or a GroupByKey
before the sink would each hold every row: about 1.3 KB per document here.

Two tests: the pipeline graph has none of those, and ten times the lines needs little more
memory.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.portability import common_urns

from pipeline.options import parse_options
from pipeline.preflight import RunPlan
from pipeline.run import build_pipeline
from s2s_model import DecodeConfig
from tests.conftest import WORDS

SMALL, BIG = 5_000, 50_000
# Measured +31 MB (row-group buffer filling); holding every row would add ~60 MB more.
ALLOWED_GROWTH_MB = 60

MEASURE = """
import resource, sys
from pipeline.run import run
run(sys.argv[1:], on_progress=lambda done, elapsed: None)  # as the CLI runs it
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _shard(path: Path, lines: int) -> Path:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(lines):
            handle.write(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) + ".\n")
    return path


def _peak_mb(shard: Path, output: Path, model: Path) -> int:
    argv = ["--input", str(shard), "--output", str(output), "--model", str(model),
            "--beam_size", "1", "--max_len", "2"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_ten_times_the_lines_in_nearly_the_same_memory(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    small = _peak_mb(_shard(tmp_path / "small.txt", SMALL), tmp_path / "small", tiny_checkpoint)
    big = _peak_mb(_shard(tmp_path / "big.txt", BIG), tmp_path / "big", tiny_checkpoint)
    assert big - small < ALLOWED_GROWTH_MB, f"peak RSS {small} MB -> {big} MB"


def _graph_problems(tmp_path: Path, *extra: str) -> list[str]:
    options = parse_options(["--input", "x", "--output", str(tmp_path), *extra])
    p = beam.Pipeline(options=options)
    settings = options.runtime_settings()
    plan = RunPlan(
        patterns=["x"],
        shards=1,
        output=str(tmp_path),
        model="bundled",
        fingerprint="0" * 16,
        decode=DecodeConfig(),
        settings=settings,
        window=options.window(settings.device),
        runner=options.runner_name(),
    )
    build_pipeline(p, options, plan, progress_dir=str(tmp_path))
    proto = p.to_runner_api()
    transforms = proto.components.transforms
    producers = {pcoll: t.unique_name for t in transforms.values() for pcoll in t.outputs.values()}
    problems = []
    for transform in transforms.values():
        if transform.spec.urn == common_urns.primitives.FLATTEN.urn:
            problems.append(f"Flatten {transform.unique_name}")
        if transform.spec.urn == common_urns.primitives.GROUP_BY_KEY.urn:
            (source,) = [producers[p] for p in transform.inputs.values()]
            # Allowed: grouping shard names before reading, and file names after writing.
            if not (source.startswith("ReadShards/") or source.endswith("/WriteImpl/Pair")):
                problems.append(f"GroupByKey after {source}")
    return problems


def test_no_flatten_and_no_grouping_of_rows_in_the_graph(tmp_path: Path) -> None:
    assert _graph_problems(tmp_path) == []


def test_a_fixed_number_of_output_files_groups_the_rows(tmp_path: Path) -> None:
    # Documented: --output_shards N shuffles every row (fine on distributed runners, where the
    # shuffle is on disk; on the local runner it holds them in memory).
    assert _graph_problems(tmp_path, "--output_shards", "2") != []
