"""Training: ``fit()`` turns (text, summary) pairs into a checkpoint.

A run directory holds everything one training run writes::

    OUT/best/                      the checkpoint with the best validation score (use this one)
    OUT/last/                      the checkpoint at the last validation, for --resume
    OUT/trainer_state.json         step, epoch, scores, history, config (plain JSON)
    OUT/trainer_state.safetensors  Adam moments and the RNG state (tensors only, never pickle)
    OUT/curves.png                 training loss, validation loss and ROUGE against updates

The loop: SentencePiece trained on the training split; batches of similar lengths under a token
budget, in a seeded order per epoch; teacher forcing with label smoothing (plus the coverage loss
of See et al. 2017 when the model has coverage); Adam with linear warm-up then decay; gradient
clipping. Every ``eval_every`` updates (or each epoch) it measures validation loss and ROUGE of
real beam-search summaries of a fixed sample, keeps the best checkpoint and stops early when the
score has not improved for ``patience`` validations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from s2s_model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from s2s_model.config import DecodeConfig, ModelConfig, TrainConfig
from s2s_model.evaluation import rouge
from s2s_model.model import Seq2Seq
from s2s_model.summarizer import Summarizer, resolve_device
from s2s_model.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

logger = logging.getLogger(__name__)

BEST_DIR = "best"
LAST_DIR = "last"
STATE_FILE = "trainer_state.json"
STATE_TENSORS_FILE = "trainer_state.safetensors"
CURVES_FILE = "curves.png"
STATE_VERSION = 1
# Seeds of the per-epoch batch order are seed * EPOCH_SEED_STRIDE + epoch.
EPOCH_SEED_STRIDE = 100_003
# What a resumed run may change: when to stop. Everything else comes from the run itself.
RESUMABLE_FIELDS = ("max_epochs", "max_steps", "max_time", "patience")
TRAIN_CURVE_EVERY = 50
PROGRESS_INTERVAL = 1.0
LOSS_EMA = 0.98


class TrainingError(ValueError):
    """Training cannot start or resume; the message says why and what to do."""


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one training pair: ``tgt`` ends with EOS."""

    src: list[int]
    tgt: list[int]


@dataclass(frozen=True)
class Batch:
    """A padded batch. src (B, S), src_len (B,), tgt_in (B, T) BOS first, tgt_out (B, T)."""

    src: Tensor
    src_len: Tensor
    tgt_in: Tensor
    tgt_out: Tensor

    @property
    def tokens(self) -> int:
        """Real (unpadded) source plus target tokens."""
        return int(self.src_len.sum()) + int((self.tgt_out != PAD_ID).sum())

    def to(self, device: str) -> Batch:
        return Batch(*(t.to(device) for t in (self.src, self.src_len, self.tgt_in, self.tgt_out)))


@dataclass
class TrainerState:
    """Everything but tensors that a resumed run needs to continue exactly where it stopped."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed: float = 0.0
    best_score: float | None = None
    best_step: int = 0
    bad_validations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_curve: list[list[float]] = field(default_factory=list)
    data_digest: str = ""


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` did: where the best model is, its validation scores and why it stopped."""

    best_dir: Path
    best: dict[str, Any]
    steps: int
    elapsed: float
    stopped: str


@dataclass
class _Run:
    model: Seq2Seq
    tokenizer: Tokenizer
    optimizer: torch.optim.Optimizer
    train: list[EncodedPair]
    valid: list[EncodedPair]
    rouge_sample: list[tuple[str, str]]
    config: TrainConfig
    decode: DecodeConfig
    output: Path
    device: str
    state: TrainerState
    data_info: dict[str, Any]
    horizon: int = 0
    epoch_size: int = 0


