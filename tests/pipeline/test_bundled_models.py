"""The two bundled models by name: ``--model news`` and the default ``debian``, end to end."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import run as run_module
from pipeline.run import run
from pipeline.show import run_summary
from s2s_model import Summarizer
from s2s_model.bundled import BUNDLED_MODELS, DEFAULT_MODEL, model_directory
from tests.pipeline_fixtures import write_lines

# Written for this test (not taken from any corpus), cased and punctuated as a user's news is.
ARTICLES = [
    "NEW DELHI -- Thousands of people stormed a jail in the remote state of Nagaland on Thursday,"
    " dragged out a man accused of murder and beat him in the street, police said on Friday."
    ' "There were thousands of them. Many of them were students," a police official said. The'
    " crowd broke through two gates of the jail before seizing the man, who had been arrested"
    " last week. Authorities imposed a curfew on the city and suspended mobile internet services"
    " after the attack. The state's chief minister called for calm and ordered an inquiry.",
    "LONDON -- The Bank of England raised interest rates for the third time this year on"
    " Thursday, saying inflation was rising faster than it had expected. The bank's governor"
    " told reporters that prices for food and energy had climbed sharply since the spring, and"
    " that households should prepare for higher mortgage payments. Shares in British banks rose"
    " after the announcement, while the pound fell against the dollar. Economists said the bank"
    " was likely to raise rates again before the end of the year.",
]


def _run(tmp_path: Path, *model: str) -> run_module.RunReport:
    shard = write_lines(tmp_path / "articles.txt", ARTICLES)
    argv = ["--input", str(shard), "--output", str(tmp_path / "out"), *model, "--device", "cpu"]
    return run(argv)


def test_the_news_model_by_name_summarizes_news_in_domain(tmp_path: Path) -> None:
    report = _run(tmp_path, "--model", "news")
    rows = pq.read_table(tmp_path / "out" / "summaries").to_pylist()
    assert len(rows) == len(ARTICLES)
    assert all(len(r["summary"].split()) >= 20 for r in rows)
    assert not any("out_of_domain" in r["flags"] for r in rows)
    # Capitals read as the lower-cased text the model was trained on, not as unknown pieces.
    assert "thousands of people stormed a jail" in rows[0]["summary"]
    manifest = json.loads((tmp_path / "out" / "_SUCCESS.json").read_text())
    assert manifest["model"]["path"] == "news" and manifest["model"]["bundled"] is True
    news = Summarizer.load("news")
    assert manifest["model"]["fingerprint"] == news.fingerprint
    assert f"model news (bundled, {news.fingerprint})" in run_summary(str(tmp_path / "out"))
    assert report.misfit_warning(0.5) is None


def test_the_default_model_flags_news_and_points_to_the_news_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        report = _run(tmp_path)
    assert report.manifest["model"] == {**report.manifest["model"], "path": DEFAULT_MODEL}
    assert report.out_of_domain == len(ARTICLES)
    assert "the bundled model 'debian' was not trained on text like this corpus" in caplog.text
    assert "--model news (news articles" in caplog.text


def test_a_bundled_name_wins_over_a_directory_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "news").mkdir()  # not a checkpoint: loading it would fail
    monkeypatch.chdir(tmp_path)
    assert model_directory("news") == BUNDLED_MODELS["news"].directory
    assert model_directory("./news") == "./news"
    assert model_directory(None) == BUNDLED_MODELS[DEFAULT_MODEL].directory
