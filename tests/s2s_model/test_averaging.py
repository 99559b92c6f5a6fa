"""Checkpoint averaging (``s2s_model.averaging``) on tiny checkpoints saved by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s2s_model import DecodeConfig, load_checkpoint, save_checkpoint
from s2s_model.averaging import (
    AveragingError,
    average_checkpoints,
    last_checkpoints,
    step_dir_name,
)
from s2s_model.tokenizer import WORD_SPECIALS, Tokenizer, WordTokenizer
from tests.conftest import tiny_model

STEPS = (200, 400, 1200, 800)  # saved in this order; 1200 is the newest


def make_run(directory: Path, tokenizer: Tokenizer) -> Path:
    """A run directory holding RUN/checkpoints/step-* made by save_checkpoint, seeds differing."""
    for seed, step in enumerate(STEPS):
        model = tiny_model(tokenizer.vocab_size, seed=seed)
        decode = DecodeConfig(beam_size=2 + seed)
        checkpoint = directory / "checkpoints" / step_dir_name(step)
        metadata = {"step": step, "note": f"seed {seed}"}
        save_checkpoint(checkpoint, model, tokenizer, decode=decode, metadata=metadata)
    (directory / "checkpoints" / "step-12").mkdir()  # not an 8-digit step: ignored
    (directory / "checkpoints" / "step-00009999").write_text("a file, not a checkpoint")
    return directory


@pytest.fixture()
def run(tmp_path: Path, tiny_tokenizer: Tokenizer) -> Path:
    return make_run(tmp_path, tiny_tokenizer)


def test_the_last_checkpoints_are_the_newest_steps_oldest_first(run: Path) -> None:
    names = [p.name for p in last_checkpoints(run, 3)]
    assert names == ["step-00000400", "step-00000800", "step-00001200"]
    with pytest.raises(AveragingError, match=r"holds 4 step checkpoints .*, 5 needed"):
        last_checkpoints(run, 5)


def test_weights_are_the_mean_and_the_newest_keeps_the_rest(run: Path) -> None:
    paths = last_checkpoints(run, 3)
    record = average_checkpoints(paths, run / "averaged")
    inputs = [load_checkpoint(p) for p in paths]
    out = load_checkpoint(run / "averaged")
    weights = [c.model.state_dict() for c in inputs]
    for name, tensor in out.model.state_dict().items():
        expected = sum(w[name] for w in weights) / 3
        assert torch.allclose(tensor, expected, atol=1e-6), name
    newest = weights[-1]
    assert any(not torch.equal(t, newest[n]) for n, t in out.model.state_dict().items())
    assert out.decode == inputs[-1].decode == DecodeConfig(beam_size=2 + STEPS.index(1200))
    assert out.tokenizer.to_bytes() == inputs[-1].tokenizer.to_bytes()
    assert out.metadata["note"] == "seed 2" and out.metadata["step"] == 1200
    assert out.metadata["averaged"] == record
    assert [c["step"] for c in record["checkpoints"]] == [400, 800, 1200]
    assert [c["fingerprint"] for c in record["checkpoints"]] == [c.fingerprint for c in inputs]


def test_checkpoints_of_another_architecture_are_refused(
    run: Path, tiny_tokenizer: Tokenizer
) -> None:
    other = run / "wide"
    save_checkpoint(other, tiny_model(tiny_tokenizer.vocab_size, hidden_size=32), tiny_tokenizer)
    newest = last_checkpoints(run, 1)[0]
    with pytest.raises(AveragingError, match=r"hidden_size 16 vs 32\): only checkpoints of one"):
        average_checkpoints([newest, other], run / "out")
    assert not (run / "out").exists()


def test_checkpoints_with_another_tokenizer_are_refused(
    run: Path, tiny_tokenizer: Tokenizer
) -> None:
    size = tiny_tokenizer.vocab_size
    words = WordTokenizer([*WORD_SPECIALS, *(f"w{i}" for i in range(size - len(WORD_SPECIALS)))])
    save_checkpoint(run / "words", tiny_model(size), words)
    with pytest.raises(AveragingError, match="have different tokenizers"):
        average_checkpoints([last_checkpoints(run, 1)[0], run / "words"], run / "out")


def test_bad_requests_are_refused_before_any_work(run: Path) -> None:
    newest = last_checkpoints(run, 2)
    with pytest.raises(AveragingError, match="at least two checkpoints, got 1"):
        average_checkpoints(newest[:1], run / "out")
    with pytest.raises(AveragingError, match="named twice"):
        average_checkpoints([newest[0], newest[0]], run / "out")
    with pytest.raises(AveragingError, match="is one of the checkpoints being averaged"):
        average_checkpoints(newest, newest[1])