def fit(
    train_pairs: Sequence[tuple[str, str]],
    valid_pairs: Sequence[tuple[str, str]],
    output_dir: str | os.PathLike[str],
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    decode: DecodeConfig | None = None,
    resume: bool = False,
    device: str = "cpu",
    data_info: dict[str, Any] | None = None,
    decode_candidates: Sequence[DecodeConfig] = (),
    progress: bool = True,
) -> FitResult:
    """Train a summarizer on ``train_pairs`` and keep the best checkpoint in ``output_dir/best``.

    Args:
        train_pairs, valid_pairs: (text, summary) pairs; validation needs at least one.
        model_config: the architecture; its ``vocab_size`` is replaced by the tokenizer's.
        decode: the beam search used for validation ROUGE, saved with the checkpoints.
        resume: continue the run in ``output_dir`` from its last checkpoint (model, optimizer,
            step, epoch position and RNG state), instead of starting afresh.
        data_info: a description of the data (files, fields, split) stored in the metadata.
        decode_candidates: after training, the best checkpoint is decoded with ``decode`` and
            each of these on the validation ROUGE sample, and saved with the best of them.
    """
    if not train_pairs or not valid_pairs:
        raise TrainingError(
            f"need training and validation pairs, got {len(train_pairs)} and {len(valid_pairs)}"
        )
    run = (_resume if resume else _start)(
        train_pairs,
        valid_pairs,
        Path(output_dir),
        model_config=model_config,
        config=train_config,
        decode=decode or DecodeConfig(),
        device=resolve_device(device),
        data_info=data_info or {},
    )
    stopped = _train(run, progress=progress)
    _write_curves(run)
    if decode_candidates and run.rouge_sample:
        _save_best_decode(run, decode_candidates)
    best = next((h for h in run.state.history if h["step"] == run.state.best_step), {})
    logger.info("training stopped (%s) at step %d; best: %s", stopped, run.state.step, best)
    return FitResult(run.output / BEST_DIR, best, run.state.step, run.state.elapsed, stopped)


# --- data ---------------------------------------------------------------------------------------


def train_tokenizer(pairs: Sequence[tuple[str, str]], config: TrainConfig) -> Tokenizer:
    """SentencePiece on the sources and summaries of ``pairs`` (a seeded sample if many)."""
    texts = [text for pair in pairs for text in pair]
    if len(texts) > config.tokenizer_sentences:
        texts = random.Random(config.seed).sample(texts, config.tokenizer_sentences)
    logger.info("training a %d-piece tokenizer on %d texts", config.vocab_size, len(texts))
    return Tokenizer.train(
        texts,
        vocab_size=config.vocab_size,
        model_type=config.tokenizer_type,
        byte_fallback=config.byte_fallback,
    )


def encode_pairs(
    tokenizer: Tokenizer, pairs: Sequence[tuple[str, str]], config: TrainConfig
) -> list[EncodedPair]:
    """Token ids of ``pairs``, truncated; pairs whose source encodes to nothing are dropped."""
    encoded = []
    for text, summary in pairs:
        src = tokenizer.encode(text)[: config.max_src_tokens]
        if src:
            tgt = [*tokenizer.encode(summary)[: config.max_tgt_tokens], EOS_ID]
            encoded.append(EncodedPair(src, tgt))
    if len(encoded) < len(pairs):
        logger.warning("dropped %d pairs with an empty source", len(pairs) - len(encoded))
    return encoded


