"""Convert an OpenNMT-py 3.x RNN model into this project's ``Seq2Seq``.

This module only maps tensors and settings that the caller has already read; it never opens a
pickle. Reading the ``.pt`` file (which needs a restricted unpickler) is the import command's
job, and happens nowhere else.

Supported: ``rnn`` / ``brnn`` encoders of LSTM or GRU cells, the input-feeding ``rnn`` decoder,
global attention ``dot`` / ``general`` / ``mlp``, with or without ``bridge``, shared or separate
embeddings, tied or separate generator, a shared vocabulary; and the summarization recipe's
options: ``copy_attn`` with ``reuse_copy_attn`` (OpenNMT-py's CopyGenerator over an extended
vocabulary: our ``copy_gate='opennmt'`` with ``extended_vocab``; ``copy_attn_force`` and
``copy_loss_by_seqlength`` change only the training loss) and ``coverage_attn`` (OpenNMT-py 3.5's
input-feeding decoder never passes the coverage to its attention, so it changes only the
training loss too: ``linear_cover`` is left behind and our model keeps coverage off). Anything
else is refused by option name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from s2s_model.config import DecodeConfig, ModelConfig
from s2s_model.errors import S2SError
from s2s_model.model import Seq2Seq
from s2s_model.rnn import rnn_name
from s2s_model.tokenizer import WORD_SPECIALS, WordTokenizer

ONMT_SPECIALS = ("<blank>", "<s>", "</s>", "<unk>")  # in our PAD, BOS, EOS, UNK order
ATTENTION = {"dot": "dot", "general": "general", "mlp": "additive"}

# (option, value OpenNMT-py must have, why we need it)
REQUIRED = (
    ("model_task", "seq2seq", "only sequence-to-sequence models convert"),
    ("decoder_type", "rnn", "only the RNN decoder converts"),
    ("input_feed", 1, "only the input-feeding decoder converts"),
    ("context_gate", None, "context gates are not supported"),
    ("position_encoding", False, "position encodings are not supported"),
    ("global_attention_function", "softmax", "only softmax attention converts"),
    ("generator_function", "softmax", "only a softmax generator converts"),
    ("share_vocab", True, "only a shared source/target vocabulary converts"),
)


RNN_TYPES = ("LSTM", "GRU")


class OpenNMTImportError(S2SError, ValueError):
    """An OpenNMT-py checkpoint this converter cannot take; the message names the option."""


def convert_opennmt(
    model_tensors: Mapping[str, Tensor],
    generator_tensors: Mapping[str, Tensor],
    vocab: Sequence[str],
    options: Mapping[str, Any],
) -> tuple[Seq2Seq, WordTokenizer, DecodeConfig]:
    """Build our model, word tokenizer and matching decode settings from an OpenNMT-py model.

    Args:
        model_tensors: the checkpoint's ``model`` state dict.
        generator_tensors: its ``generator`` state dict: ``weight`` (V, H) and ``bias`` (V,), or
            with ``copy_attn`` ``linear.*`` and ``linear_copy.*`` (weight (1, H), bias (1,)).
        vocab: its (shared) vocabulary, OpenNMT-py's specials included.
        options: its ``opt`` namespace as a mapping.
    """
    config = model_config(options, len(vocab))
    order = _vocab_order(vocab)
    tokens = list(WORD_SPECIALS) + [vocab[i] for i in order[len(WORD_SPECIALS) :]]
    state = _state_dict(config, model_tensors, generator_tensors, order)
    model = Seq2Seq(config)
    model.load_state_dict(state, strict=True)
    decode = DecodeConfig(
        beam_size=5, max_len=250, max_len_b=250, length_penalty="avg", alpha=1.0, compat="opennmt"
    )
    return model.eval(), WordTokenizer(tokens), decode


def model_config(options: Mapping[str, Any], vocab_size: int) -> ModelConfig:
    """Our ``ModelConfig`` for OpenNMT-py options, or a refusal naming the option."""
    for name, wanted, why in REQUIRED:
        if name in options and options[name] != wanted:
            raise OpenNMTImportError(f"-{name} {options[name]!r}: {why} (need {wanted!r})")
    rnn_type = options.get("rnn_type", "LSTM")
    if rnn_type not in RNN_TYPES:
        raise OpenNMTImportError(f"-rnn_type {rnn_type!r}: only {list(RNN_TYPES)} cells convert")
    copy = bool(options.get("copy_attn", False))
    if copy and not options.get("reuse_copy_attn", False):
        raise OpenNMTImportError(
            "-copy_attn without -reuse_copy_attn: OpenNMT-py 3.5's separate copy attention reads"
            " padded source positions (its results depend on the batch); only reuse_copy_attn"
            " converts"
        )
    encoder = options.get("encoder_type")
    if encoder not in ("rnn", "brnn"):
        raise OpenNMTImportError(f"-encoder_type {encoder!r}: only 'rnn' and 'brnn' convert")
    if options.get("enc_layers") != options.get("dec_layers"):
        raise OpenNMTImportError(
            f"-enc_layers {options.get('enc_layers')} != -dec_layers {options.get('dec_layers')}:"
            " only equal depths convert"
        )
    attention = options.get("global_attention")
    if attention not in ATTENTION:
        raise OpenNMTImportError(f"-global_attention {attention!r}: need one of {list(ATTENTION)}")
    hidden = int(options["hidden_size"])
    for name in ("enc_hid_size", "dec_hid_size"):
        if options.get(name, hidden) != hidden:
            raise OpenNMTImportError(f"-{name} {options[name]} != -hidden_size {hidden}")
    if options.get("src_word_vec_size") != options.get("tgt_word_vec_size"):
        raise OpenNMTImportError("source and target embedding sizes differ: not supported")
    return ModelConfig(
        vocab_size=vocab_size,
        embed_dim=int(options["tgt_word_vec_size"]),
        hidden_size=hidden,
        num_layers=int(options["dec_layers"]),
        rnn_type=rnn_type,
        attention=ATTENTION[attention],  # type: ignore[arg-type]
        copy=copy,
        copy_gate="opennmt",
        extended_vocab=copy,
        bidirectional=encoder == "brnn",
        bridge=bool(options.get("bridge", False)),
        share_embeddings=bool(options.get("share_embeddings", False)),
        tie_embeddings=bool(options.get("share_decoder_embeddings", False)),
        dropout=0.0,
    )


def _vocab_order(vocab: Sequence[str]) -> list[int]:
    """Our id -> OpenNMT-py id: its specials moved to our fixed ids, the rest in order."""
    missing = [s for s in ONMT_SPECIALS if s not in vocab]
    if missing:
        raise OpenNMTImportError(f"the vocabulary lacks OpenNMT-py's special tokens {missing}")
    clash = [s for s in WORD_SPECIALS if s in vocab and s not in ONMT_SPECIALS]
    if clash:
        raise OpenNMTImportError(f"the vocabulary holds our special token names {clash}")
    specials = [vocab.index(s) for s in ONMT_SPECIALS]
    return specials + [i for i in range(len(vocab)) if i not in set(specials)]


def _state_dict(
    config: ModelConfig,
    model: Mapping[str, Tensor],
    generator: Mapping[str, Tensor],
    order: list[int],
) -> dict[str, Tensor]:
    index = torch.tensor(order)
    get = _getter(model)
    output = _getter(_generator_tensors(model, generator, copy=config.copy))
    src_emb = get("encoder.embeddings.make_embedding.emb_luts.0.weight")[index]
    tgt_emb = get("decoder.embeddings.make_embedding.emb_luts.0.weight")[index]
    state: dict[str, Tensor] = {
        "embedding.weight": src_emb,
        "encoder.embedding.weight": src_emb,
        "decoder.embedding.weight": src_emb if config.share_embeddings else tgt_emb,
        "decoder.generator.weight": output("weight")[index],
        "decoder.generator.bias": output("bias")[index],
    }
    if config.copy:
        state["decoder.copy_gate.weight"] = output("copy.weight")
        state["decoder.copy_gate.bias"] = output("copy.bias")
    if config.tie_embeddings:
        state["decoder.generator.weight"] = state["decoder.embedding.weight"]
    cells = rnn_name(config)
    for name, tensor in model.items():
        if name.startswith("encoder.rnn."):
            state[f"encoder.{cells}." + name.removeprefix("encoder.rnn.")] = tensor
    for layer in range(config.num_layers):
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            state[f"decoder.{cells}.{kind}_l{layer}"] = get(f"decoder.rnn.layers.{layer}.{kind}")
    for name, tensor in model.items():
        # linear_cover: OpenNMT-py 3.5 trains it but its decoder never reads it (module doc).
        if name.startswith("decoder.attn.") and not name.startswith("decoder.attn.linear_cover"):
            state["decoder.attention." + name.removeprefix("decoder.attn.")] = tensor
    if config.bridge:
        state.update(_bridge(config, get))
    return state


def _generator_tensors(
    model: Mapping[str, Tensor], generator: Mapping[str, Tensor], *, copy: bool
) -> dict[str, Tensor]:
    """The output layer's tensors as ``weight``, ``bias`` (and ``copy.weight``, ``copy.bias``).

    A copy generator names them ``linear.*`` and ``linear_copy.*``; a checkpoint rewritten for
    OpenNMT-py's own loader (issue #2503's workaround) holds them in the model dict, prefixed
    ``generator.``."""
    prefix = "generator."
    found = {k.removeprefix(prefix): v for k, v in model.items() if k.startswith(prefix)}
    found.update(generator)
    if not copy:
        return found
    renamed = {"linear.weight": "weight", "linear.bias": "bias"}
    renamed |= {"linear_copy.weight": "copy.weight", "linear_copy.bias": "copy.bias"}
    return {renamed[k]: v for k, v in found.items() if k in renamed}


def _bridge(config: ModelConfig, get: Any) -> dict[str, Tensor]:
    """OpenNMT-py applies one (T, T) map to each of the D chunks of a document's flattened final
    states, T = L * H / D: block-diagonal over our (L * H) flattening, which has the same order.
    GRU cells have one state, h (OpenNMT-py's ``bridge.0``)."""
    directions = 2 if config.bidirectional else 1
    states = (("h", 0), ("c", 1)) if config.rnn_type == "LSTM" else (("h", 0),)
    out = {}
    for ours, theirs in states:
        weight = get(f"encoder.bridge.{theirs}.weight")
        bias = get(f"encoder.bridge.{theirs}.bias")
        out[f"bridge.{ours}.weight"] = torch.block_diag(*[weight] * directions)  # type: ignore[no-untyped-call]
        out[f"bridge.{ours}.bias"] = bias.repeat(directions)
    return out


def _getter(tensors: Mapping[str, Tensor]) -> Any:
    def get(name: str) -> Tensor:
        if name not in tensors:
            raise OpenNMTImportError(f"the checkpoint has no tensor {name!r}")
        return tensors[name]

    return get
