"""``--reuse``: a re-run over the same documents plus new ones decodes only the new ones, and
its rows are those a fresh run writes; other settings reuse nothing; bad directories are refused
before any work."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.output import MANIFEST_VERSION
from pipeline.reuse import AnswerSettings, RowKeys, answer_differences
from pipeline.run import PreflightError, RunReport, run
from pipeline.sources import Document
from s2s_cli.main import main
from s2s_model import DecodeConfig, Source, Summarizer
from tests.conftest import make_texts
from tests.pipeline_fixtures import summarize_args, write_lines

OLD = 60
NEW = 6  # 10% new documents in the second run
# As in tests/pipeline/test_reliability_determinism.py: batching moves the last bits.
SCORE_TOLERANCE = 1e-5
FLAGS = ["--n_best", "2", "--batch_window", "16"]


@dataclasses.dataclass(frozen=True)
class Texts:
    old: list[str]
    new: list[str]
    poisoned: str  # dead-lettered by the first run (its model failed on it), fine later


@pytest.fixture(scope="module")
def texts() -> Texts:
    old = make_texts(OLD - 5, seed=81) + make_texts(5, seed=82, min_words=60, max_words=90)
    new = make_texts(NEW, seed=83)
    assert not set(new) & set(old) and len(set(old)) == OLD
    return Texts(old=old, new=new, poisoned=old[7])


class Spy:
    """Replaces Summarizer.summarize_sources (what the model handler calls; the local runner runs
    in this process): records every text the model is asked to summarize, and fails on
    ``poisoned`` ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, poisoned: Sequence[str] = ()) -> None:
        self.seen: list[str] = []
        original = Summarizer.summarize_sources

        def summarize_sources(
            model: Summarizer, sources: Sequence[Source], *args: Any, **kwargs: Any
        ) -> Any:
            texts = [source.text for source in sources]
            self.seen += texts
            if set(texts) & set(poisoned):
                raise RuntimeError("poisoned")
            return original(model, sources, *args, **kwargs)

        monkeypatch.setattr(Summarizer, "summarize_sources", summarize_sources)


def _shards(root: Path, name: str, texts: list[str], count: int) -> list[str]:
    """``texts`` (and a line of a no-break space: a record with no text, a dead letter) in
    ``count`` shards ``<name>-N.txt``."""
    root.mkdir(parents=True, exist_ok=True)
    for shard in range(count):
        empty = ["\u00a0"] if shard else []
        write_lines(root / f"{name}-{shard}.txt", texts[shard::count] + empty)
    return [str(root / f"{name}-*.txt")]


def _run(inputs: list[str], output: Path, model: Path, *extra: str) -> RunReport:
    return run(summarize_args(inputs, output, model, *FLAGS, *extra))


def _rows_by_text(output: Path) -> dict[str, dict[str, Any]]:
    """Summary rows by the text of their document (read back from the shard and line)."""
    rows = pq.read_table(output / "summaries").to_pylist()
    by_text = {}
    for row in rows:
        path, line = row["doc_id"].rsplit(":", 1)
        assert row["source"] == path
        text = Path(path).read_text(encoding="utf-8").splitlines()[int(line) - 1]
        by_text[text] = row
    assert len(by_text) == len(rows)
    return by_text


def _content(row: dict[str, Any]) -> dict[str, Any]:
    """What must be equal between runs: everything but doc_id and source (which name the
    shard), scores to SCORE_TOLERANCE."""
    content = {k: v for k, v in row.items() if k not in ("doc_id", "source")}
    content["score"] = pytest.approx(row["score"], abs=SCORE_TOLERANCE)
    content["n_best"] = [
        {**hyp, "score": pytest.approx(hyp["score"], abs=SCORE_TOLERANCE)} for hyp in row["n_best"]
    ]
    return content


@pytest.fixture(scope="module")
def first(
    texts: Texts, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RunReport]:
    """The earlier run: the old documents in 3 shards; its model fails on the poisoned one."""
    root = tmp_path_factory.mktemp("reuse-first")
    inputs = _shards(root / "in", "day1", texts.old, 3)
    with pytest.MonkeyPatch.context() as monkeypatch:
        Spy(monkeypatch, poisoned=[texts.poisoned])
        report = _run(inputs, root / "out", tiny_checkpoint)
    assert (report.summarized, report.dead_lettered) == (OLD - 1, 3)  # 2 empty lines, 1 poisoned
    return root / "out", report


