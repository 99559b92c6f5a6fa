"""Model API: shapes, normalisation, masking, config validation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from s2s_model import ModelConfig, Seq2Seq, load_checkpoint
from s2s_model.model import shift_right
from s2s_model.train import fit
from tests.conftest import tiny_model
from tests.s2s_model.test_train import tiny_pairs, tiny_train_config

SRC = torch.tensor([[5, 6, 7, 4], [4, 5, 0, 0]])
SRC_LEN = torch.tensor([4, 2])
TGT_IN = torch.tensor([[1, 5, 6], [1, 4, 4]])


def test_the_smallest_config_builds_a_working_model() -> None:
    model = Seq2Seq(ModelConfig(vocab_size=8, embed_dim=8, hidden_size=8, num_layers=1))
    log_probs = model(SRC, SRC_LEN, TGT_IN)
    assert log_probs.shape == (2, 3, 8)


@pytest.mark.parametrize("attention", ["general", "dot", "additive"])
@pytest.mark.parametrize("copy", [False, True])
@pytest.mark.parametrize("coverage", [False, True])
def test_outputs_are_normalised_log_probs(attention: str, copy: bool, coverage: bool) -> None:
    model = tiny_model(8, attention=attention, copy=copy, coverage=coverage, num_layers=2)
    out = model.teacher_forced(SRC, SRC_LEN, TGT_IN)
    assert torch.allclose(out.log_probs.exp().sum(-1), torch.ones(2, 3), atol=1e-4)
    assert out.coverage_loss.shape == (2, 3)
    assert bool((out.coverage_loss > 0).any()) == coverage


def test_padding_never_changes_a_document() -> None:
    model = tiny_model(8, attention="additive", copy=True, coverage=True).eval()
    alone = model(SRC[1:, :2], SRC_LEN[1:], TGT_IN[1:])
    padded = model(SRC, SRC_LEN, TGT_IN)[1:]
    assert torch.allclose(alone, padded, atol=1e-6)


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU"])
def test_decode_step_matches_teacher_forcing(rnn_type: str) -> None:
    model = tiny_model(8, num_layers=2, rnn_type=rnn_type).eval()
    expected = model(SRC, SRC_LEN, TGT_IN)
    memory, state = model.encode(SRC, SRC_LEN)
    for t in range(TGT_IN.size(1)):
        log_probs, state = model.decode_step(TGT_IN[:, t], state, memory)
        assert torch.allclose(log_probs, expected[:, t], atol=1e-6)


def test_copy_puts_mass_on_source_tokens() -> None:
    model = tiny_model(8, copy=True).eval()
    assert model.decoder.copy_gate is not None
    with torch.no_grad():
        model.decoder.copy_gate.bias.fill_(-50.0)  # p_gen ~ 0: copy only
    log_probs = model(SRC, SRC_LEN, TGT_IN)
    probs = log_probs.exp()
    assert torch.allclose(probs[1, :, [4, 5]].sum(-1), torch.ones(3), atol=1e-4)


@pytest.mark.parametrize("bridge", [True, False])
def test_without_attention_only_the_final_encoder_states_reach_the_decoder(bridge: bool) -> None:
    model = tiny_model(8, attention="none", num_layers=2, bridge=bridge).eval()
    assert not any("attention" in name for name, _ in model.named_parameters())
    expected = model(SRC, SRC_LEN, TGT_IN)
    assert torch.allclose(expected.exp().sum(-1), torch.ones(2, 3), atol=1e-4)
    memory, state = model.encode(SRC, SRC_LEN)
    blank = dataclasses.replace(memory, outputs=torch.randn_like(memory.outputs))
    blank = dataclasses.replace(blank, keys=torch.randn_like(memory.keys))
    for t in range(TGT_IN.size(1)):
        log_probs, state = model.decode_step(TGT_IN[:, t], state, blank)
        assert torch.allclose(log_probs, expected[:, t], atol=1e-6)


def test_empty_source_is_refused() -> None:
    model = tiny_model(8)
    with pytest.raises(ValueError, match="at least one token"):
        model.encode(SRC, torch.tensor([4, 0]))


def test_shift_right() -> None:
    assert shift_right(torch.tensor([[5, 6, 2, 0]])).tolist() == [[1, 5, 6, 2]]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"attention": "luong"}, "attention"),
        ({"hidden_size": 7}, "even"),
        ({"tie_embeddings": True, "embed_dim": 4}, "tie_embeddings"),
        ({"vocab_size": 3}, "vocab_size"),
        ({"dropout": 1.5}, "dropout"),
        ({"attention": "none", "copy": True}, "cannot copy"),
        ({"attention": "none", "coverage": True}, "cannot copy or keep coverage"),
        ({"rnn_type": "RNN"}, "rnn_type"),
        ({"copy_gate": "pointer"}, "copy_gate"),
        ({"extended_vocab": True}, "needs copy"),
    ],
)
def test_bad_configs_are_refused(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"vocab_size": 8, "embed_dim": 8, "hidden_size": 8, "num_layers": 1}
    base.update(fields)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("bidirectional", [True, False])
@torch.no_grad()
def test_gru_cells_compute_what_torchs_gru_computes(bidirectional: bool) -> None:
    """The decoder's cell-by-cell GRU steps and the encoder against ``nn.GRU`` run whole."""
    model = tiny_model(8, rnn_type="GRU", num_layers=2, bridge=False, bidirectional=bidirectional)
    assert model.encoder.rnn is model.encoder.gru and model.decoder.rnn is model.decoder.gru
    assert model.bridge is None and "encoder.gru.weight_ih_l1" in model.state_dict()
    _, state = model.encode(SRC, SRC_LEN)
    assert state.c is None and state.h.shape == (2, 2, 16)
    reference = torch.nn.GRU(16 + 16, 16, num_layers=2)
    reference.load_state_dict(model.decoder.gru.state_dict())
    feed = torch.randn(2, 16)
    emb = model.decoder.embedding(TGT_IN[:, 0])
    expected, expected_h = reference(torch.cat([emb, feed], -1).unsqueeze(0), state.h)
    out, h, c = model.decoder._rnn_step(torch.cat([emb, feed], -1), state.h, None)
    assert c is None
    assert torch.allclose(out, expected[0], atol=1e-6) and torch.allclose(h, expected_h, atol=1e-6)


