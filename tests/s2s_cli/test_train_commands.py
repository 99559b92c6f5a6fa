"""``s2s train`` and ``s2s evaluate`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from s2s_cli.train_commands import DERIVED_MODEL_FIELDS, DURATION, evaluate, sample_pairs, train
from s2s_model import Summarizer, load_checkpoint
from s2s_model.config import (
    DEFAULT_MAX_SRC_TOKENS,
    ModelConfig,
    RuntimeSettings,
    TrainConfig,
    field_specs,
)
from tests.conftest import make_texts

TINY_RECIPE = {
    "model": {"embed_dim": 16, "hidden_size": 16, "num_layers": 1, "copy": True},
    "train": {
        "vocab_size": 64,
        "batch_tokens": 400,
        "max_steps": 12,
        "eval_every": 6,
        "valid_sample": 3,
        "warmup_steps": 2,
    },
    "decode": {"beam_size": 2, "max_len": 8},
    "decode_candidates": [{"length_penalty": "avg"}, {"beam_size": 1}],
}


def write_pairs(path: Path, count: int, seed: int = 0) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for text in make_texts(count, seed=seed, min_words=5):
            summary = " ".join(text.split()[:3])
            handle.write(json.dumps({"description": text, "synopsis": summary}) + "\n")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_pairs(root / "train.jsonl", 30)
    write_pairs(root / "valid.jsonl", 4, seed=1)
    write_pairs(root / "test.jsonl", 5, seed=2)
    (root / "recipe.json").write_text(json.dumps(TINY_RECIPE), encoding="utf-8")
    return root


FIELDS = ["--text_field", "description", "--summary_field", "synopsis"]


@pytest.fixture(scope="module")
def trained(data: Path) -> Path:
    """A run directory made by `s2s train`."""
    output = data / "run"
    result = CliRunner().invoke(
        train,
        ["--train", str(data / "train.jsonl"), "--valid", str(data / "valid.jsonl"),
         "--output", str(output), "--config", str(data / "recipe.json"), "--threads", "1",
         "--no_progress", "--seed", "7", *FIELDS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stopped (max_steps) after 12 updates" in result.output
    # A line per validation by default: step, losses, ROUGE, time and ETA.
    assert "training 30 pairs on cpu" in result.output
    assert "step 6 (epoch" in result.output and "step 12 (epoch" in result.output
    assert "ROUGE-1/2/L" in result.output and "ETA" in result.output
    assert "decode settings:" in result.output
    return output


def test_train_writes_a_loadable_best_checkpoint(trained: Path) -> None:
    checkpoint = load_checkpoint(trained / "best")
    assert checkpoint.model_config.copy and checkpoint.model_config.hidden_size == 16
    tried = checkpoint.metadata["decode_tuning"]
    assert len(tried) == 3 and checkpoint.decode.to_dict() == tried[0]["decode"]
    assert tried[0]["rougeL"] >= max(t["rougeL"] for t in tried)
    assert {t["decode"]["length_penalty"] for t in tried} == {"none", "avg"}
    assert checkpoint.metadata["train_config"]["seed"] == 7
    assert checkpoint.metadata["data"]["text_field"] == "description"
    assert (trained / "curves.png").is_file()


def test_train_resume_and_refusal_to_overwrite(trained: Path, data: Path) -> None:
    args = ["--train", str(data / "train.jsonl"), "--valid", str(data / "valid.jsonl"),
            "--output", str(trained), "--config", str(data / "recipe.json"), "--no_progress",
            *FIELDS]  # fmt: skip
    again = CliRunner().invoke(train, args)
    assert again.exit_code == 1
    assert "already holds a training run: pass --resume" in again.output
    assert "Traceback" not in again.output
    # The recipe's max_steps (12) is reached already: resuming does no more updates.
    resumed = CliRunner().invoke(train, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "after 12 updates" in resumed.output


def test_evaluate_a_model_prints_the_table_and_writes_json(trained: Path, data: Path) -> None:
    report_path = data / "report.json"
    predictions_path = data / "preds.txt"
    result = CliRunner().invoke(
        evaluate,
        [str(data / "test.jsonl"), "--model", str(trained / "best"), "--beam_size", "1",
         "--json_out", str(report_path), "--predictions_out", str(predictions_path), *FIELDS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "R-Lsum" in result.output and "lead-" in result.output and "docs/s" in result.output
    report = json.loads(report_path.read_text())
    assert report["n_docs"] == 5 and report["docs_per_second"] > 0
    assert report["lead"]["n"] == 3  # references are the first three words
    assert report["lead"]["scores"]["rougeL"] == pytest.approx(100.0)
    assert len(predictions_path.read_text().splitlines()) == 5


def test_evaluate_a_predictions_file(data: Path) -> None:
    lines = (data / "test.jsonl").read_text().splitlines()
    references = [json.loads(line)["synopsis"] for line in lines]
    predictions = data / "perfect.txt"
    predictions.write_text("\n".join([*references[:4], "nothing alike"]) + "\n")
    report_path = data / "perfect.json"
    result = CliRunner().invoke(
        evaluate,
        [str(data / "test.jsonl"), "--predictions", str(predictions), "--json_out",
         str(report_path), *FIELDS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    system = json.loads(report_path.read_text())["system"]
    assert system["rouge1"] == pytest.approx(80.0)  # 4 perfect documents of 5
    assert "predictions" in result.output
    assert "a content word repeated" in result.output and "glued or cut" not in result.output
    known = CliRunner().invoke(
        evaluate,
        [str(data / "test.jsonl"), "--predictions", str(predictions), "--json_out",
         str(report_path), "--known_words_from", str(data / "train.jsonl"), *FIELDS],
    )  # fmt: skip
    assert known.exit_code == 0, known.output
    quality = json.loads(report_path.read_text())["quality"]
    assert quality["system"]["unknown_word"] == pytest.approx(20.0)  # "nothing alike"


def test_evaluate_errors_are_one_line(data: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("one\n")
    cases = [
        (["--predictions", str(short)], "has 1 predictions but the test file has 5"),
        (["--model", str(tmp_path / "nope")], "does not exist"),
        (["--model", "x", "--predictions", str(short)], "not both"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(evaluate, [str(data / "test.jsonl"), *extra, *FIELDS])
        assert result.exit_code in (1, 2), result.output
        assert message in result.output
        assert "Traceback" not in result.output


def test_bad_training_record_is_reported_with_its_number(data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = (data / "train.jsonl").read_text().splitlines()
    lines[4] = json.dumps({"description": "text but no synopsis"})
    bad.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(
        train,
        ["--train", str(bad), "--valid", str(data / "valid.jsonl"), "--output",
         str(tmp_path / "out"), *FIELDS],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "bad.jsonl: record 5 has no field 'synopsis'" in result.output
    assert "Traceback" not in result.output


def test_bad_configuration_is_a_clean_error(data: Path, tmp_path: Path) -> None:
    base = ["--train", str(data / "train.jsonl"), "--valid", str(data / "valid.jsonl"),
            "--output", str(tmp_path / "out"), *FIELDS]  # fmt: skip
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"train": {"lr": -1}}))
    result = CliRunner().invoke(train, [*base, "--config", str(recipe)])
    assert result.exit_code == 1 and "bad configuration: lr=-1 must be > 0" in result.output
    recipe.write_text(json.dumps({"optimizer": {}}))
    result = CliRunner().invoke(train, [*base, "--config", str(recipe)])
    assert result.exit_code == 1 and "sections among" in result.output
    recipe.write_text(json.dumps({"decode_candidates": [{"beam_size": 0}]}))
    result = CliRunner().invoke(train, [*base, "--config", str(recipe)])
    assert result.exit_code == 1 and "beam_size=0 must be at least 1" in result.output
    result = CliRunner().invoke(train, [*base, "--max_time", "soon"])
    assert result.exit_code == 2 and "not a duration" in result.output


def test_durations() -> None:
    assert DURATION.convert("90", None, None) == 90.0
    assert DURATION.convert("45m", None, None) == 2700.0
    assert DURATION.convert("1.5h", None, None) == 5400.0


def test_evaluate_reads_as_many_source_tokens_as_summarize(
    trained: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    original = Summarizer.__init__

    def spy(self: Summarizer, checkpoint: Any, settings: RuntimeSettings) -> None:
        seen.append(settings.max_src_tokens)
        original(self, checkpoint, settings)

    monkeypatch.setattr(Summarizer, "__init__", spy)
    args = [str(data / "test.jsonl"), "--model", str(trained / "best"), *FIELDS]
    assert CliRunner().invoke(evaluate, args).exit_code == 0
    assert CliRunner().invoke(evaluate, [*args, "--max_src_tokens", "7"]).exit_code == 0
    assert seen == [DEFAULT_MAX_SRC_TOKENS, 7]


def test_every_model_and_training_field_is_a_flag() -> None:
    flags = {name for param in train.params for name in param.opts}
    fields = [s.name for s in field_specs(TrainConfig)]
    fields += [s.name for s in field_specs(ModelConfig) if s.name not in DERIVED_MODEL_FIELDS]
    assert [name for name in fields if f"--{name}" not in flags] == []
    help_text = CliRunner().invoke(train, ["--help"]).output
    assert "--grad_accumulation" in help_text and "[default: 1]" in help_text


def test_flags_override_the_config_file_and_quiet_prints_only_the_result(
    data: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        train,
        ["--train", str(data / "train.jsonl"), "--valid", str(data / "valid.jsonl"),
         "--output", str(tmp_path / "run"), "--config", str(data / "recipe.json"),
         "--threads", "1", "-q", "--max_steps", "4", "--eval_every", "4", "--hidden_size", "24",
         "--no_copy", "--adam_betas", "0.8", "0.99", *FIELDS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("stopped (max_steps) after 4 updates")
    assert len(result.output.splitlines()) == 2
    checkpoint = load_checkpoint(tmp_path / "run" / "best")
    assert checkpoint.model_config.hidden_size == 24 and not checkpoint.model_config.copy
    assert checkpoint.model_config.embed_dim == 16  # from the file
    assert checkpoint.metadata["train_config"]["adam_betas"] == [0.8, 0.99]


def test_limit_draws_a_seeded_sample_spread_over_the_file() -> None:
    pairs = [(f"text {i}", f"summary {i}") for i in range(1000)]
    sample = sample_pairs(pairs, 100, seed=3)
    assert sample == sample_pairs(pairs, 100, seed=3) != sample_pairs(pairs, 100, seed=4)
    indices = [pairs.index(pair) for pair in sample]
    assert indices == sorted(indices) and len(set(indices)) == 100
    assert max(indices) > 900 and min(indices) < 100
    assert sample_pairs(pairs, 5000, seed=3) == pairs


def test_evaluate_reports_progress_unless_quiet(trained: Path, tmp_path: Path) -> None:
    test_file = write_pairs(tmp_path / "many.jsonl", 300, seed=5)
    args = [str(test_file), "--model", str(trained / "best"), "--beam_size", "1", *FIELDS]
    loud = CliRunner().invoke(evaluate, args)
    assert loud.exit_code == 0, loud.output
    assert "summarized 300 of 300 documents" in loud.output
    quiet = CliRunner().invoke(evaluate, [*args, "-q"])
    assert quiet.exit_code == 0 and "summarized" not in quiet.output
    # Summarized in chunks or in one call, the summaries and so the scores are the same.
    table = [line for line in quiet.output.splitlines() if not line.startswith("speed")]
    assert "R-Lsum" in table[0] and set(table) <= set(loud.output.splitlines())
