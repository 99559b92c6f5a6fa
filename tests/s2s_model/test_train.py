"""The training loop: batching, loss, schedule, overfitting a handful of pairs, exact resume."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from s2s_model import DecodeConfig, ModelConfig, Summarizer, load_checkpoint
from s2s_model.averaging import CHECKPOINTS_DIR, average_checkpoints, last_checkpoints
from s2s_model.config import TrainConfig
from s2s_model.model import Seq2Seq
from s2s_model.objective import learning_rate, token_loss
from s2s_model.tokenizer import BOS_ID, EOS_ID, PAD_ID
from s2s_model.train import (
    BEST_DIR,
    CURVES_FILE,
    LAST_DIR,
    TrainingError,
    _train_step,
    fit,
)
from s2s_model.trainer_state import STATE_FILE
from s2s_model.training_data import EncodedPair, collate, make_batches
from tests.conftest import make_texts

TINY_MODEL = ModelConfig(vocab_size=64, embed_dim=24, hidden_size=32, num_layers=1, dropout=0.1)
DECODE = DecodeConfig(beam_size=2, max_len=12)


def tiny_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Texts over a small vocabulary; the summary is the text's first three words."""
    texts = make_texts(count, seed=seed, min_words=6, max_words=20)
    return [(text, " ".join(text.split()[:3])) for text in texts]


def tiny_train_config(**overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "vocab_size": 64,
        "batch_tokens": 400,
        "max_epochs": 1000,
        "lr": 5e-3,
        "warmup_steps": 10,
        "lr_schedule": "inverse_sqrt",
        "eval_every": 20,
        "valid_sample": 4,
        "patience": 0,
    }
    values.update(overrides)
    return TrainConfig(**values)


# --- pieces -------------------------------------------------------------------------------------


def test_make_batches_respects_the_budget_and_covers_every_pair_once() -> None:
    rng = random.Random(0)
    lengths = [(rng.randint(1, 60), rng.randint(1, 10)) for _ in range(500)]
    batches = make_batches(lengths, 300, random.Random(1))
    assert sorted(i for batch in batches for i in batch) == list(range(500))
    for batch in batches:
        width = max(lengths[i][0] for i in batch) + max(lengths[i][1] for i in batch)
        assert len(batch) * width <= 300
    assert batches == make_batches(lengths, 300, random.Random(1))
    assert batches != make_batches(lengths, 300, random.Random(2))


def test_make_batches_gives_an_oversized_pair_its_own_batch() -> None:
    assert sorted(make_batches([(500, 5), (3, 2), (4, 2)], 100, random.Random(0))) == [[0], [1, 2]]


def test_collate_pads_and_shifts_targets() -> None:
    batch = collate([EncodedPair([5, 6, 7], [8, 9, EOS_ID]), EncodedPair([5], [10, EOS_ID])])
    assert batch.src.tolist() == [[5, 6, 7], [5, PAD_ID, PAD_ID]]
    assert batch.src_len.tolist() == [3, 1]
    assert batch.tgt_out.tolist() == [[8, 9, EOS_ID], [10, EOS_ID, PAD_ID]]
    assert batch.tgt_in.tolist() == [[BOS_ID, 8, 9], [BOS_ID, 10, PAD_ID]]
    assert batch.tokens == 3 + 1 + 3 + 2


def test_token_loss_by_hand() -> None:
    # Two real positions, one PAD. Vocabulary of 4 with probabilities (.5, .25, .125, .125).
    probs = torch.tensor([0.5, 0.25, 0.125, 0.125])
    log_probs = probs.log().expand(1, 3, 4)
    target = torch.tensor([[0, 2, PAD_ID]])
    target[0, 0] = 1  # gold tokens 1 and 2: NLL = log 4 + log 8
    loss, nll = token_loss(log_probs, target)
    assert nll.item() == pytest.approx(math.log(4) + math.log(8))
    assert loss.item() == pytest.approx(nll.item())
    smoothed, nll2 = token_loss(log_probs, target, label_smoothing=0.1)
    uniform = -probs.log().mean().item()  # mean of -log p over the vocabulary
    assert nll2.item() == pytest.approx(nll.item())
    assert smoothed.item() == pytest.approx(0.9 * nll.item() + 0.1 * 2 * uniform)


