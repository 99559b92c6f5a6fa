"""OpenNMT-py import: a tiny OpenNMT-style checkpoint made here, checked against an independent
re-implementation of OpenNMT-py 3.5's RNN forward pass (no OpenNMT-py install needed)."""

from __future__ import annotations

import argparse
import math
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from s2s_cli.opennmt_import import import_opennmt
from s2s_model import DecodeConfig, Summarizer, WordTokenizer, beam_search, load_checkpoint
from s2s_model.opennmt import OpenNMTImportError
from tests.s2s_model.test_search import SCRIPT, A, B, ScriptedModel

VOCAB = ["<unk>", "<blank>", "<s>", "</s>", *[f"w{i}" for i in range(12)]]
E, H, L = 6, 8, 2


def onmt_options(**overrides: object) -> argparse.Namespace:
    options = {
        "model_task": "seq2seq", "encoder_type": "brnn", "decoder_type": "rnn",
        "rnn_type": "LSTM", "enc_layers": L, "dec_layers": L, "hidden_size": H,
        "enc_hid_size": H, "dec_hid_size": H, "word_vec_size": E, "src_word_vec_size": E,
        "tgt_word_vec_size": E, "share_embeddings": True, "share_decoder_embeddings": False,
        "global_attention": "general", "global_attention_function": "softmax",
        "generator_function": "softmax", "input_feed": 1, "bridge": True, "copy_attn": False,
        "reuse_copy_attn": False, "coverage_attn": False, "context_gate": None,
        "position_encoding": False,
        "share_vocab": True,
    }  # fmt: skip
    options.update(overrides)
    return argparse.Namespace(**options)


