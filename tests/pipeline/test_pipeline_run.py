"""End to end on the local runner: a dirty corpus in, Parquet and _SUCCESS.json out, none lost."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from pipeline import run as run_module
from pipeline.options import SummarizeOptions
from pipeline.preflight import RunPlan, parse, preflight
from pipeline.run import PreflightError, RunFailed, run
from pipeline.sinks import DEAD_LETTER_SCHEMA, summary_schema
from s2s_model import DecodeConfig, RuntimeSettings, Summarizer
from s2s_model.domain import DomainProfile, attach_profile
from s2s_model.quality import FLAGS
from tests.conftest import WORDS, make_texts
from tests.pipeline_fixtures import (
    DirtyCorpus,
    build_dirty_corpus,
    summarize_args,
    write_lines,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> DirtyCorpus:
    return build_dirty_corpus(tmp_path_factory.mktemp("dirty") / "corpus")


@pytest.fixture(scope="module")
def dirty_run(
    corpus: DirtyCorpus, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, run_module.RunReport, list[tuple[int, float]]]:
    output = tmp_path_factory.mktemp("dirty-out") / "out"
    progress: list[tuple[int, float]] = []
    argv = summarize_args(
        [corpus.pattern], output, tiny_checkpoint, "--id_field", "id",
        "--max_dead_letter_fraction", "0.5", "--batch_window", "16",
    )  # fmt: skip
    report = run(argv, on_progress=lambda done, elapsed: progress.append((done, elapsed)))
    return output, report, progress


def test_every_record_is_one_row_or_one_dead_letter(
    corpus: DirtyCorpus, dirty_run: tuple[Path, run_module.RunReport, list]
) -> None:
    output, report, _ = dirty_run
    rows = pq.read_table(output / "summaries").to_pylist()
    dead = pq.read_table(output / "dead_letter").to_pylist()
    assert report.summarized == len(rows) == corpus.summarized
    assert report.dead_lettered == len(dead) == sum(corpus.reasons.values())
    assert report.read == corpus.read == len(rows) + len(dead)
    assert Counter(d["reason"] for d in dead) == corpus.reasons
    ids = [r["doc_id"] for r in rows] + [d["doc_id"] for d in dead]
    assert len(ids) == len(set(ids)), "a record came out twice"
    assert all(d["detail"] for d in dead)


def test_rows_carry_flags_and_the_model_fingerprint(
    corpus: DirtyCorpus, dirty_run: tuple[Path, run_module.RunReport, list], tiny_checkpoint: Path
) -> None:
    output, _, _ = dirty_run
    table = pq.read_table(output / "summaries")
    assert table.schema == summary_schema(with_n_best=False)
    assert pq.read_table(output / "dead_letter").schema == DEAD_LETTER_SCHEMA
    rows = {r["doc_id"]: r for r in table.to_pylist()}
    fingerprint = Summarizer.load(tiny_checkpoint).fingerprint
    assert {r["model_id"] for r in rows.values()} == {fingerprint}
    assert {i for i, r in rows.items() if r["replaced_invalid_utf8"]} == corpus.replaced_ids
    assert corpus.truncated_ids <= {i for i, r in rows.items() if r["truncated"]}
    assert all(0 < r["summary_tokens"] <= 6 and r["src_tokens"] > 0 for r in rows.values())
    assert {r["doc_id"] for r in rows.values() if r["source"].endswith(".jsonl")} >= {"r0", "s1"}


def test_manifest_is_written_with_counts_model_and_decode(
    corpus: DirtyCorpus, dirty_run: tuple[Path, run_module.RunReport, list]
) -> None:
    output, report, _ = dirty_run
    manifest = json.loads((output / "_SUCCESS.json").read_text())
    assert manifest == report.manifest
    assert manifest["counts"] == corpus.counts
    assert manifest["dead_letters_by_reason"] == dict(corpus.reasons)
    assert manifest["decode"]["max_len"] == 6 and manifest["decode"]["beam_size"] == 2
    assert manifest["runner"] == "FnApiRunner"
    assert manifest["started_at"] <= manifest["finished_at"]
    counters = manifest["counters"]
    assert 0 < counters["source_tokens_attended"] <= counters["padded_source_tokens_attended"]
    assert manifest["padding_efficiency"] == pytest.approx(
        counters["source_tokens_attended"] / counters["padded_source_tokens_attended"], abs=1e-4
    )
    for name in manifest["files"]["summaries"] + manifest["files"]["dead_letter"]:
        assert (output / name).is_file()


def test_progress_reaches_every_record(
    corpus: DirtyCorpus, dirty_run: tuple[Path, run_module.RunReport, list]
) -> None:
    _, _, progress = dirty_run
    assert progress, "the progress callback was never called"
    assert progress[-1][0] == corpus.read
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_finished_output_is_refused_without_overwrite(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    inputs = write_lines(tmp_path / "in.txt", make_texts(5, seed=1))
    output = tmp_path / "out"
    argv = summarize_args([str(inputs)], output, tiny_checkpoint)
    run(argv)
    before = (output / "_SUCCESS.json").read_text()
    with pytest.raises(PreflightError, match="--overwrite"):
        run(argv)
    assert (output / "_SUCCESS.json").read_text() == before


def test_overwrite_and_reruns_leave_no_stale_files(tmp_path: Path, tiny_checkpoint: Path) -> None:
    output = tmp_path / "out"
    first = write_lines(tmp_path / "first.txt", make_texts(9, seed=2))
    run(summarize_args([str(first)], output, tiny_checkpoint, "--output_shards", "3"))
    assert len(list((output / "summaries").glob("*.parquet"))) == 3
    stale = output / "summaries" / "part-00007-of-00009.parquet"
    stale.write_bytes(b"left by a crashed run")
    second = write_lines(tmp_path / "second.txt", make_texts(4, seed=3))
    report = run(summarize_args([str(second)], output, tiny_checkpoint, "--overwrite"))
    assert not stale.exists()
    assert len(list((output / "summaries").glob("*.parquet"))) == 1
    assert report.read == 4 == pq.read_table(output / "summaries").num_rows


def test_too_many_dead_letters_fail_the_run_without_manifest(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    # Three records with no text (dead letters) and blank lines, which are no records: they
    # count neither in the records nor against the fraction.
    lines = ["", "\u00a0", " ", "\x01", "", "\u200b", "\t", "the package"]
    inputs = write_lines(tmp_path / "mostly-empty.txt", lines)
    output = tmp_path / "out"
    argv = summarize_args([str(inputs)], output, tiny_checkpoint)
    with pytest.raises(RunFailed, match=r"3 of 4 records \(75.0%\)"):
        run([*argv, "--max_dead_letter_fraction", "0.5"])
    assert not (output / "_SUCCESS.json").exists()
    assert pq.read_table(output / "dead_letter").num_rows == 3  # kept for diagnosis
    report = run([*argv, "--max_dead_letter_fraction", "0.8"])
    assert report.dead_lettered == 3 and (output / "_SUCCESS.json").exists()
    assert report.manifest["counts"]["skipped_blank"] == 4


def test_n_best_column_and_decode_flags_reach_the_model(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    texts = make_texts(6, seed=5)
    inputs = write_lines(tmp_path / "in.txt", texts)
    output = tmp_path / "out"
    run(summarize_args([str(inputs)], output, tiny_checkpoint, "--beam_size", "3", "--n_best", "3"))
    table = pq.read_table(output / "summaries")
    assert table.schema == summary_schema(with_n_best=True)
    expected = Summarizer.load(tiny_checkpoint).summarize(
        texts, DecodeConfig(beam_size=3, n_best=3, max_len=6)
    )
    by_line = {int(r["doc_id"].rsplit(":", 1)[1]): r for r in table.to_pylist()}
    for number, summary in enumerate(expected, 1):
        row = by_line[number]
        assert row["summary"] == summary.text
        assert row["score"] == pytest.approx(summary.score, abs=1e-4)
        assert [c["summary"] for c in row["n_best"]] == [text for text, _ in summary.n_best]
        assert [c["score"] for c in row["n_best"]] == pytest.approx(
            [score for _, score in summary.n_best], abs=1e-4
        )


def test_a_directory_input_means_every_file_below_it(tmp_path: Path, tiny_checkpoint: Path) -> None:
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    write_lines(tmp_path / "corpus" / "a.txt", make_texts(2, seed=6))
    write_lines(tmp_path / "corpus" / "sub" / "b.txt", make_texts(3, seed=7))
    report = run(summarize_args([str(tmp_path / "corpus")], tmp_path / "out", tiny_checkpoint))
    assert report.read == 5 and report.manifest["shards"] == 2


@pytest.mark.slow
def test_two_worker_processes_give_the_same_rows(
    corpus: DirtyCorpus,
    dirty_run: tuple[Path, run_module.RunReport, list],
    tiny_checkpoint: Path,
    tmp_path: Path,
) -> None:
    in_memory, _, _ = dirty_run
    output = tmp_path / "out"
    argv = summarize_args(
        [corpus.pattern], output, tiny_checkpoint, "--id_field", "id",
        "--max_dead_letter_fraction", "0.5", "--batch_window", "16",
        "--direct_num_workers", "2", "--direct_running_mode", "multi_processing",
    )  # fmt: skip
    report = run(argv)
    assert report.read == corpus.read

    def rows(directory: Path, column: str) -> set[tuple[str, str]]:
        return {(r["doc_id"], r[column]) for r in pq.read_table(directory).to_pylist()}

    assert rows(output / "summaries", "summary") == rows(in_memory / "summaries", "summary")
    assert rows(output / "dead_letter", "reason") == rows(in_memory / "dead_letter", "reason")


def test_if_finished_skip_leaves_a_finished_run_alone(
    tmp_path: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "out"
    first = run(summarize_args([str(write_lines(tmp_path / "a.txt", ["the package"]))], output,
                               tiny_checkpoint))  # fmt: skip
    files = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}
    # Inputs and model gone since: a skipped run needs neither.
    argv = summarize_args([str(tmp_path / "gone-*.txt")], output, tmp_path / "no-model")
    with caplog.at_level("INFO", logger="pipeline"):
        report = run([*argv, "--if_finished", "skip"])
    assert report.skipped and report.manifest == first.manifest and report.read == 1
    assert f"{output} already finished at {first.manifest['finished_at']}: skipping" in caplog.text
    assert {p: p.read_bytes() for p in output.rglob("*") if p.is_file()} == files
    with pytest.raises(PreflightError, match="already holds a finished run"):
        run([*argv, "--if_finished", "fail"])


def test_if_finished_skip_runs_an_unfinished_output_and_overwrite_wins(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    output = tmp_path / "out"
    inputs = write_lines(tmp_path / "a.txt", make_texts(3, seed=8))
    argv = [*summarize_args([str(inputs)], output, tiny_checkpoint), "--if_finished", "skip"]
    first = run(argv)
    assert not first.skipped and first.read == 3
    write_lines(inputs, make_texts(5, seed=9))
    again = run([*argv, "--overwrite"])
    assert not again.skipped and again.read == 5
    assert json.loads((output / "_SUCCESS.json").read_text())["counts"]["read"] == 5


def test_if_finished_skip_refuses_a_damaged_marker(tmp_path: Path, tiny_checkpoint: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "_SUCCESS.json").write_text('{"counts": ')
    inputs = write_lines(tmp_path / "a.txt", ["the package"])
    argv = [*summarize_args([str(inputs)], output, tiny_checkpoint), "--if_finished", "skip"]
    with pytest.raises(PreflightError, match=r"cannot read .*_SUCCESS\.json.*--overwrite"):
        run(argv)


def test_python_m_pipeline_skips_a_finished_output_with_exit_0(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    manifest = {"finished_at": "2030-01-02T03:04:05+00:00", "duration_s": 1.0,
                "counts": {"read": 2, "summarized": 2, "dead_lettered": 0}}  # fmt: skip
    (output / "_SUCCESS.json").write_text(json.dumps(manifest))
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "--input", str(tmp_path / "none*"),
         "--output", str(output), "--if_finished", "skip"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert f"{output} already finished at 2030-01-02T03:04:05+00:00: skipping" in completed.stderr
    assert sorted(p.name for p in output.iterdir()) == ["_SUCCESS.json"]


def test_a_local_run_reads_the_model_files_once(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preflight loads the model to check it; the in-process worker takes that copy."""
    loads: list[object] = []
    real_load = Summarizer.load.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Summarizer], /, *args: object, **kwargs: object) -> Summarizer:
        loads.append(args[0] if args else None)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(Summarizer, "load", classmethod(counted))
    shard = write_lines(tmp_path / "in.txt", make_texts(5))
    report = run(summarize_args([str(shard)], tmp_path / "out", tiny_checkpoint))
    assert report.summarized == 5
    assert loads == [str(tiny_checkpoint)]