def make_batches(
    lengths: Sequence[tuple[int, int]], batch_tokens: int, rng: random.Random
) -> list[list[int]]:
    """Group pair indices into batches of similar length, then shuffle the batches.

    Args:
        lengths: (source, target) token counts per pair.
        batch_tokens: a batch's padded size, docs x (longest source + longest target), stays
            within this (a single longer pair forms a batch of its own).
        rng: decides ties in the length order and the order of the batches.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches: list[list[int]] = []
    current: list[int] = []
    longest_src = longest_tgt = 0
    for index in order:
        src, tgt = lengths[index]
        wide_src, wide_tgt = max(longest_src, src), max(longest_tgt, tgt)
        if current and (len(current) + 1) * (wide_src + wide_tgt) > batch_tokens:
            batches.append(current)
            current, wide_src, wide_tgt = [], src, tgt
        current.append(index)
        longest_src, longest_tgt = wide_src, wide_tgt
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(pairs: Sequence[EncodedPair]) -> Batch:
    """Pad ``pairs`` into a :class:`Batch`; targets are shifted right behind BOS for input."""
    longest_src = max(len(p.src) for p in pairs)
    longest_tgt = max(len(p.tgt) for p in pairs)
    src = torch.full((len(pairs), longest_src), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((len(pairs), longest_tgt), PAD_ID, dtype=torch.long)
    for row, pair in enumerate(pairs):
        src[row, : len(pair.src)] = torch.tensor(pair.src)
        tgt_out[row, : len(pair.tgt)] = torch.tensor(pair.tgt)
    tgt_in = torch.cat([torch.full_like(tgt_out[:, :1], BOS_ID), tgt_out[:, :-1]], dim=1)
    tgt_in = tgt_in.masked_fill(tgt_in == EOS_ID, PAD_ID)
    src_len = torch.tensor([len(p.src) for p in pairs], dtype=torch.long)
    return Batch(src, src_len, tgt_in, tgt_out)


def epoch_batches(pairs: Sequence[EncodedPair], config: TrainConfig, epoch: int) -> list[list[int]]:
    """The batches of ``epoch``: the same for the same seed, whether resumed or not."""
    rng = random.Random(config.seed * EPOCH_SEED_STRIDE + epoch)
    lengths = [(len(p.src), len(p.tgt)) for p in pairs]
    return make_batches(lengths, config.batch_tokens, rng)


# --- loss and schedule --------------------------------------------------------------------------


def token_loss(
    log_probs: Tensor, target: Tensor, *, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Summed training loss and summed NLL over the non-PAD positions of ``target``.

    Args:
        log_probs: (B, T, V) normalised log-probabilities.
        target: (B, T) gold tokens, PAD where there is none.

    Returns:
        (loss, nll), both scalars summed over tokens. With label smoothing eps the loss of a
        token is (1 - eps) * NLL + eps * (mean over V of -log p).
    """
    mask = target != PAD_ID  # (B, T)
    nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T)
    nll_sum = nll.masked_select(mask).sum()
    if not label_smoothing:
        return nll_sum, nll_sum.detach()
    uniform = -log_probs.mean(dim=-1)  # (B, T)
    loss = (1.0 - label_smoothing) * nll + label_smoothing * uniform
    return loss.masked_select(mask).sum(), nll_sum.detach()


def learning_rate(step: int, config: TrainConfig, horizon: int) -> float:
    """Learning rate of update ``step`` (1-based): linear warm-up, then the configured decay."""
    warmup = config.warmup_steps
    if warmup and step <= warmup:
        return config.lr * step / warmup
    if config.lr_schedule == "inverse_sqrt":
        return config.lr * math.sqrt(max(warmup, 1) / step)
    if config.lr_schedule == "linear" and horizon > warmup:
        progress = min(1.0, (step - warmup) / (horizon - warmup))
        return config.lr * (1.0 - (1.0 - config.min_lr_ratio) * progress)
    return config.lr


# --- starting and resuming ----------------------------------------------------------------------


def _start(
    train_pairs: Sequence[tuple[str, str]],
    valid_pairs: Sequence[tuple[str, str]],
    output: Path,
    *,
    model_config: ModelConfig,
    config: TrainConfig,
    decode: DecodeConfig,
    device: str,
    data_info: dict[str, Any],
) -> _Run:
    if (output / STATE_FILE).exists():
        raise TrainingError(
            f"{output} already holds a training run: pass --resume to continue it, or choose"
            " another output directory"
        )
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tokenizer = train_tokenizer(train_pairs, config)
    model_config = dataclasses.replace(model_config, vocab_size=tokenizer.vocab_size)
    model = Seq2Seq(model_config).to(device)
    logger.info("model: %s parameters, %s", _parameter_count(model), model_config)
    run = _make_run(
        model, tokenizer, train_pairs, valid_pairs, output, config, decode, device, data_info
    )
    run.state.data_digest = _data_digest(train_pairs)
    return run