def onmt_tensors(options: argparse.Namespace, seed: int = 0) -> dict[str, dict[str, Tensor]]:
    """Random weights under OpenNMT-py's parameter names and shapes."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen) * 0.5

    v, directions = len(VOCAB), 2 if options.encoder_type == "brnn" else 1
    per_dir = H // directions
    gates = 3 if options.rnn_type == "GRU" else 4
    model = {"encoder.embeddings.make_embedding.emb_luts.0.weight": rand(v, E)}
    model["decoder.embeddings.make_embedding.emb_luts.0.weight"] = (
        model["encoder.embeddings.make_embedding.emb_luts.0.weight"]
        if options.share_embeddings
        else rand(v, E)
    )
    for layer in range(L):
        for suffix in [""] if directions == 1 else ["", "_reverse"]:
            size_in = E if layer == 0 else H
            model[f"encoder.rnn.weight_ih_l{layer}{suffix}"] = rand(gates * per_dir, size_in)
            model[f"encoder.rnn.weight_hh_l{layer}{suffix}"] = rand(gates * per_dir, per_dir)
            model[f"encoder.rnn.bias_ih_l{layer}{suffix}"] = rand(gates * per_dir)
            model[f"encoder.rnn.bias_hh_l{layer}{suffix}"] = rand(gates * per_dir)
        size_in = E + H if layer == 0 else H
        model[f"decoder.rnn.layers.{layer}.weight_ih"] = rand(gates * H, size_in)
        model[f"decoder.rnn.layers.{layer}.weight_hh"] = rand(gates * H, H)
        model[f"decoder.rnn.layers.{layer}.bias_ih"] = rand(gates * H)
        model[f"decoder.rnn.layers.{layer}.bias_hh"] = rand(gates * H)
    if options.bridge:
        total = per_dir * L
        for i in range(2 if options.rnn_type == "LSTM" else 1):
            model[f"encoder.bridge.{i}.weight"] = rand(total, total)
            model[f"encoder.bridge.{i}.bias"] = rand(total)
    if options.global_attention == "general":
        model["decoder.attn.linear_in.weight"] = rand(H, H)
    if options.global_attention == "mlp":
        model["decoder.attn.linear_context.weight"] = rand(H, H)
        model["decoder.attn.linear_query.weight"] = rand(H, H)
        model["decoder.attn.linear_query.bias"] = rand(H)
        model["decoder.attn.v.weight"] = rand(1, H)
        model["decoder.attn.linear_out.bias"] = rand(H)
    model["decoder.attn.linear_out.weight"] = rand(H, 2 * H)
    if options.coverage_attn:
        model["decoder.attn.linear_cover.weight"] = rand(H, 1)
    if options.copy_attn:
        generator = {"linear.weight": rand(v, H), "linear.bias": rand(v)}
        generator |= {"linear_copy.weight": rand(1, H), "linear_copy.bias": rand(1)}
        return {"model": model, "generator": generator}
    return {"model": model, "generator": {"weight": rand(v, H), "bias": rand(v)}}


def write_checkpoint(path: Path, options: argparse.Namespace, seed: int = 0) -> Path:
    data: dict[str, Any] = dict(onmt_tensors(options, seed))
    data["vocab"] = {"src": VOCAB, "tgt": VOCAB, "data_task": "seq2seq"}
    data["opt"] = options
    torch.save(data, path)
    return path


def onmt_reference(
    t: dict[str, Tensor],
    gen: dict[str, Tensor],
    options: argparse.Namespace,
    src: list[int],
    tgt_in: list[int],
    copy_map: list[int] | None = None,
) -> Tensor:
    """OpenNMT-py 3.5's RNN forward for one document, step by step: (T, V) log-probs; with
    ``copy_attn`` (T, V + X) over its extended vocabulary, ``copy_map`` giving each source
    position's index among the document's X words (its ``src_map``; 0-3 its specials).

    Its input-feeding decoder never passes the coverage to the attention, so ``coverage_attn``
    changes nothing here (``linear_cover`` is trained, never read)."""
    directions = 2 if options.encoder_type == "brnn" else 1
    per_dir = H // directions
    gru = options.rnn_type == "GRU"
    emb = t["encoder.embeddings.make_embedding.emb_luts.0.weight"]
    cells = torch.nn.GRU if gru else torch.nn.LSTM
    rnn = cells(E, per_dir, L, bidirectional=directions == 2, batch_first=True)
    rnn.load_state_dict(
        {k.removeprefix("encoder.rnn."): v for k, v in t.items() if k.startswith("encoder.rnn.")}
    )
    out, final = rnn(emb[src].unsqueeze(0))  # (1, S, H), (L * D, 1, H / D)
    h, c = (final, final) if gru else final
    if options.bridge:

        def bottle(i: int, states: Tensor) -> Tensor:
            states = states.permute(1, 0, 2).contiguous()
            size = states.size()
            flat = states.view(-1, per_dir * L) @ t[f"encoder.bridge.{i}.weight"].T
            result = F.relu(flat + t[f"encoder.bridge.{i}.bias"]).view(size)
            return result.permute(1, 0, 2).contiguous()

        h, c = bottle(0, h), c if gru else bottle(1, c)
    if directions == 2:
        h = torch.cat([h[0::2], h[1::2]], 2)
        c = torch.cat([c[0::2], c[1::2]], 2)
    hs, cs = list(h[:, 0]), list(c[:, 0])
    feed = torch.zeros(H)
    memory = out[0]  # (S, H)
    demb = t["decoder.embeddings.make_embedding.emb_luts.0.weight"]
    steps = []
    for token in tgt_in:
        x = torch.cat([demb[token], feed])
        for layer in range(L):
            p = f"decoder.rnn.layers.{layer}."
            ih = t[p + "weight_ih"] @ x + t[p + "bias_ih"]
            hh = t[p + "weight_hh"] @ hs[layer] + t[p + "bias_hh"]
            if gru:  # torch.nn.GRUCell
                (ir, iz, in_), (hr, hz, hn) = ih.chunk(3), hh.chunk(3)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                n = torch.tanh(in_ + r * hn)
                hs[layer] = (1 - z) * n + z * hs[layer]
            else:
                i, f, g, o = (ih + hh).chunk(4)
                cs[layer] = torch.sigmoid(f) * cs[layer] + torch.sigmoid(i) * torch.tanh(g)
                hs[layer] = torch.sigmoid(o) * torch.tanh(cs[layer])
            x = hs[layer]
        query = x
        if options.global_attention == "general":
            scores = memory @ (t["decoder.attn.linear_in.weight"] @ query)
        elif options.global_attention == "dot":
            scores = memory @ query
        else:
            wq = t["decoder.attn.linear_query.weight"] @ query + t["decoder.attn.linear_query.bias"]
            uh = memory @ t["decoder.attn.linear_context.weight"].T
            scores = (torch.tanh(wq + uh) @ t["decoder.attn.v.weight"].T).squeeze(-1)
        align = torch.softmax(scores, 0)
        context = align @ memory
        attn_h = t["decoder.attn.linear_out.weight"] @ torch.cat([context, query])
        if options.global_attention == "mlp":
            attn_h = attn_h + t["decoder.attn.linear_out.bias"]
        else:
            attn_h = torch.tanh(attn_h)
        feed = attn_h
        if copy_map is None:
            steps.append(F.log_softmax(gen["weight"] @ attn_h + gen["bias"], -1))
        else:
            steps.append(copy_generator(gen, attn_h, align, copy_map).log())
    return torch.stack(steps)


def copy_generator(
    gen: dict[str, Tensor], attn_h: Tensor, align: Tensor, copy_map: list[int]
) -> Tensor:
    """OpenNMT-py's CopyGenerator, then collapse_copy_scores for a batch of one: (V + X,)."""
    logits = gen["linear.weight"] @ attn_h + gen["linear.bias"]
    logits[1] = -math.inf  # <blank>
    p_copy = torch.sigmoid(gen["linear_copy.weight"] @ attn_h + gen["linear_copy.bias"])
    words = max(copy_map) + 1
    src_map = F.one_hot(torch.tensor(copy_map), words).float()  # (S, X)
    copied = (align * p_copy) @ src_map  # (X,)
    probs = torch.cat([torch.softmax(logits, 0) * (1 - p_copy), copied])
    for j in range(1, words):  # a source word in the vocabulary takes its copied mass home
        word = EXTENDED[j]
        if word in VOCAB and VOCAB.index(word) != 0:
            probs[VOCAB.index(word)] += probs[len(VOCAB) + j]
            probs[len(VOCAB) + j] = 1e-10
    return probs