def test_a_local_run_plans_once_and_asks_torch_for_the_device_once(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flags -> settings -> device are worked out once, in preflight; the job is built from that
    plan and its worker takes it as it is (nothing downstream resolves the device again)."""
    plans: list[object] = []
    probes: list[object] = []
    real_settings = SummarizeOptions.runtime_settings
    real_available = torch.cuda.is_available

    def planned(options: SummarizeOptions) -> RuntimeSettings:
        plans.append(options)
        return real_settings(options)

    def probed() -> bool:
        probes.append(None)
        return real_available()

    monkeypatch.setattr(SummarizeOptions, "runtime_settings", planned)
    monkeypatch.setattr(torch.cuda, "is_available", probed)
    shard = write_lines(tmp_path / "in.txt", make_texts(5))
    argv = summarize_args([str(shard)], tmp_path / "out", tiny_checkpoint)
    report = run([*argv, "--device", "auto"])
    assert report.summarized == 5
    assert len(plans) == 1
    assert len(probes) in (1, 2)


def test_only_a_local_run_keeps_preflights_model_for_its_workers(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """A remote job's workers load their own: its launcher must not hold a copy while it waits."""
    local, remote = _local_and_remote_plans(tmp_path, tiny_checkpoint)
    assert isinstance(local.loaded, Summarizer)
    assert remote.loaded is None
    assert remote.fingerprint == local.fingerprint


# -- out of domain (issue 24) -------------------------------------------------------------------

# The tiny models' training words are known; nothing else is.
TINY_DOMAIN = DomainProfile(
    known_words=frozenset(WORDS), summary_words=frozenset(WORDS), threshold=0.6
)
NEWS_LINES = [
    "Shares fell sharply on Wall Street on Monday after the central bank raised rates.",
    "The striker scored twice as the champions won their fifth game in a row at home.",
    "Heavy rain flooded roads across the region and forecasters expect more storms.",
]


@pytest.fixture(scope="module")
def domain_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("domain") / "model"
    shutil.copytree(tiny_checkpoint, directory)
    attach_profile(directory, TINY_DOMAIN)
    return directory


def _flag_counts(output: Path) -> dict[str, int]:
    rows = pq.read_table(output / "summaries").to_pylist()
    counts = Counter(flag for row in rows for flag in row["flags"])
    return {flag: counts[flag] for flag in FLAGS}


def test_out_of_domain_rows_are_flagged_counted_and_warned_about(
    tmp_path: Path, domain_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = make_texts(2, seed=5) + NEWS_LINES  # 3 of 5 out of domain: above half
    shard = write_lines(tmp_path / "in.txt", lines)
    output = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        report = run(summarize_args([str(shard)], output, domain_checkpoint))
    rows = {
        r["doc_id"].rsplit(":", 1)[1]: r for r in pq.read_table(output / "summaries").to_pylist()
    }
    flagged = {i for i, r in rows.items() if "out_of_domain" in r["flags"]}
    assert flagged == {"3", "4", "5"}  # lines are numbered from 1: the three news lines
    manifest = json.loads((output / "_SUCCESS.json").read_text())
    assert manifest["flagged"] == _flag_counts(output)
    assert manifest["flagged"]["out_of_domain"] == report.out_of_domain == 3
    assert "3 flagged out_of_domain" in report.describe()
    assert "3 of 5 summaries (60.0%) are flagged out_of_domain" in caplog.text
    assert "--model" in caplog.text

    # Rows carried over by --reuse are counted too (they pass no model).
    again = run(summarize_args([str(shard)], tmp_path / "again", domain_checkpoint,
                               "--reuse", str(output)))  # fmt: skip
    assert again.manifest["counts"]["reused"] == 5
    assert again.manifest["flagged"] == manifest["flagged"]


def test_a_run_below_the_share_says_its_count_but_does_not_warn(
    tmp_path: Path, domain_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shard = write_lines(tmp_path / "in.txt", [*make_texts(3, seed=6), NEWS_LINES[0]])
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        report = run(summarize_args([str(shard)], tmp_path / "out", domain_checkpoint))
    assert report.out_of_domain == 1
    assert "1 flagged out_of_domain" in report.describe()
    assert "are flagged out_of_domain" not in caplog.text


def test_a_model_without_a_domain_never_flags_out_of_domain(
    dirty_run: tuple[Path, run_module.RunReport, list],
) -> None:
    output, report, _ = dirty_run
    assert Summarizer.load(report.manifest["model"]["path"]).domain is None
    assert report.manifest["flagged"] == _flag_counts(output)
    assert report.manifest["flagged"]["out_of_domain"] == 0
    assert "flagged" not in report.describe()


def test_misfit_warning_above_the_share_names_the_model_flag() -> None:
    manifest = {
        "counts": {"read": 10, "summarized": 10, "dead_lettered": 0},
        "flagged": {"out_of_domain": 6},
        "model": {"path": "debian", "bundled": True},
        "duration_s": 1.0,
    }
    report = run_module.RunReport(output="out", manifest=manifest)
    warning = report.misfit_warning(0.5)
    assert warning is not None
    assert "6 of 10 summaries (60.0%)" in warning and "the bundled model 'debian'" in warning
    assert "--model" in warning
    assert report.misfit_warning(0.6) is None  # 6 of 10 is not above 60%
    no_metrics = run_module.RunReport(output="out", manifest={**manifest, "flagged": None})
    assert no_metrics.out_of_domain == 0 and no_metrics.misfit_warning(0.5) is None


def test_a_remote_runs_plan_carries_the_models_domain(
    tmp_path: Path, domain_checkpoint: Path
) -> None:
    """Worked out once, in preflight, for every runner: the job is built from the plan."""
    local, remote = _local_and_remote_plans(tmp_path, domain_checkpoint)
    assert remote.loaded is None
    assert remote.domain == local.domain == TINY_DOMAIN
    shard = write_lines(tmp_path / "bundled.txt", make_texts(2))
    bundled = preflight(parse(["--input", str(shard), "--output", str(tmp_path / "b")]))
    assert bundled.domain == Summarizer.load().domain is not None


def _local_and_remote_plans(tmp_path: Path, model: Path) -> tuple[RunPlan, RunPlan]:
    """Preflight's plans of one job on the local runner and on Dataflow."""
    shard = write_lines(tmp_path / "in.txt", make_texts(2))
    argv = summarize_args([str(shard)], tmp_path / "out", model)
    return preflight(parse(argv)), preflight(parse([*argv, "--runner", "DataflowRunner"]))