def _resume(
    train_pairs: Sequence[tuple[str, str]],
    valid_pairs: Sequence[tuple[str, str]],
    output: Path,
    *,
    model_config: ModelConfig,
    config: TrainConfig,
    decode: DecodeConfig,
    device: str,
    data_info: dict[str, Any],
) -> _Run:
    state_path = output / STATE_FILE
    if not state_path.is_file():
        raise TrainingError(
            f"nothing to resume: {state_path} does not exist; start the run without --resume"
        )
    saved = json.loads(state_path.read_text(encoding="utf-8"))
    checkpoint = load_checkpoint(output / LAST_DIR, device=device)
    if checkpoint.metadata.get("step") != saved["state"]["step"]:
        raise TrainingError(
            f"{output / LAST_DIR} is at step {checkpoint.metadata.get('step')} but {state_path}"
            f" at step {saved['state']['step']}: the run was interrupted while saving; start afresh"
        )
    config = _resumed_config(TrainConfig.from_dict(saved["train_config"]), config)
    if checkpoint.model_config != dataclasses.replace(
        model_config, vocab_size=checkpoint.model_config.vocab_size
    ):
        logger.warning("resuming with the saved model config %s", checkpoint.model_config)
    model = checkpoint.model.to(device).train()
    if not isinstance(checkpoint.tokenizer, Tokenizer):
        raise TrainingError(
            f"{output / LAST_DIR} has a {checkpoint.tokenizer.kind} tokenizer:"
            " training resumes SentencePiece checkpoints only"
        )
    run = _make_run(
        model,
        checkpoint.tokenizer,
        train_pairs,
        valid_pairs,
        output,
        config,
        decode,
        device,
        data_info,
    )
    run.state = TrainerState(**saved["state"])
    if run.state.data_digest != _data_digest(train_pairs):
        raise TrainingError(
            f"the training pairs differ from those the run in {output} started with (same file,"
            " fields and --limit are needed to resume); start a new run instead"
        )
    _load_tensors(run, output / STATE_TENSORS_FILE, saved["param_groups"])
    logger.info("resumed at step %d (epoch %d)", run.state.step, run.state.epoch)
    return run


def _make_run(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    train_pairs: Sequence[tuple[str, str]],
    valid_pairs: Sequence[tuple[str, str]],
    output: Path,
    config: TrainConfig,
    decode: DecodeConfig,
    device: str,
    data_info: dict[str, Any],
) -> _Run:
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=config.adam_betas,
        weight_decay=config.weight_decay,
    )
    sample_size = min(config.valid_sample, len(valid_pairs))
    picks = sorted(random.Random(config.seed).sample(range(len(valid_pairs)), sample_size))
    run = _Run(
        model=model,
        tokenizer=tokenizer,
        optimizer=optimizer,
        train=encode_pairs(tokenizer, train_pairs, config),
        valid=encode_pairs(tokenizer, valid_pairs, config),
        rouge_sample=[(valid_pairs[i][0], valid_pairs[i][1]) for i in picks],
        config=config,
        decode=decode,
        output=output,
        device=device,
        state=TrainerState(),
        data_info=data_info,
    )
    per_epoch = len(epoch_batches(run.train, config, 0))
    run.horizon = config.max_steps or per_epoch * config.max_epochs
    logger.info(
        "%d training pairs in %d batches per epoch; %d validation pairs",
        len(run.train),
        per_epoch,
        len(run.valid),
    )
    return run


def _resumed_config(saved: TrainConfig, given: TrainConfig) -> TrainConfig:
    """The run's own config, with the stopping rules of ``given`` (a resume may extend a run)."""
    for name, value in saved.to_dict().items():
        if name not in RESUMABLE_FIELDS and getattr(given, name) != value:
            logger.warning(
                "resuming keeps the run's %s=%r (ignoring %r)", name, value, getattr(given, name)
            )
    return dataclasses.replace(saved, **{name: getattr(given, name) for name in RESUMABLE_FIELDS})