# fmt: on


# A copy test's source (one document), and its extended vocabulary as OpenNMT-py builds it
# (specials first, then the words; its order among words only breaks ties between columns).
COPY_SOURCE = "w5 zeta w4 w9 zeta w7 omega w5"
EXTENDED = ["<unk>", "<blank>", "<s>", "</s>", "w5", "zeta", "w4", "w9", "w7", "omega"]


def ours(onmt_id: int) -> int:
    """OpenNMT-py id -> our id: its specials move to our PAD, BOS, EOS, UNK slots."""
    return {1: 0, 2: 1, 3: 2, 0: 3}.get(onmt_id, onmt_id)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"global_attention": "mlp"},
        {"global_attention": "dot", "bridge": False},
        {"encoder_type": "rnn", "share_embeddings": False},
        {"rnn_type": "GRU", "global_attention": "mlp", "coverage_attn": True},
        {"rnn_type": "GRU", "encoder_type": "rnn", "bridge": False},
    ],
)
def test_converted_model_computes_what_opennmt_computes(
    tmp_path: Path, overrides: dict[str, object]
) -> None:
    options = onmt_options(**overrides)
    path = write_checkpoint(tmp_path / "model_step_10.pt", options)
    import_opennmt(path, tmp_path / "ours")
    converted = load_checkpoint(tmp_path / "ours")
    raw = torch.load(path, weights_only=False)
    src, tgt_in = [5, 9, 4, 14, 7, 0], [2, 6, 11, 8]  # OpenNMT-py ids; tgt starts with <s>
    with torch.no_grad():
        expected = onmt_reference(raw["model"], raw["generator"], options, src, tgt_in)
        got = converted.model(
            torch.tensor([[ours(i) for i in src]]),
            torch.tensor([len(src)]),
            torch.tensor([[ours(i) for i in tgt_in]]),
        )[0]
    order = [1, 2, 3, 0, *range(4, len(VOCAB))]  # our id -> OpenNMT-py id
    assert torch.allclose(got, expected[:, order], atol=1e-5)
    assert converted.model_config.rnn_type == options.rnn_type
    assert not converted.model_config.coverage  # OpenNMT-py 3.5 never reads it at inference


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU"])
def test_the_copy_generator_converts_with_its_extended_vocabulary(
    tmp_path: Path, rnn_type: str
) -> None:
    """The summarization recipe: copy_attn reusing mlp attention, coverage, bridge. Every
    column agrees: the vocabulary's (PAD aside: OpenNMT-py's is log 0, ours floored, never
    emitted) and each unknown source word's, ours at V + its first position."""
    options = onmt_options(
        rnn_type=rnn_type, global_attention="mlp", copy_attn=True, reuse_copy_attn=True,
        coverage_attn=True, copy_attn_force=True, copy_loss_by_seqlength=True,
    )  # fmt: skip
    path = write_checkpoint(tmp_path / "model_step_10.pt", options)
    import_opennmt(path, tmp_path / "ours")
    converted = load_checkpoint(tmp_path / "ours")
    assert converted.model_config.extended_vocab and converted.model_config.copy_gate == "opennmt"
    raw = torch.load(path, weights_only=False)
    words = COPY_SOURCE.split()
    src = [VOCAB.index(w) if w in VOCAB else 0 for w in words]
    tgt_in = [2, 9, 0, 8]  # <s> w5 <unk> w4: a copied unknown word is fed back as <unk>
    tokenizer = converted.tokenizer
    assert isinstance(tokenizer, WordTokenizer)
    ids = tokenizer.encode_extended(COPY_SOURCE)
    with torch.no_grad():
        expected = onmt_reference(
            raw["model"], raw["generator"], options, src, tgt_in, [EXTENDED.index(w) for w in words]
        )
        got = converted.model(
            torch.tensor([ids]), torch.tensor([len(ids)]), torch.tensor([[ours(i) for i in tgt_in]])
        )[0]
    v = len(VOCAB)
    assert got.shape == (len(tgt_in), v + len(words))
    order = [1, 2, 3, 0, *range(4, v)]  # our id -> OpenNMT-py id
    assert torch.allclose(got[:, 1:v], expected[:, order[1:]], atol=1e-5)
    for word in ("zeta", "omega"):
        ours_column = v + words.index(word)
        theirs = expected[:, v + EXTENDED.index(word)]
        assert torch.allclose(got[:, ours_column], theirs, atol=1e-5)
        assert bool((theirs > math.log(1e-3)).all())  # real copied mass, not a floor
    unknown_firsts = {v + words.index(w) for w in ("zeta", "omega")}
    others = [c for c in range(v, v + len(words)) if c not in unknown_firsts]
    assert bool(torch.isinf(got[:, others]).all())


