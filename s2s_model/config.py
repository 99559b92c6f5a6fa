"""Frozen configuration objects: one per concern, passed whole, stored in the checkpoint.

Every field carries its help text in ``metadata["help"]`` (fairseq's ``GenerationConfig`` style) so
that command-line layers can build their flags from the dataclass instead of repeating it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import Tensor

AttentionKind = Literal["general", "dot", "additive", "none"]
RnnType = Literal["LSTM", "GRU"]
CopyGate = Literal["see", "opennmt"]
LengthPenalty = Literal["none", "avg", "wu"]
BeamCompat = Literal["none", "opennmt"]
Quantize = Literal["none", "int8"]
Precision = Literal["fp32", "bf16"]

ATTENTION_KINDS: tuple[str, ...] = ("general", "dot", "additive", "none")
RNN_TYPES: tuple[str, ...] = ("LSTM", "GRU")
COPY_GATES: tuple[str, ...] = ("see", "opennmt")
LENGTH_PENALTIES: tuple[str, ...] = ("none", "avg", "wu")
BEAM_COMPATS: tuple[str, ...] = ("none", "opennmt")
DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")
# Everywhere a device is chosen (library, pipeline, training): the GPU where torch can use one.
DEFAULT_DEVICE = "auto"
QUANTIZE_KINDS: tuple[str, ...] = ("none", "int8")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
DEFAULT_MAX_SRC_TOKENS = 400
DEFAULT_MAX_BATCH_TOKENS = 6000
# A GPU worker's default budget: 26x the docs/s of the CPU defaults on an H200 (RESULTS.md).
GPU_MAX_BATCH_TOKENS = 384_000


def _help(text: str, default: Any = dataclasses.MISSING) -> Any:
    if default is dataclasses.MISSING:
        return field(metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class FieldSpec:
    """One field of a config dataclass as a command-line layer needs it: ``kind`` is its type
    (``bool``, ``int``, ``float``, ``str``, ...), ``choices`` those of a ``Literal``."""

    name: str
    kind: Any
    choices: tuple[str, ...] | None
    default: Any
    help: str

    @property
    def off_switch(self) -> str:
        """The name of the switch that turns a ``bool`` field off: ``no_<name>``, or
        ``allow_<rest>`` for a field that is itself a ban named ``no_<rest>``."""
        return f"allow_{self.name[3:]}" if self.name.startswith("no_") else f"no_{self.name}"


@functools.cache
def field_specs(cls: type) -> tuple[FieldSpec, ...]:
    """The fields of the config dataclass ``cls``, their types resolved (the annotations are
    strings under ``from __future__ import annotations``): what the flag generators read."""
    hints = typing.get_type_hints(cls)
    specs = []
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        literal = typing.get_origin(hint) is typing.Literal
        choices = tuple(str(a) for a in typing.get_args(hint)) if literal else None
        kind = str if literal else hint
        specs.append(FieldSpec(item.name, kind, choices, item.default, item.metadata["help"]))
    return tuple(specs)


def device_for(device: str, quantize: str) -> str:
    """The device a quantization allows: int8 layers run on the CPU only, so for them 'auto'
    means 'cpu' (and ``RuntimeSettings`` refuses 'cuda')."""
    return "cpu" if quantize == "int8" and device == "auto" else device


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the RNN (LSTM or GRU) encoder-attention-decoder summarizer."""

    vocab_size: int = _help("size of the shared source/target vocabulary, specials included")
    embed_dim: int = _help("token embedding size", 256)
    hidden_size: int = _help(
        "decoder hidden size; a bidirectional encoder uses hidden_size // 2 per direction", 512
    )
    num_layers: int = _help("RNN layers in the encoder and in the decoder", 2)
    rnn_type: RnnType = _help(
        "recurrent cell of the encoder and the decoder: 'LSTM' (hidden and cell state) or 'GRU'"
        " (hidden state only; fewer weights, faster steps)",
        "LSTM",
    )
    attention: AttentionKind = _help(
        "global attention score: Luong 'general' or 'dot', or Bahdanau 'additive'; 'none' is the"
        " plain encoder-decoder (OpenNMT-py's -global_attention none): the decoder sees only the"
        " encoder's final states, through the bridge",
        "general",
    )
    copy: bool = _help("pointer-generator copying of source tokens (See et al. 2017)", False)
    copy_gate: CopyGate = _help(
        "how copying mixes with generating: 'see' (p_gen from the context, the decoder state"
        " and the input embedding; See et al. 2017) or 'opennmt' (p_copy from the attentional"
        " state alone, PAD out of the generator's softmax: OpenNMT-py's CopyGenerator, for"
        " imported models)",
        "see",
    )
    extended_vocab: bool = _help(
        "copy source words outside the vocabulary too: each gets the per-document id"
        " vocab_size + (its first position in the source), the summary shows the word (needs"
        " copy; for word-level vocabularies, where unknown words exist, such as OpenNMT-py"
        " imports; s2s train refuses it: SentencePiece pieces spell any word)",
        False,
    )
    coverage: bool = _help("coverage vector as an attention feature (See et al. 2017)", False)
    dropout: float = _help("dropout between layers and on embeddings while training", 0.1)
    bidirectional: bool = _help("bidirectional encoder", True)
    bridge: bool = _help(
        "learned connection layer from the encoder's final (h, c) to the decoder's initial (h, c);"
        " without it the encoder's final states are used as they are",
        True,
    )
    share_embeddings: bool = _help(
        "one embedding table for source and target tokens (else one each, same vocabulary)", True
    )
    tie_embeddings: bool = _help(
        "tie the output projection to the target embeddings (needs embed_dim == hidden_size)",
        False,
    )

    def __post_init__(self) -> None:
        if self.vocab_size < 5:
            raise ValueError(f"vocab_size={self.vocab_size}: needs the 4 specials plus a token")
        for name in ("embed_dim", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"attention={self.attention!r}: choose one of {ATTENTION_KINDS}")
        if self.rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type={self.rnn_type!r}: choose one of {RNN_TYPES}")
        if self.copy_gate not in COPY_GATES:
            raise ValueError(f"copy_gate={self.copy_gate!r}: choose one of {COPY_GATES}")
        if self.extended_vocab and not self.copy:
            raise ValueError("extended_vocab needs copy: only copying can emit an unknown word")
        if self.attention == "none" and (self.copy or self.coverage):
            raise ValueError(
                "attention='none' reads no source positions, so it cannot copy or keep coverage:"
                " set copy and coverage to false, or choose an attention"
            )
        if self.bidirectional and self.hidden_size % 2:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be even with a bidirectional encoder"
            )
        if self.tie_embeddings and self.embed_dim != self.hidden_size:
            raise ValueError(
                f"tie_embeddings needs embed_dim == hidden_size, got {self.embed_dim} and"
                f" {self.hidden_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    @property
    def encoder_hidden(self) -> int:
        """Hidden size of one encoder direction."""
        return self.hidden_size // 2 if self.bidirectional else self.hidden_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class DecodeConfig:
    """How summaries are searched for. Every field has a default."""

    beam_size: int = _help("hypotheses kept per document at each step", 4)
    n_best: int = _help("hypotheses returned per document, best first", 1)
    min_len: int = _help("EOS is impossible before this many tokens", 0)
    max_len: int = _help("hard cap on summary tokens (EOS excluded)", 30)
    max_len_a: float = _help("per-document cap: floor(max_len_a * src_len + max_len_b)", 0.0)
    max_len_b: int = _help("per-document cap: floor(max_len_a * src_len + max_len_b)", 200)
    length_penalty: LengthPenalty = _help(
        "score normalisation: 'none', 'avg' (len**alpha) or 'wu' (((5+len)/6)**alpha)", "none"
    )
    alpha: float = _help("length penalty exponent", 1.0)
    no_repeat_ngram_size: int = _help("forbid any n-gram of this size occurring twice (0: off)", 0)
    ban_unk: bool = _help("never emit the unknown token", False)
    whole_words: bool = _help(
        "a word copied from the source piece by piece is finished as it is there, and no copy"
        " starts inside a source word: no glued or cut copies (word pieces only)",
        False,
    )
    no_repeat_words: bool = _help(
        "a content word (letters, not a function word) starts at most once per summary", False
    )
    compat: BeamCompat = _help(
        "'opennmt' reproduces OpenNMT-py 3.5's beam search for imported models: K candidates a"
        " step, a document stops when its best candidate ends, length penalties count BOS, and"
        " max_len ends a hypothesis without forcing EOS; 'none' is this project's rule",
        "none",
    )
    shortlist: int = _help(
        "restrict each document's output vocabulary to its source tokens plus this many most"
        " frequent tokens (Nallapati et al. 2016); 0 keeps the full vocabulary",
        0,
    )
    coverage_beta: float = _help(
        "beta of OpenNMT-py's 'summary' coverage penalty (-coverage_penalty summary -beta):"
        " a finished hypothesis's score loses beta x the sum over source positions of"
        " max(0, its attention summed over its steps - 1), so summaries that read the same"
        " source words again rank lower; 0 is off",
        0.0,
    )

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size={self.beam_size} must be at least 1")
        if not 1 <= self.n_best <= self.beam_size:
            raise ValueError(f"n_best={self.n_best} must be between 1 and beam_size")
        if self.min_len < 0 or self.max_len < 1:
            raise ValueError(
                f"need min_len >= 0 and max_len >= 1, got {self.min_len}, {self.max_len}"
            )
        if self.length_penalty not in LENGTH_PENALTIES:
            raise ValueError(
                f"length_penalty={self.length_penalty!r}: choose one of {LENGTH_PENALTIES}"
            )
        if self.alpha < 0:
            raise ValueError(f"alpha={self.alpha} must be >= 0")
        if self.compat not in BEAM_COMPATS:
            raise ValueError(f"compat={self.compat!r}: choose one of {BEAM_COMPATS}")
        if self.shortlist < 0:
            raise ValueError(f"shortlist={self.shortlist} must be >= 0")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size={self.no_repeat_ngram_size} must be >= 0")
        if not self.coverage_beta >= 0:
            raise ValueError(f"coverage_beta={self.coverage_beta} must be >= 0 (0 turns it off)")

    def max_len_for(self, src_len: int) -> int:
        """Maximum summary tokens (EOS excluded) for a source of ``src_len`` tokens, at least 1."""
        per_doc = math.floor(self.max_len_a * src_len + self.max_len_b)
        return max(1, min(self.max_len, per_doc))

    def penalty(self, length: int) -> float:
        """Length penalty for a hypothesis of ``length`` tokens, EOS included."""
        if self.length_penalty == "avg":
            return float(float(length) ** self.alpha)
        if self.length_penalty == "wu":
            return float(((5.0 + length) / 6.0) ** self.alpha)
        return 1.0

    def coverage_penalty(self, coverage: Tensor) -> Tensor:
        """OpenNMT-py's 'summary' penalty of attention sums ``coverage`` (..., S): (...,), the
        amount a finished hypothesis's score loses. Padded positions (coverage 0) add nothing."""
        return self.coverage_beta * (coverage - 1.0).clamp(min=0.0).sum(dim=-1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecodeConfig:
        return cls(**_known_fields(cls, data))

    def with_overrides(self, changes: Mapping[str, Any]) -> DecodeConfig:
        """This config with ``changes`` applied; a change of None means "keep this field".

        The one way flags, recipes and candidates change a model's saved decoding: unknown
        names and bad values raise ``ValueError``."""
        given = {name: value for name, value in changes.items() if value is not None}
        return DecodeConfig.from_dict({**self.to_dict(), **given})


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
    return dict(data)


@dataclass(frozen=True)
class RuntimeSettings:
    """How a loaded model runs: where, with how many threads, in what batches and arithmetic.

    Validated once, here, and passed whole from the command line to the ``Summarizer``. Of these,
    only ``max_src_tokens``, ``quantize`` and ``precision`` can change a summary; the rest change
    speed and memory alone (tests prove it for refill, batch budgets and search threads).
    """

    device: str = _help(
        "'cpu', 'cuda', or 'auto' (CUDA when torch sees a usable GPU, else the CPU; the CPU for"
        " int8)",
        DEFAULT_DEVICE,
    )
    threads: int | None = _help(
        "torch intra-op threads of this process (unset: torch's own choice)", None
    )
    max_src_tokens: int = _help(
        "source tokens read per document; longer ones are truncated (flagged)",
        DEFAULT_MAX_SRC_TOKENS,
    )
    max_batch_tokens: int = _help(
        "token budget of the active batch: documents x longest source", DEFAULT_MAX_BATCH_TOKENS
    )
    refill: bool = _help(
        "let waiting documents take the rows of finished ones (continuous batching; same results)",
        True,
    )
    quantize: Quantize = _help(
        "'int8': dynamic int8 RNN and linear layers, CPU only (faster, slightly different scores)",
        "none",
    )
    precision: Precision = _help(
        "'bf16': decode under bf16 autocast (GPUs and CPUs with native bf16; slower than fp32"
        " elsewhere)",
        "fp32",
    )
    search_threads: int = _help(
        "searches run at once in threads over each call's documents (same results)", 1
    )

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: choose one of {DEVICES}")
        if self.quantize not in QUANTIZE_KINDS:
            raise ValueError(f"quantize={self.quantize!r}: choose one of {QUANTIZE_KINDS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: choose one of {PRECISIONS}")
        at_least_one = ("max_src_tokens", "max_batch_tokens", "search_threads")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads} must be at least 1")
        if self.quantize == "int8" and self.precision == "bf16":
            raise ValueError("quantize int8 and precision bf16 do not combine: choose one")
        if self.quantize == "int8" and self.device == "cuda":
            raise ValueError("quantize int8 runs on the CPU only: drop it or use device cpu")
        object.__setattr__(self, "device", device_for(self.device, self.quantize))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


LrSchedule = Literal["inverse_sqrt", "linear", "constant"]
SelectMetric = Literal["rougeL", "loss"]
TokenizerType = Literal["unigram", "bpe"]

LR_SCHEDULES: tuple[str, ...] = ("inverse_sqrt", "linear", "constant")
SELECT_METRICS: tuple[str, ...] = ("rougeL", "loss")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: data limits, optimisation, validation and stopping."""

    seed: int = _help("seed for initialisation, batch order and dropout", 1234)
    vocab_size: int = _help("SentencePiece vocabulary trained on the training split", 8000)
    tokenizer_type: TokenizerType = _help("SentencePiece model type: 'unigram' or 'bpe'", "unigram")
    byte_fallback: bool = _help(
        "spell characters outside the SentencePiece vocabulary as UTF-8 byte pieces instead of"
        " UNK, so no character is lost between text and tokens (needs vocab_size > 260)",
        False,
    )
    lowercase: bool = _help(
        "lower-case the texts SentencePiece trains on, and every text the model reads or learns"
        " from (the saved tokenizer keeps doing it): for lower-cased corpora such as CNN/DailyMail",
        False,
    )
    tokenizer_sentences: int = _help(
        "training texts (sources and summaries) sampled to train SentencePiece", 200_000
    )
    max_src_tokens: int = _help("source tokens kept per document (the rest is cut)", 200)
    max_tgt_tokens: int = _help("summary tokens kept per document, EOS excluded", 40)
    batch_tokens: int = _help(
        "token budget per batch: documents x (longest source + longest summary), padding included",
        6000,
    )
    max_epochs: int = _help("passes over the training split", 10)
    max_steps: int = _help("stop after this many updates in all (0: no limit)", 0)
    max_time: float = _help(
        "wall-clock budget in seconds of one training command, from its start to its exit (0: no"
        " limit): training stops early enough for the last validation, the choice of decode"
        " settings and the saves to fit, and those are scaled down or skipped when it is short",
        0.0,
    )
    grad_accumulation: int = _help(
        "batches whose gradients add up to one update: an effective batch this many times"
        " batch_tokens (OpenNMT-py -accum_count, fairseq --update-freq)",
        1,
    )
    keep_checkpoints: int = _help(
        "also keep the checkpoints of the last this many validations as"
        " OUTPUT/checkpoints/step-<step> (for s2s average); 0 keeps best and last only",
        0,
    )
    lr: float = _help("peak Adam learning rate", 1e-3)
    warmup_steps: int = _help("updates with the learning rate rising linearly from 0 to lr", 400)
    lr_schedule: LrSchedule = _help(
        "after warm-up: 'inverse_sqrt' (lr * sqrt(warmup / step)), 'linear' (to min_lr_ratio *"
        " lr at the last planned update) or 'constant'",
        "linear",
    )
    min_lr_ratio: float = _help("final learning rate as a fraction of lr ('linear')", 0.05)
    adam_betas: tuple[float, float] = _help("Adam beta1, beta2", (0.9, 0.999))
    weight_decay: float = _help("decoupled weight decay (AdamW); 0 is plain Adam", 0.0)
    clip_norm: float = _help("clip the global gradient norm to this (0: off)", 5.0)
    label_smoothing: float = _help("label smoothing epsilon of the token loss", 0.1)
    coverage_weight: float = _help(
        "weight of the coverage loss (See et al. 2017) when the model has coverage", 1.0
    )
    eval_every: int = _help("validate every this many updates (0: at the end of each epoch)", 0)
    valid_sample: int = _help(
        "validation documents decoded with beam search for ROUGE at each validation (a fixed"
        " seeded sample); 0 skips ROUGE",
        400,
    )
    valid_loss_docs: int = _help(
        "validation documents scored for loss at each validation (the first ones; 0: all)", 0
    )
    precision: Precision = _help(
        "'bf16': the forward pass under bf16 autocast (for GPUs; weights, gradients and the"
        " optimizer stay fp32); 'fp32': plain fp32",
        "fp32",
    )
    select_metric: SelectMetric = _help(
        "what picks the best checkpoint and drives early stopping: validation 'rougeL' (needs"
        " valid_sample > 0) or 'loss'",
        "rougeL",
    )
    patience: int = _help(
        "stop after this many validations without improvement (0: never stop early)", 4
    )

    def __post_init__(self) -> None:
        positive = (
            "vocab_size",
            "max_src_tokens",
            "max_tgt_tokens",
            "batch_tokens",
            "max_epochs",
            "grad_accumulation",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        non_negative = (
            "max_steps",
            "max_time",
            "warmup_steps",
            "weight_decay",
            "clip_norm",
            "coverage_weight",
            "eval_every",
            "valid_sample",
            "valid_loss_docs",
            "patience",
            "keep_checkpoints",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: choose one of {LR_SCHEDULES}")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(
                f"select_metric={self.select_metric!r}: choose one of {SELECT_METRICS}"
            )
        if self.select_metric == "rougeL" and self.valid_sample == 0:
            raise ValueError("select_metric='rougeL' needs valid_sample > 0 (or use 'loss')")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: choose one of {PRECISIONS}")
        if self.tokenizer_type not in ("unigram", "bpe"):
            raise ValueError(f"tokenizer_type={self.tokenizer_type!r}: choose 'unigram' or 'bpe'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = _known_fields(cls, data)
        if "adam_betas" in known:
            known["adam_betas"] = tuple(known["adam_betas"])
        return cls(**known)