def _data_digest(pairs: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for text, summary in pairs:
        digest.update(f"{len(text)}:{text}{len(summary)}:{summary}".encode())
    return digest.hexdigest()[:16]


# --- the loop -----------------------------------------------------------------------------------


def _train(run: _Run, *, progress: bool) -> str:
    """Run updates until a stopping rule fires; returns the rule's name."""
    already = _stop_reason(run, 0.0)
    if already:
        return already
    started = time.monotonic()
    elapsed_before = run.state.elapsed
    bar = tqdm(
        total=run.horizon,
        initial=run.state.step,
        disable=not progress,
        unit="step",
        mininterval=PROGRESS_INTERVAL,
    )
    meter = _Meter()
    stopped = "max_epochs"
    try:
        for batch in _batches(run):
            meter.add(_train_step(run, batch), batch.tokens)
            run.state.elapsed = elapsed_before + time.monotonic() - started
            bar.update(1)
            bar.set_postfix(_progress_fields(run, meter, time.monotonic() - started), refresh=False)
            if run.state.step % TRAIN_CURVE_EVERY == 0:
                run.state.train_curve.append([run.state.step, meter.loss])
            reason = _stop_reason(run, time.monotonic() - started)
            if reason or _validation_due(run):
                _validate_and_save(run, meter)
            if reason or _out_of_patience(run):
                stopped = reason or "early_stopping"
                break
        else:
            if not run.state.history or run.state.history[-1]["step"] != run.state.step:
                _validate_and_save(run, meter)
    finally:
        bar.close()
    return stopped


def _batches(run: _Run) -> Iterator[Batch]:
    """Batches from the run's current position (epoch and batch) to the last epoch's end."""
    while run.state.epoch < run.config.max_epochs:
        batches = epoch_batches(run.train, run.config, run.state.epoch)
        run.epoch_size = len(batches)
        while run.state.batch_in_epoch < len(batches):
            indices = batches[run.state.batch_in_epoch]
            run.state.batch_in_epoch += 1
            yield collate([run.train[i] for i in indices]).to(run.device)
        run.state.epoch += 1
        run.state.batch_in_epoch = 0


def _train_step(run: _Run, batch: Batch) -> float:
    """One update; returns the batch's mean token loss."""
    run.model.train()
    run.state.step += 1
    lr = learning_rate(run.state.step, run.config, run.horizon)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    out = run.model.teacher_forced(batch.src, batch.src_len, batch.tgt_in)
    loss_sum, _ = token_loss(
        out.log_probs, batch.tgt_out, label_smoothing=run.config.label_smoothing
    )
    n_tokens = int((batch.tgt_out != PAD_ID).sum())
    loss = loss_sum / n_tokens
    if run.model.config.coverage:
        mask = (batch.tgt_out != PAD_ID).float()
        loss = loss + run.config.coverage_weight * (out.coverage_loss * mask).sum() / n_tokens
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    if run.config.clip_norm:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.clip_norm)
    run.optimizer.step()
    return loss.item()


def _progress_fields(run: _Run, meter: _Meter, seconds: float) -> dict[str, str]:
    """Loss, tokens/s and, under a time budget, the time left (the bar's ETA counts epochs)."""
    fields = {"loss": f"{meter.loss:.3f}", "tok/s": f"{meter.tokens_per_second:.0f}"}
    if run.config.max_time:
        fields["time_left"] = f"{max(0.0, run.config.max_time - seconds) / 60:.1f}m"
    return fields


def _stop_reason(run: _Run, seconds: float) -> str:
    if run.config.max_steps and run.state.step >= run.config.max_steps:
        return "max_steps"
    if run.config.max_time and seconds >= run.config.max_time:
        return "max_time"
    return ""


def _validation_due(run: _Run) -> bool:
    if run.config.eval_every:
        return run.state.step % run.config.eval_every == 0
    return run.state.batch_in_epoch >= run.epoch_size


def _out_of_patience(run: _Run) -> bool:
    return bool(run.config.patience) and run.state.bad_validations >= run.config.patience


class _Meter:
    """Smoothed training loss and tokens per second for the progress bar."""

    def __init__(self) -> None:
        self._average = 0.0
        self._count = 0
        self._tokens = 0
        self._since = time.monotonic()
        self.window_loss: list[float] = []

    def add(self, loss: float, tokens: int) -> None:
        self._average = LOSS_EMA * self._average + (1 - LOSS_EMA) * loss
        self._count += 1
        self._tokens += tokens
        self.window_loss.append(loss)

    @property
    def loss(self) -> float:
        """Exponential moving average of the loss, bias-corrected (Adam's correction)."""
        return self._average / (1 - LOSS_EMA**self._count) if self._count else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self._tokens / max(1e-9, time.monotonic() - self._since)

    def take_window(self) -> tuple[float | None, float]:
        """Mean loss since the last call and tokens/s since then; starts a new window."""
        mean = sum(self.window_loss) / len(self.window_loss) if self.window_loss else None
        speed = self.tokens_per_second
        self.window_loss, self._tokens, self._since = [], 0, time.monotonic()
        return mean, speed


# --- validation and checkpoints -----------------------------------------------------------------


def validate(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    valid: Sequence[EncodedPair],
    rouge_sample: Sequence[tuple[str, str]],
    *,
    config: TrainConfig,
    decode: DecodeConfig,
    device: str = "cpu",
) -> dict[str, float]:
    """Validation NLL per token (and perplexity) and ROUGE of beam-search summaries."""
    scores = _valid_loss(model, valid, config, device)
    if rouge_sample:
        checkpoint = Checkpoint(model, tokenizer, decode, fingerprint="training")
        summarizer = Summarizer(checkpoint, device=device, max_src_tokens=config.max_src_tokens)
        started = time.monotonic()
        predictions = [s.text for s in summarizer.summarize([text for text, _ in rouge_sample])]
        result = rouge([summary for _, summary in rouge_sample], predictions)
        scores.update(rouge1=result.rouge1, rouge2=result.rouge2, rougeL=result.rougeL)
        scores["decode_seconds"] = time.monotonic() - started
    model.train()
    return scores


