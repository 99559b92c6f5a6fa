"""The time budget of a training command: the closing planned to fit, training stopped in time."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from s2s_model import DecodeConfig, Summarizer, load_checkpoint
from s2s_model.budget import (
    CLOSING_SHARE,
    MIN_LOSS_DOCS,
    MIN_ROUGE_DOCS,
    Closing,
    Costs,
    Deadline,
    fit_closing,
)
from s2s_model.train import BEST_DIR, fit
from tests.s2s_model.test_train import DECODE, TINY_MODEL, tiny_pairs, tiny_train_config

COSTS = Costs(loss_per_doc=0.01, decode_per_doc=0.1, save=0.5)


def test_a_closing_that_fits_is_kept_whole() -> None:
    wanted = Closing(loss_docs=100, rouge_docs=40, candidates=3)
    needed = wanted.reserve(COSTS)
    assert fit_closing(wanted, COSTS, needed / CLOSING_SHARE + 1) == wanted


def test_a_short_budget_drops_the_decode_choice_before_shrinking_validation() -> None:
    wanted = Closing(loss_docs=100, rouge_docs=40, candidates=3)
    plain = Closing(loss_docs=100, rouge_docs=40, candidates=0)
    left = (plain.reserve(COSTS) + 0.1) / CLOSING_SHARE
    assert wanted.reserve(COSTS) > CLOSING_SHARE * left
    assert fit_closing(wanted, COSTS, left) == plain


def test_a_shorter_budget_shrinks_both_samples_alike_to_fit() -> None:
    wanted = Closing(loss_docs=1000, rouge_docs=400, candidates=2)
    left = 60.0
    fitted = fit_closing(wanted, COSTS, left)
    assert fitted.candidates == 0
    assert MIN_LOSS_DOCS < fitted.loss_docs < wanted.loss_docs
    assert MIN_ROUGE_DOCS < fitted.rouge_docs < wanted.rouge_docs
    assert fitted.loss_docs / wanted.loss_docs == pytest.approx(
        fitted.rouge_docs / wanted.rouge_docs, abs=0.01
    )
    assert fitted.reserve(COSTS) <= CLOSING_SHARE * left + 1e-9


def test_no_budget_left_keeps_the_smallest_samples() -> None:
    fitted = fit_closing(Closing(1000, 400, 2), COSTS, left=-5.0)
    assert fitted == Closing(MIN_LOSS_DOCS, MIN_ROUGE_DOCS, 0)
    assert fit_closing(Closing(3, 2, 0), COSTS, left=0.0) == Closing(3, 2, 0)


def test_a_deadline_counts_from_its_start() -> None:
    deadline = Deadline(started=time.monotonic() - 10.0, seconds=30.0)
    assert 19.0 < deadline.left() <= 20.0 and deadline.limited
    assert Deadline(time.monotonic(), 0.0).left() == float("inf")


@pytest.mark.usefixtures("one_thread")
def test_max_time_bounds_the_whole_training_call(tmp_path: Path) -> None:
    """From the caller's start to fit's return, the closing included, within the budget."""
    pairs, valid = tiny_pairs(200), tiny_pairs(120, seed=1)
    config = tiny_train_config(max_time=6.0, eval_every=25, valid_sample=60)
    candidates = [DecodeConfig(beam_size=1, max_len=12), DecodeConfig(beam_size=3, max_len=12)]
    lines: list[str] = []
    started = time.monotonic()
    result = fit(pairs, valid, tmp_path, model_config=TINY_MODEL, train_config=config,
                 decode=DECODE, decode_candidates=candidates, progress=False,
                 report=lines.append, started=started)  # fmt: skip
    wall = time.monotonic() - started
    assert result.stopped == "max_time"
    assert wall <= 1.25 * config.max_time, (wall, lines)
    summaries = Summarizer.load(tmp_path / BEST_DIR).summarize([text for text, _ in valid[:3]])
    assert len(summaries) == 3
    assert lines[0].startswith("training 200 pairs on cpu") and "max_time 6 s" in lines[0]
    assert any(line.startswith("step ") and "ETA" in line for line in lines)


def test_a_closing_too_long_for_the_budget_is_scaled_down_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pairs, valid = tiny_pairs(40), tiny_pairs(100, seed=1)
    slow = Costs(loss_per_doc=0.02, decode_per_doc=0.05, save=0.05)
    monkeypatch.setattr("s2s_model.train._measure_costs", lambda run: slow)
    config = tiny_train_config(max_time=12.0, max_steps=3, eval_every=1000, valid_sample=100)
    candidates = [DecodeConfig(beam_size=1, max_len=12)]
    with caplog.at_level(logging.WARNING, logger="s2s_model.train"):
        fit(pairs, valid, tmp_path, model_config=TINY_MODEL, train_config=config,
            decode=DECODE, decode_candidates=candidates, progress=False)  # fmt: skip
    metadata = load_checkpoint(tmp_path / BEST_DIR).metadata
    assert metadata["scores"]["rouge_docs"] < 100 and metadata["scores"]["loss_docs"] < 100
    assert "decode_tuning" not in metadata
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "validations scaled down" in messages and "choose among 2 decode settings" in messages