def test_vocabulary_and_decoding_come_along(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "m.pt", onmt_options())
    decode = import_opennmt(path, tmp_path / "ours")
    assert decode.compat == "opennmt"
    summarizer = Summarizer.load(tmp_path / "ours")
    tokenizer = summarizer.tokenizer
    assert isinstance(tokenizer, WordTokenizer)
    assert tokenizer.encode("w3 w0 never-seen") == [7, 4, 3]
    assert tokenizer.decode([1, 7, 3, 2, 0]) == "w3 <unk>"
    out = summarizer.summarize(["w1 w2 w3 w4", "w5"], DecodeConfig(beam_size=3, max_len=5))
    assert all(set(s.text.split()) <= set(VOCAB) for s in out)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"copy_attn": True, "reuse_copy_attn": False}, "-reuse_copy_attn"),
        ({"encoder_type": "transformer"}, "-encoder_type"),
        ({"dec_layers": 1}, "-enc_layers"),
        ({"rnn_type": "SRU"}, "-rnn_type"),
        ({"global_attention": "luong"}, "-global_attention"),
    ],
)
def test_unsupported_options_are_refused_by_name(
    tmp_path: Path, overrides: dict[str, object], named: str
) -> None:
    path = write_checkpoint(tmp_path / "m.pt", onmt_options())
    data = torch.load(path, weights_only=False)
    data["opt"] = onmt_options(**overrides)
    torch.save(data, path)
    with pytest.raises(OpenNMTImportError, match=named):
        import_opennmt(path, tmp_path / "ours")
    assert not (tmp_path / "ours").exists()


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "ran"))


def test_a_checkpoint_with_foreign_code_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    data = torch.load(write_checkpoint(tmp_path / "m.pt", onmt_options()), weights_only=False)
    data["opt"] = Payload(marker)
    with open(path, "wb") as handle:
        # Protocol 2, the one torch.save writes: torch.load warns about any other.
        pickle.dump(data, handle, protocol=2)
    with pytest.raises(OpenNMTImportError, match="not a readable OpenNMT-py checkpoint"):
        import_opennmt(path, tmp_path / "ours")
    assert not marker.exists()


# --- the OpenNMT-py beam rule, computed by hand on the scripted decoder --------------------


def run(config: DecodeConfig):  # type: ignore[no-untyped-def]
    src = torch.full((1, 3), 7)
    return beam_search(ScriptedModel(SCRIPT), src, torch.tensor([3]), config)[0]  # type: ignore[arg-type]


def test_opennmt_rule_stops_when_the_best_candidate_ends() -> None:
    # Step 2 ranks B EOS (.36) first: OpenNMT-py stops there. Its avg penalty counts BOS and EOS:
    # log(.36) / 3. Our own rule keeps searching and prefers A A (log(.3) / 3).
    config = DecodeConfig(beam_size=2, max_len=3, length_penalty="avg", compat="opennmt")
    (best,) = run(config)
    assert best.tokens == [B]
    assert best.score == pytest.approx(math.log(0.36) / 3, abs=1e-6)
    assert run(DecodeConfig(beam_size=2, max_len=3, length_penalty="avg"))[0].tokens == [A, A]


def test_opennmt_rule_ends_at_max_len_without_eos() -> None:
    (best,) = run(DecodeConfig(beam_size=2, max_len=1, compat="opennmt"))
    assert best.tokens == [A]
    assert best.log_prob == pytest.approx(math.log(0.6), abs=1e-6)  # no EOS log-prob added


def test_the_import_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from s2s_cli.main import main

    path = write_checkpoint(tmp_path / "model_step_10.pt", onmt_options())
    result = CliRunner().invoke(main, ["import-opennmt", str(path), str(tmp_path / "ours")])
    assert result.exit_code == 0, result.output
    assert "compat opennmt" in result.output
    assert load_checkpoint(tmp_path / "ours").tokenizer.vocab_size == len(VOCAB)
    bad = CliRunner().invoke(
        main, ["import-opennmt", str(tmp_path / "none.pt"), str(tmp_path / "x")]
    )
    assert bad.exit_code == 1
    assert "does not exist" in bad.output and "Traceback" not in bad.output