def choose_decode(
    checkpoint: Checkpoint,
    sample: Sequence[tuple[str, str]],
    candidates: Sequence[DecodeConfig],
    *,
    max_src_tokens: int,
    device: str = "cpu",
) -> list[tuple[DecodeConfig, float]]:
    """ROUGE-L of each candidate decoding on ``sample`` (text, summary), best first.

    Ties keep the earlier candidate, so list the default first.
    """
    summarizer = Summarizer(checkpoint, device=device, max_src_tokens=max_src_tokens)
    texts, references = [text for text, _ in sample], [summary for _, summary in sample]
    scored = []
    for index, decode in enumerate(candidates):
        predictions = [s.text for s in summarizer.summarize(texts, decode)]
        scored.append((rouge(references, predictions).rougeL, -index, decode))
        logger.info("decoding %s: ROUGE-L %.2f", decode, scored[-1][0])
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [(decode, score) for score, _, decode in scored]


def _save_best_decode(run: _Run, candidates: Sequence[DecodeConfig]) -> None:
    """Re-save the best checkpoint with the decoding that scores best on the ROUGE sample."""
    best_dir = run.output / BEST_DIR
    checkpoint = load_checkpoint(best_dir, device=run.device)
    options = [checkpoint.decode, *(c for c in candidates if c != checkpoint.decode)]
    ranked = choose_decode(
        checkpoint, run.rouge_sample, options, max_src_tokens=run.config.max_src_tokens,
        device=run.device,
    )  # fmt: skip
    metadata = dict(checkpoint.metadata)
    metadata["decode_tuning"] = [{"decode": d.to_dict(), "rougeL": r} for d, r in ranked]
    save_checkpoint(
        best_dir, checkpoint.model, checkpoint.tokenizer, decode=ranked[0][0], metadata=metadata
    )
    logger.info("saved %s with decoding %s (ROUGE-L %.2f)", best_dir, ranked[0][0], ranked[0][1])


def _valid_loss(
    model: Seq2Seq, valid: Sequence[EncodedPair], config: TrainConfig, device: str
) -> dict[str, float]:
    pairs = list(valid[: config.valid_loss_docs] if config.valid_loss_docs else valid)
    lengths = [(len(p.src), len(p.tgt)) for p in pairs]
    batches = make_batches(lengths, config.batch_tokens, random.Random(0))
    nll = tokens = 0.0
    model.eval()
    with torch.inference_mode():
        for indices in batches:
            batch = collate([pairs[i] for i in indices]).to(device)
            out = model.teacher_forced(batch.src, batch.src_len, batch.tgt_in)
            nll += float(token_loss(out.log_probs, batch.tgt_out)[1])
            tokens += int((batch.tgt_out != PAD_ID).sum())
    per_token = nll / max(1.0, tokens)
    return {"valid_nll": per_token, "valid_ppl": math.exp(min(per_token, 50.0))}


def _validate_and_save(run: _Run, meter: _Meter) -> None:
    train_loss, speed = meter.take_window()
    scores = validate(
        run.model,
        run.tokenizer,
        run.valid,
        run.rouge_sample,
        config=run.config,
        decode=run.decode,
        device=run.device,
    )
    record = {
        "step": run.state.step,
        "epoch": round(run.state.epoch + run.state.batch_in_epoch / max(1, run.epoch_size), 3),
        "elapsed": round(run.state.elapsed, 1),
        "lr": learning_rate(max(1, run.state.step), run.config, run.horizon),
        "train_loss": train_loss,
        "tokens_per_second": round(speed, 1),
        **scores,
    }
    run.state.history.append(record)
    score = _selection_score(run.config, scores)
    improved = run.state.best_score is None or score > run.state.best_score
    if improved:
        run.state.best_score, run.state.best_step, run.state.bad_validations = (
            score,
            run.state.step,
            0,
        )
    else:
        run.state.bad_validations += 1
    logger.info("validation %s%s", _format_record(record), " (best so far)" if improved else "")
    _save(run, improved)
    _write_curves(run)