def test_learning_rate_warms_up_then_decays() -> None:
    linear = TrainConfig(lr=1.0, warmup_steps=10, lr_schedule="linear", min_lr_ratio=0.1)
    assert learning_rate(5, linear, 110) == pytest.approx(0.5)
    assert learning_rate(10, linear, 110) == pytest.approx(1.0)
    assert learning_rate(60, linear, 110) == pytest.approx(0.55)
    assert learning_rate(110, linear, 110) == pytest.approx(0.1)
    assert learning_rate(500, linear, 110) == pytest.approx(0.1)
    inverse = TrainConfig(lr=1.0, warmup_steps=16, lr_schedule="inverse_sqrt")
    assert learning_rate(64, inverse, 0) == pytest.approx(0.5)
    constant = TrainConfig(lr=0.3, warmup_steps=0, lr_schedule="constant")
    assert learning_rate(1, constant, 10) == pytest.approx(0.3)


def test_train_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(ValueError, match="needs valid_sample > 0"):
        TrainConfig(valid_sample=0)
    assert TrainConfig.from_dict({"adam_betas": [0.8, 0.9]}).adam_betas == (0.8, 0.9)


def test_training_modules_load_no_pipeline_libraries() -> None:
    code = (
        "import sys, s2s_model.train, s2s_model.evaluation\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('apache_beam', 'click', 'pyarrow')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- the loop -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tiny_model_overfits_a_handful_of_pairs(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    pairs = tiny_pairs(6)
    config = tiny_train_config(max_steps=100, eval_every=50, label_smoothing=0.0, lr=2e-2)
    model = dataclasses.replace(TINY_MODEL, dropout=0.0)
    result = fit(pairs, pairs, tmp_path, model_config=model, train_config=config,
                 decode=DECODE, progress=False)  # fmt: skip
    history = json.loads((tmp_path / STATE_FILE).read_text())["state"]["history"]
    assert [h["step"] for h in history] == [50, 100]
    # A uniform guess over 64 pieces costs log(64) = 4.16 nats per token; the first window's
    # mean starts there.
    assert history[0]["train_loss"] > 1.0
    assert history[-1]["train_loss"] < 0.5
    assert history[-1]["valid_nll"] < 0.5
    assert result.stopped == "max_steps" and result.steps == 100
    summaries = Summarizer.load(result.best_dir).summarize([text for text, _ in pairs])
    correct = sum(s.text == summary for s, (_, summary) in zip(summaries, pairs, strict=True))
    assert correct >= 4


def test_run_directory_holds_checkpoints_state_and_curves(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    pairs = tiny_pairs(8)
    config = tiny_train_config(max_steps=20, eval_every=10)
    fit(pairs, pairs[:3], tmp_path, model_config=TINY_MODEL, train_config=config,
        decode=DECODE, data_info={"train": "x.jsonl"}, progress=False)  # fmt: skip
    best = load_checkpoint(tmp_path / BEST_DIR)
    assert best.decode == DECODE
    metadata = best.metadata
    assert metadata["data"] == {"train": "x.jsonl"}
    assert metadata["train_config"]["max_steps"] == 20
    assert metadata["hardware"]["torch_threads"] == 1
    assert metadata["training_seconds"] > 0
    assert {"valid_nll", "rougeL", "rouge1", "train_loss"} <= set(metadata["scores"])
    assert load_checkpoint(tmp_path / LAST_DIR).metadata["step"] == 20
    assert (tmp_path / CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tensors = load_file(str(tmp_path / "trainer_state.safetensors"))
    assert "rng.torch" in tensors and any(k.endswith("exp_avg_sq") for k in tensors)


def test_bf16_training_learns_and_keeps_fp32_weights(tmp_path: Path) -> None:
    # The autocast path a GPU run takes, exercised on the CPU: the loss still falls, and the
    # saved weights stay fp32 (autocast computes in bf16, it never stores in it).
    torch.set_num_threads(1)
    pairs = tiny_pairs(6)
    config = tiny_train_config(
        max_steps=40, eval_every=20, label_smoothing=0.0, lr=2e-2, precision="bf16"
    )
    fit(pairs, pairs, tmp_path, model_config=TINY_MODEL, train_config=config, decode=DECODE,
        progress=False)  # fmt: skip
    history = json.loads((tmp_path / STATE_FILE).read_text())["state"]["history"]
    assert all(math.isfinite(h["train_loss"]) for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    weights = load_file(str(tmp_path / BEST_DIR / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}
    with pytest.raises(ValueError, match="precision='fp16'"):
        tiny_train_config(precision="fp16")


def test_an_extended_vocabulary_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    pairs = tiny_pairs(4)
    model_config = dataclasses.replace(TINY_MODEL, copy=True, extended_vocab=True)
    with pytest.raises(TrainingError, match="leave extended_vocab off"):
        fit(pairs, pairs, tmp_path / "run", model_config=model_config,
            train_config=tiny_train_config(max_steps=2), progress=False)  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_run_directory_is_never_silently_overwritten(tmp_path: Path) -> None:
    pairs = tiny_pairs(4)
    config = tiny_train_config(max_steps=2, eval_every=2, valid_sample=1)
    fit(pairs, pairs, tmp_path, model_config=TINY_MODEL, train_config=config, progress=False)
    with pytest.raises(TrainingError, match="pass --resume"):
        fit(pairs, pairs, tmp_path, model_config=TINY_MODEL, train_config=config, progress=False)
    with pytest.raises(TrainingError, match="nothing to resume"):
        fit(pairs, pairs, tmp_path / "new", model_config=TINY_MODEL, train_config=config,
            resume=True, progress=False)  # fmt: skip


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    pairs, valid = tiny_pairs(12), tiny_pairs(3, seed=1)

    def run(directory: Path, steps: int, resume: bool = False) -> list[dict[str, Any]]:
        config = tiny_train_config(max_steps=steps, eval_every=10, batch_tokens=150)
        fit(pairs, valid, directory, model_config=TINY_MODEL, train_config=config,
            decode=DECODE, resume=resume, progress=False)  # fmt: skip
        state = json.loads((directory / STATE_FILE).read_text())["state"]
        history: list[dict[str, Any]] = state["history"]
        return history

    straight = run(tmp_path / "straight", 40)
    run(tmp_path / "split", 20)
    resumed = run(tmp_path / "split", 40, resume=True)
    # Several epochs of several batches each: the position inside an epoch must survive too.
    assert straight[-1]["epoch"] > 2
    assert [h["step"] for h in resumed] == [h["step"] for h in straight] == [10, 20, 30, 40]
    for a, b in zip(straight, resumed, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["valid_nll"] == pytest.approx(b["valid_nll"], rel=1e-5)
    weights_a = load_file(str(tmp_path / "straight" / LAST_DIR / "model.safetensors"))
    weights_b = load_file(str(tmp_path / "split" / LAST_DIR / "model.safetensors"))
    for name, tensor in weights_a.items():
        torch.testing.assert_close(tensor, weights_b[name], rtol=1e-5, atol=1e-6)


def test_early_stopping_and_max_time(tmp_path: Path) -> None:
    pairs = tiny_pairs(6)
    # lr 0 cannot improve anything: the first validation is the best, then patience runs out.
    frozen = tiny_train_config(lr=1e-12, eval_every=2, patience=2, select_metric="loss")
    result = fit(pairs, pairs, tmp_path / "a", model_config=TINY_MODEL, train_config=frozen,
                 progress=False)  # fmt: skip
    assert result.stopped == "early_stopping" and result.steps == 6
    timed = tiny_train_config(max_time=0.5, eval_every=1000)
    result = fit(pairs, pairs, tmp_path / "b", model_config=TINY_MODEL, train_config=timed,
                 progress=False)  # fmt: skip
    assert result.stopped == "max_time"
    assert load_checkpoint(tmp_path / "b" / LAST_DIR).metadata["step"] == result.steps


def test_copy_and_coverage_train(tmp_path: Path) -> None:
    pairs = tiny_pairs(6)
    model = ModelConfig(vocab_size=64, embed_dim=16, hidden_size=16, num_layers=1,
                        copy=True, coverage=True)  # fmt: skip
    config = tiny_train_config(max_steps=30, eval_every=30, coverage_weight=1.0)
    result = fit(pairs, pairs, tmp_path, model_config=model, train_config=config, progress=False)
    assert math.isfinite(result.best["valid_nll"])
    assert load_checkpoint(result.best_dir).model_config.coverage


def test_the_plain_encoder_decoder_trains_and_decodes(tmp_path: Path) -> None:
    pairs = tiny_pairs(6)
    model = dataclasses.replace(TINY_MODEL, attention="none")
    config = tiny_train_config(max_steps=30, eval_every=30)
    result = fit(pairs, pairs, tmp_path, model_config=model, train_config=config, progress=False)
    assert math.isfinite(result.best["valid_nll"])
    summarizer = Summarizer.load(result.best_dir)
    assert summarizer.model.config.attention == "none"
    summaries = summarizer.summarize([text for text, _ in pairs])
    assert len(summaries) == len(pairs) and all(math.isfinite(s.score) for s in summaries)


def test_resume_keeps_the_runs_settings_but_not_its_stopping_rules(tmp_path: Path) -> None:
    pairs = tiny_pairs(6)
    first = tiny_train_config(max_steps=4, eval_every=4, valid_sample=1, seed=3)
    fit(pairs, pairs, tmp_path, model_config=TINY_MODEL, train_config=first, progress=False)
    longer = tiny_train_config(max_steps=8, eval_every=4, valid_sample=1, seed=99)
    result = fit(pairs, pairs, tmp_path, model_config=TINY_MODEL, train_config=longer,
                 resume=True, progress=False)  # fmt: skip
    assert result.steps == 8
    metadata = load_checkpoint(tmp_path / LAST_DIR).metadata
    assert metadata["train_config"]["seed"] == 3 and metadata["train_config"]["max_steps"] == 8
    with pytest.raises(TrainingError, match="training pairs differ"):
        fit(pairs[:5], pairs, tmp_path, model_config=TINY_MODEL, train_config=longer,
            resume=True, progress=False)  # fmt: skip


def _one_update(pairs: list[EncodedPair], groups: list[list[int]]) -> dict[str, torch.Tensor]:
    """The gradients ``_train_step`` leaves after one update over the batches ``groups``."""
    torch.manual_seed(0)
    model = Seq2Seq(dataclasses.replace(TINY_MODEL, dropout=0.0))
    run: Any = SimpleNamespace(
        model=model,
        state=SimpleNamespace(step=0),
        config=tiny_train_config(clip_norm=0.0),
        horizon=10,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        device="cpu",
    )
    _train_step(run, [collate([pairs[i] for i in group]) for group in groups])
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_gradient_accumulation_weighs_every_token_as_one_batch_would() -> None:
    rng = random.Random(0)
    pairs = [
        EncodedPair(src=[rng.randrange(4, 64) for _ in range(rng.randrange(3, 9))],
                    tgt=[rng.randrange(4, 64) for _ in range(rng.randrange(2, 6))])
        for _ in range(6)
    ]  # fmt: skip
    whole = _one_update(pairs, [[0, 1, 2, 3, 4, 5]])
    split = _one_update(pairs, [[0, 1], [2, 3, 4], [5]])
    assert whole.keys() == split.keys()
    for name, grad in whole.items():
        torch.testing.assert_close(split[name], grad, rtol=1e-4, atol=1e-6)
    # Averaging the batches' mean losses instead would weigh a short batch's tokens more.
    first, second = _one_update(pairs, [[0]]), _one_update(pairs, [[1, 2, 3, 4, 5]])
    name = next(iter(whole))
    assert not torch.allclose((first[name] + second[name]) / 2, whole[name], rtol=1e-3)


def test_accumulated_updates_count_as_one_step_each(tmp_path: Path) -> None:
    pairs = tiny_pairs(40)
    config = tiny_train_config(max_epochs=1, eval_every=0, batch_tokens=200)
    single = fit(pairs, pairs[:4], tmp_path / "1", model_config=TINY_MODEL, train_config=config,
                 progress=False)  # fmt: skip
    accumulated = fit(pairs, pairs[:4], tmp_path / "3", model_config=TINY_MODEL,
                      train_config=dataclasses.replace(config, grad_accumulation=3),
                      progress=False)  # fmt: skip
    assert single.steps > 3
    assert accumulated.steps == math.ceil(single.steps / 3)


def test_keep_checkpoints_keeps_the_newest_validations(tmp_path: Path) -> None:
    pairs = tiny_pairs(6)
    config = tiny_train_config(max_steps=10, eval_every=2, keep_checkpoints=2)
    fit(pairs, pairs, tmp_path, model_config=TINY_MODEL, train_config=config, progress=False)
    kept = sorted(p.name for p in (tmp_path / CHECKPOINTS_DIR).iterdir())
    assert kept == ["step-00000008", "step-00000010"]
    assert load_checkpoint(tmp_path / CHECKPOINTS_DIR / kept[-1]).metadata["step"] == 10
    record = average_checkpoints(last_checkpoints(tmp_path, 2), tmp_path / "averaged")
    assert [source["step"] for source in record["checkpoints"]] == [8, 10]


def test_lowercase_training_saves_a_lowercasing_tokenizer(tmp_path: Path) -> None:
    pairs = [(text.title(), summary.upper()) for text, summary in tiny_pairs(4)]
    config = tiny_train_config(max_steps=2, eval_every=2, valid_sample=1, lowercase=True)
    fit(pairs, pairs, tmp_path, model_config=TINY_MODEL, train_config=config, progress=False)
    tokenizer = load_checkpoint(tmp_path / BEST_DIR).tokenizer
    assert json.loads((tmp_path / BEST_DIR / "config.json").read_text())["tokenizer"]["lowercase"]
    assert tokenizer.encode(pairs[0][0]) == tokenizer.encode(pairs[0][0].lower())