@pytest.fixture(scope="module")
def second_inputs(texts: Texts, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Yesterday's documents and 10% new ones, in other shards, in another order."""
    everything = list(reversed(texts.old)) + texts.new
    return _shards(tmp_path_factory.mktemp("reuse-second") / "in", "day2", everything, 2)


@pytest.fixture(scope="module")
def fresh(
    second_inputs: list[str], tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    output = tmp_path_factory.mktemp("reuse-fresh") / "out"
    _run(second_inputs, output, tiny_checkpoint)
    return output


def test_a_rerun_decodes_only_new_documents_and_writes_what_a_fresh_run_writes(
    texts: Texts,
    first: tuple[Path, RunReport],
    second_inputs: list[str],
    fresh: Path,
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    earlier, _ = first
    copy = shutil.copytree(earlier, tmp_path / "copy")  # every key twice: one row is taken
    spy = Spy(monkeypatch)
    progress: list[tuple[int, float, int]] = []
    argv = summarize_args(
        second_inputs, tmp_path / "out", tiny_checkpoint, *FLAGS,
        "--reuse", str(earlier), "--reuse", str(copy),
    )  # fmt: skip
    report = run(
        argv, on_progress=lambda done, elapsed, reused: progress.append((done, elapsed, reused))
    )

    # Only the new documents and the one the first run dead-lettered reach the model.
    assert set(spy.seen) == {*texts.new, texts.poisoned}
    counts = report.manifest["counts"]
    assert counts == {
        "read": OLD + NEW + 1,
        "summarized": OLD + NEW,
        "dead_lettered": 1,
        "reused": OLD - 1,
        "decoded": NEW + 1,
        "skipped_blank": 0,
    }
    assert progress[-1][0] == OLD + NEW + 1 and progress[-1][2] == OLD - 1
    # Every row is the fresh run's, under this run's own doc_id and source.
    rows, expected = _rows_by_text(tmp_path / "out"), _rows_by_text(fresh)
    assert rows.keys() == expected.keys() == {*texts.old, *texts.new}
    for text, row in rows.items():
        assert _content(row) == _content(expected[text]), text
        assert Path(row["source"]).name.startswith("day2-")
    # Reused rows are the first run's, exactly (scores included).
    before = _rows_by_text(earlier)
    for text in set(texts.old) - {texts.poisoned}:
        assert {**rows[text], "doc_id": "", "source": ""} == {
            **before[text],
            "doc_id": "",
            "source": "",
        }
    assert (
        pq.read_table(tmp_path / "out" / "summaries").schema
        == pq.read_table(fresh / "summaries").schema
    )


@pytest.mark.parametrize(
    "changed", [["--beam_size", "3"], ["--max_src_tokens", "12"], ["--quantize", "int8"]]
)
def test_other_answer_changing_settings_reuse_nothing(
    changed: list[str], first: tuple[Path, RunReport], second_inputs: list[str],
    tiny_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    earlier, _ = first
    report = _run(
        second_inputs, tmp_path / "out", tiny_checkpoint, *changed, "--reuse", str(earlier)
    )
    counts = report.manifest["counts"]
    assert (counts["reused"], counts["decoded"]) == (0, OLD + NEW)
    notes = [r.getMessage() for r in caplog.records if "can reuse nothing" in r.getMessage()]
    assert len(notes) == 1 and f"its run differs in {changed[0][2:]} " in notes[0], notes


def test_a_reuse_of_the_same_settings_warns_of_nothing(
    first: tuple[Path, RunReport], second_inputs: list[str], tiny_checkpoint: Path,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    earlier, _ = first
    report = _run(second_inputs, tmp_path / "out", tiny_checkpoint, "--reuse", str(earlier))
    assert report.manifest["counts"]["reused"] == OLD - 1
    assert "can reuse nothing" not in caplog.text


def test_the_key_holds_every_setting_that_changes_the_answer() -> None:
    doc = Document("id", "src", "the package provides a library")
    base = AnswerSettings(DecodeConfig(beam_size=4), 400, "none", "fp32")
    key = RowKeys(base)(doc, "model-a")
    # Not the id or the source; the same values typed differently (a saved 0 is the flag's 0.0).
    assert RowKeys(base)(doc._replace(doc_id="other", source="elsewhere"), "model-a") == key
    assert (
        RowKeys(dataclasses.replace(base, decode=DecodeConfig(max_len_a=0)))(doc, "model-a") == key
    )
    changed = {
        "fingerprint": RowKeys(base)(doc, "model-b"),
        "text": RowKeys(base)(doc._replace(text=doc.text + " "), "model-a"),
        "cut": RowKeys(base)(doc._replace(cut=True), "model-a"),
        "replaced": RowKeys(base)(doc._replace(replaced=True), "model-a"),
        "max_src_tokens": RowKeys(dataclasses.replace(base, max_src_tokens=399))(doc, "model-a"),
        "quantize": RowKeys(dataclasses.replace(base, quantize="int8"))(doc, "model-a"),
        "precision": RowKeys(dataclasses.replace(base, precision="bf16"))(doc, "model-a"),
    }
    other_values: dict[str, Any] = {
        "length_penalty": "wu", "compat": "opennmt", "ban_unk": True, "n_best": 2,
    }  # fmt: skip
    for field in dataclasses.fields(DecodeConfig):
        value = other_values.get(field.name) or getattr(base.decode, field.name) + 1
        decode = dataclasses.replace(base.decode, **{field.name: value})
        changed[field.name] = RowKeys(dataclasses.replace(base, decode=decode))(doc, "model-a")
    assert key not in changed.values() and len(set(changed.values())) == len(changed)


def test_a_decode_field_added_later_changes_no_key_until_it_is_set() -> None:
    # A manifest written before coverage_beta existed: its decode section lacks the field.
    settings = AnswerSettings(DecodeConfig(beam_size=4), 400, "none", "fp32")
    model = {"fingerprint": "m", "max_src_tokens": 400, "quantize": "none", "precision": "fp32"}
    before = {name: value for name, value in settings.values().items() if name not in model}
    manifest = {"model": model, "decode": before}
    assert "coverage_beta" not in before
    assert answer_differences(manifest, "m", settings) == []
    penalised = dataclasses.replace(settings, decode=DecodeConfig(beam_size=4, coverage_beta=2))
    assert answer_differences(manifest, "m", penalised) == ["coverage_beta None -> 2.0"]


def _unfinished(tmp_path: Path, earlier: Path) -> Path:
    copy = shutil.copytree(earlier, tmp_path / "unfinished")
    (copy / "_SUCCESS.json").unlink()
    return copy


def _old_version(tmp_path: Path, earlier: Path) -> Path:
    copy = shutil.copytree(earlier, tmp_path / "old-version")
    manifest = json.loads((copy / "_SUCCESS.json").read_text())
    (copy / "_SUCCESS.json").write_text(json.dumps({**manifest, "manifest_version": 1}))
    return copy


BAD_REUSE = {
    "missing": (lambda tmp, earlier: tmp / "nowhere", "holds no finished run"),
    "unfinished": (_unfinished, "holds no finished run"),
    "old_version": (_old_version, f"output version 1, this version writes {MANIFEST_VERSION}"),
    "the_output": (lambda tmp, earlier: tmp / "in.txt" / ".." / "out", "is the --output itself"),
}


@pytest.mark.parametrize("case", sorted(BAD_REUSE))
def test_an_unusable_reuse_directory_is_refused_in_one_line_before_any_work(
    case: str, first: tuple[Path, RunReport], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    make, message = BAD_REUSE[case]
    reuse = make(tmp_path, first[0])
    corpus = write_lines(tmp_path / "in.txt", make_texts(3, seed=84))
    args = [str(corpus), "--output", str(tmp_path / "out"), "--model", str(tiny_checkpoint)]
    result = CliRunner().invoke(main, ["summarize", *args, "--reuse", str(reuse)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists(), "work started before the error"


def test_unusable_reuse_directories_can_be_skipped_by_scheduled_runs(
    first: tuple[Path, RunReport], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    inputs = _shards(tmp_path / "in", "day3", make_texts(4, seed=85), 1)
    old = _old_version(tmp_path, first[0])
    report = _run(
        inputs, tmp_path / "out", tiny_checkpoint, "--if_reuse_unusable", "skip",
        "--reuse", str(tmp_path / "nowhere"), "--reuse", str(old),
    )  # fmt: skip
    assert (report.summarized, report.manifest["counts"]["reused"]) == (4, 0)
    with pytest.raises(PreflightError, match="holds no finished run"):
        _run(inputs, tmp_path / "out2", tiny_checkpoint, "--reuse", str(tmp_path / "nowhere"))