def _selection_score(config: TrainConfig, scores: dict[str, float]) -> float:
    """Higher is better: ROUGE-L, or minus the validation NLL."""
    return scores["rougeL"] if config.select_metric == "rougeL" else -scores["valid_nll"]


def _format_record(record: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
    )


def _save(run: _Run, improved: bool) -> None:
    """Write ``last`` (and ``best`` if improved), then the trainer state that matches ``last``."""
    metadata = _metadata(run)
    save_checkpoint(
        run.output / LAST_DIR, run.model, run.tokenizer, decode=run.decode, metadata=metadata
    )
    if improved:
        save_checkpoint(
            run.output / BEST_DIR, run.model, run.tokenizer, decode=run.decode, metadata=metadata
        )
    tensors = _optimizer_tensors(run.optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    _atomic_write(run.output / STATE_TENSORS_FILE, lambda path: save_file(tensors, str(path)))
    state = {
        "version": STATE_VERSION,
        "state": dataclasses.asdict(run.state),
        "train_config": run.config.to_dict(),
        "param_groups": _param_groups(run.optimizer),
    }
    text = json.dumps(state, indent=1)
    _atomic_write(run.output / STATE_FILE, lambda path: path.write_text(text, encoding="utf-8"))


def _metadata(run: _Run) -> dict[str, Any]:
    """Provenance stored in config.json: data, config, time, hardware, scores."""
    latest = run.state.history[-1] if run.state.history else {}
    return {
        "step": run.state.step,
        "epoch": latest.get("epoch"),
        "data": run.data_info,
        "train_pairs": len(run.train),
        "valid_pairs": len(run.valid),
        "train_config": run.config.to_dict(),
        "max_src_tokens": run.config.max_src_tokens,
        "training_seconds": round(run.state.elapsed, 1),
        "hardware": hardware(run.device),
        "scores": {k: v for k, v in latest.items() if k not in ("step", "epoch", "elapsed")},
    }


def hardware(device: str) -> dict[str, Any]:
    """The machine a model was trained on, for its metadata."""
    info: dict[str, Any] = {
        "device": device,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(temporary)
    temporary.replace(path)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Adam's per-parameter tensors as flat names ``state.<param index>.<key>``."""
    tensors = {}
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            tensor = value if isinstance(value, Tensor) else torch.tensor(value)
            tensors[f"state.{index}.{key}"] = tensor.detach().cpu().contiguous()
    return tensors


def _param_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    groups = optimizer.state_dict()["param_groups"]
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in groups]


def _load_tensors(run: _Run, path: Path, param_groups: list[dict[str, Any]]) -> None:
    tensors = load_file(str(path))
    per_param: dict[int, dict[str, Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            per_param.setdefault(int(index), {})[key] = tensor.to(run.device)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in param_groups]
    run.optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    torch.set_rng_state(tensors["rng.torch"])


def _parameter_count(model: Seq2Seq) -> int:
    return sum(p.numel() for p in model.parameters())


# --- curves -------------------------------------------------------------------------------------


def _write_curves(run: _Run) -> None:
    """Training loss, validation NLL and ROUGE against updates, as a PNG (no display needed)."""
    if run.state.history:
        write_curves(run.state.history, run.state.train_curve, run.output / CURVES_FILE)


def write_curves(
    history: Sequence[dict[str, Any]], train_curve: Sequence[Sequence[float]], path: Path
) -> None:
    """Plot ``history`` (validation records) and ``train_curve`` ([step, loss] pairs)."""
    # The object API with an Agg canvas draws without touching pyplot's global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    loss_axes, rouge_axes = figure.subplots(1, 2)
    if train_curve:
        train_steps, train_losses = zip(*train_curve, strict=True)
        loss_axes.plot(
            train_steps,
            train_losses,
            label="train loss (label-smoothed, moving average)",
            color="tab:blue",
        )
    steps = [h["step"] for h in history]
    loss_axes.plot(steps, [h["valid_nll"] for h in history], "o-", label="valid NLL")
    loss_axes.set(xlabel="update", ylabel="loss per token", title="loss")
    loss_axes.legend()
    for name in ("rouge1", "rouge2", "rougeL"):
        if all(name in h for h in history):
            rouge_axes.plot(steps, [h[name] for h in history], "o-", label=name)
    rouge_axes.set(xlabel="update", ylabel="F1 x 100", title="validation ROUGE")
    rouge_axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(str(path), dpi=80)