def test_a_gru_bridge_maps_the_hidden_state_only() -> None:
    model = tiny_model(8, rnn_type="GRU")
    assert model.bridge is not None and model.bridge.c is None
    names = {name for name, _ in model.named_parameters() if name.startswith("bridge.")}
    assert names == {"bridge.h.weight", "bridge.h.bias"}
    _, state = model.encode(SRC, SRC_LEN)
    assert state.c is None and bool((state.h >= 0).all())  # the bridge's ReLU


def test_a_gru_model_trains_and_its_checkpoint_says_gru(tmp_path: Path) -> None:
    pairs = tiny_pairs(6)
    model = ModelConfig(vocab_size=64, embed_dim=16, hidden_size=16, num_layers=1,
                        rnn_type="GRU", copy=True)  # fmt: skip
    config = tiny_train_config(max_steps=20, eval_every=20)
    result = fit(pairs, pairs, tmp_path, model_config=model, train_config=config, progress=False)
    assert math.isfinite(result.best["valid_nll"])
    assert load_checkpoint(result.best_dir).model_config.rnn_type == "GRU"


@pytest.mark.parametrize("gate", ["see", "opennmt"])
def test_the_extended_vocabulary_adds_a_column_per_source_position(gate: str) -> None:
    """Ids 8 + p are unknown words first at position p: read as UNK, copied to column 8 + p."""
    model = tiny_model(8, copy=True, copy_gate=gate, extended_vocab=True, attention="additive")
    src = torch.tensor([[5, 8, 6, 8, 12], [8, 4, 0, 0, 0]])  # doc 0: unknown at 1 (twice), 4
    lengths = torch.tensor([5, 2])
    tgt_in = torch.tensor([[1, 8, 5], [1, 8, 4]])
    log_probs = model(src, lengths, tgt_in)  # (B, T, 8 + 5)
    assert log_probs.shape == (2, 3, 13)
    probs = log_probs.exp()
    assert torch.allclose(probs.sum(-1), torch.ones(2, 3), atol=1e-5)
    assert bool((probs[0, :, [9, 10, 11]] == 0).all()) and bool((probs[0, :, [8, 12]] > 0).all())
    assert bool((probs[1, :, 8:9] > 0).all()) and bool((probs[1, :, 9:] == 0).all())
    memory, _ = model.encode(src, lengths)
    as_unk, _ = model.encode(src.masked_fill(src >= 8, 3), lengths)
    assert torch.equal(memory.outputs, as_unk.outputs)  # the encoder reads UNK
    assert memory.src.tolist() == src.tolist()  # the copy keeps the extended ids
