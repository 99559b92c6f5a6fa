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
score has not improved for ``patience`` validations. At the end, the best checkpoint's
config.json gets the training domain (``s2s_model.domain``: the words of the training data and
the out-of-domain threshold set on the validation sources), which ``out_of_domain`` reads.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from s2s_model.averaging import CHECKPOINTS_DIR, step_checkpoints, step_dir_name
from s2s_model.budget import Closing, Costs, Deadline, fit_closing
from s2s_model.checkpoint import CONFIG_FILE, load_checkpoint, save_checkpoint
from s2s_model.config import DEFAULT_DEVICE, DecodeConfig, ModelConfig, TrainConfig
from s2s_model.curves import write_curves
from s2s_model.device import hardware, resolve_device
from s2s_model.domain import DomainProfile, attach_profile, build_profile
from s2s_model.errors import S2SError
from s2s_model.model import Seq2Seq
from s2s_model.objective import learning_rate, token_loss
from s2s_model.tokenizer import PAD_ID, Tokenizer
from s2s_model.trainer_state import (
    STATE_FILE,
    TrainerState,
    data_digest,
    read_trainer_state,
    restore_tensors,
    save_trainer_state,
)
from s2s_model.training_data import (
    Batch,
    EncodedPair,
    collate,
    encode_pairs,
    epoch_batches,
    train_tokenizer,
)
from s2s_model.validation import choose_decode, valid_loss, validate

logger = logging.getLogger(__name__)

BEST_DIR = "best"
LAST_DIR = "last"
CURVES_FILE = "curves.png"
# What a resumed run may change: when to stop. Everything else comes from the run itself.
RESUMABLE_FIELDS = ("max_epochs", "max_steps", "max_time", "patience")
TRAIN_CURVE_EVERY = 50
PROGRESS_INTERVAL = 1.0
LOSS_EMA = 0.98
STEP_TIME_EMA = 0.9
# Under a time budget, the cost of the closing is first measured on this many documents.
PROBE_LOSS_DOCS = 32
PROBE_DECODE_DOCS = 8
# Until a save is timed: seconds per byte of weights and Adam moments, plus a constant.
SAVE_SECONDS_PER_BYTE = 1 / 300e6
SAVE_SECONDS = 0.3

Report = Callable[[str], None]


class TrainingError(S2SError, ValueError):
    """Training cannot start or resume; the message says why and what to do."""


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` did: where the best model is, its validation scores and why it stopped."""

    best_dir: Path
    best: dict[str, Any]
    steps: int
    elapsed: float
    stopped: str


@dataclass(frozen=True)
class _Inputs:
    """What ``fit`` was given, its device resolved: one object through starting or resuming."""

    train_pairs: Sequence[tuple[str, str]]
    valid_pairs: Sequence[tuple[str, str]]
    output: Path
    model_config: ModelConfig
    config: TrainConfig
    decode: DecodeConfig
    device: str
    data_info: dict[str, Any]
    deadline: Deadline
    report: Report


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
    deadline: Deadline
    report: Report
    closing: Closing
    costs: Costs
    valid_pairs: int = 0
    horizon: int = 0
    epoch_size: int = 0
    step_seconds: float = 0.0


def fit(
    train_pairs: Sequence[tuple[str, str]],
    valid_pairs: Sequence[tuple[str, str]],
    output_dir: str | os.PathLike[str],
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    decode: DecodeConfig | None = None,
    resume: bool = False,
    device: str = DEFAULT_DEVICE,
    data_info: dict[str, Any] | None = None,
    decode_candidates: Sequence[DecodeConfig] = (),
    progress: bool = True,
    report: Report | None = None,
    started: float | None = None,
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
        progress: show a progress bar.
        report: receives a line at each validation and at each stage of the closing.
        started: the ``time.monotonic()`` the ``max_time`` budget counts from (default: now);
            a command passes its own start, so that the budget bounds it from start to exit.
    """
    if not train_pairs or not valid_pairs:
        raise TrainingError(
            f"need training and validation pairs, got {len(train_pairs)} and {len(valid_pairs)}"
        )
    if model_config.extended_vocab:
        raise TrainingError(
            "extended_vocab is for word-level vocabularies (OpenNMT-py imports); training builds a"
            " SentencePiece vocabulary, whose pieces spell any source word, so copy needs no"
            " extended ids: leave extended_vocab off"
        )
    deadline = Deadline(time.monotonic() if started is None else started, train_config.max_time)
    inputs = _Inputs(
        train_pairs=train_pairs,
        valid_pairs=valid_pairs,
        output=Path(output_dir),
        model_config=model_config,
        config=train_config,
        decode=decode or DecodeConfig(),
        device=resolve_device(device),
        data_info=data_info or {},
        deadline=deadline,
        report=report or _silent,
    )
    run = (_resume if resume else _start)(inputs)
    profile = build_profile(train_pairs, [text for text, _ in valid_pairs])
    _plan_closing(run, len(decode_candidates))
    stopped = _train(run, progress=progress)
    _close(run, stopped, decode_candidates, profile)
    best = next((h for h in run.state.history if h["step"] == run.state.best_step), {})
    logger.info("training stopped (%s) at step %d; best: %s", stopped, run.state.step, best)
    return FitResult(run.output / BEST_DIR, best, run.state.step, run.state.elapsed, stopped)


def _silent(line: str) -> None:
    """The report of a caller that wants none."""


def _close(
    run: _Run, stopped: str, candidates: Sequence[DecodeConfig], profile: DomainProfile
) -> None:
    """After the last update: the choice of decode settings (unless the budget ruled it out,
    with a warning, before training), then the training domain."""
    if candidates and run.rouge_sample and run.closing.candidates:
        run.report(
            f"stopped ({stopped}) at step {run.state.step:,}; choosing the decode settings"
            f" among {len(candidates) + 1} on {len(run.rouge_sample):,} validation documents"
        )
        _save_best_decode(run, candidates)
    _save_domain(run.output / BEST_DIR, profile)


# --- starting and resuming ----------------------------------------------------------------------


def _start(inputs: _Inputs) -> _Run:
    output, config = inputs.output, inputs.config
    if (output / STATE_FILE).exists():
        raise TrainingError(
            f"{output} already holds a training run: pass --resume to continue it, or choose"
            " another output directory"
        )
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tokenizer = train_tokenizer(inputs.train_pairs, config)
    model_config = dataclasses.replace(inputs.model_config, vocab_size=tokenizer.vocab_size)
    model = Seq2Seq(model_config).to(inputs.device)
    logger.info("model: %s parameters, %s", _parameter_count(model), model_config)
    run = _make_run(model, tokenizer, inputs)
    run.state.data_digest = data_digest(inputs.train_pairs)
    return run


def _resume(inputs: _Inputs) -> _Run:
    output, device = inputs.output, inputs.device
    state_path = output / STATE_FILE
    if not state_path.is_file():
        raise TrainingError(
            f"nothing to resume: {state_path} does not exist; start the run without --resume"
        )
    saved = read_trainer_state(output)
    checkpoint = load_checkpoint(output / LAST_DIR, device=device)
    if checkpoint.metadata.get("step") != saved["state"]["step"]:
        raise TrainingError(
            f"{output / LAST_DIR} is at step {checkpoint.metadata.get('step')} but {state_path}"
            f" at step {saved['state']['step']}: the run was interrupted while saving; start afresh"
        )
    config = _resumed_config(TrainConfig.from_dict(saved["train_config"]), inputs.config)
    if checkpoint.model_config != dataclasses.replace(
        inputs.model_config, vocab_size=checkpoint.model_config.vocab_size
    ):
        logger.warning("resuming with the saved model config %s", checkpoint.model_config)
    model = checkpoint.model.to(device).train()
    if not isinstance(checkpoint.tokenizer, Tokenizer):
        raise TrainingError(
            f"{output / LAST_DIR} has a {checkpoint.tokenizer.kind} tokenizer:"
            " training resumes SentencePiece checkpoints only"
        )
    run = _make_run(model, checkpoint.tokenizer, dataclasses.replace(inputs, config=config))
    run.state = TrainerState(**saved["state"])
    if run.state.data_digest != data_digest(inputs.train_pairs):
        raise TrainingError(
            f"the training pairs differ from those the run in {output} started with (same file,"
            " fields and --limit are needed to resume); start a new run instead"
        )
    restore_tensors(output, run.optimizer, saved["param_groups"], device)
    logger.info("resumed at step %d (epoch %d)", run.state.step, run.state.epoch)
    return run


def _make_run(model: Seq2Seq, tokenizer: Tokenizer, inputs: _Inputs) -> _Run:
    config, valid_pairs = inputs.config, inputs.valid_pairs
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=config.adam_betas,
        weight_decay=config.weight_decay,
    )
    loss_docs = min(config.valid_loss_docs or len(valid_pairs), len(valid_pairs))
    run = _Run(
        model=model,
        tokenizer=tokenizer,
        optimizer=optimizer,
        train=encode_pairs(tokenizer, inputs.train_pairs, config),
        valid=encode_pairs(tokenizer, valid_pairs[:loss_docs], config),
        rouge_sample=_rouge_sample(valid_pairs, config.valid_sample, config.seed),
        config=config,
        decode=inputs.decode,
        output=inputs.output,
        device=inputs.device,
        state=TrainerState(),
        data_info=inputs.data_info,
        deadline=inputs.deadline,
        report=inputs.report,
        closing=Closing(loss_docs, min(config.valid_sample, len(valid_pairs)), 0),
        costs=_assumed_costs(model),
        valid_pairs=len(valid_pairs),
    )
    run.epoch_size = len(epoch_batches(run.train, config, 0))
    run.horizon = config.max_steps or _updates_per_epoch(run) * config.max_epochs
    return run


def _rouge_sample(
    valid_pairs: Sequence[tuple[str, str]], size: int, seed: int
) -> list[tuple[str, str]]:
    """A fixed seeded sample of ``size`` validation pairs, in their order."""
    picks = sorted(random.Random(seed).sample(range(len(valid_pairs)), min(size, len(valid_pairs))))
    return [(valid_pairs[i][0], valid_pairs[i][1]) for i in picks]


def _updates_per_epoch(run: _Run) -> int:
    return math.ceil(run.epoch_size / run.config.grad_accumulation)


def _assumed_costs(model: Seq2Seq) -> Costs:
    """Closing costs until they are measured: only the saves can be guessed, from the size of
    the weights and of Adam's two moments."""
    saved_bytes = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    save = SAVE_SECONDS + saved_bytes * SAVE_SECONDS_PER_BYTE
    return Costs(loss_per_doc=0.0, decode_per_doc=0.0, save=save)


def _plan_closing(run: _Run, candidates: int) -> None:
    """Announce the run and, under a time budget, measure the closing's cost and scale it to
    fit (``s2s_model.budget``). A resumed run keeps the validation sizes it had."""
    previous = run.state.history[-1] if run.state.history else {}
    wanted = Closing(
        loss_docs=previous.get("loss_docs", run.closing.loss_docs),
        rouge_docs=previous.get("rouge_docs", run.closing.rouge_docs),
        candidates=candidates,
    )
    run.closing = wanted
    if run.deadline.limited:
        run.costs = _measure_costs(run)
        run.closing = fit_closing(wanted, run.costs, run.deadline.left())
    _apply_closing(run, wanted)
    run.report(_plan_line(run))


def _apply_closing(run: _Run, wanted: Closing) -> None:
    """Validate on the closing's sample sizes, warning when the budget made them smaller."""
    closing = run.closing
    if closing.loss_docs < len(run.valid):
        run.valid = run.valid[: closing.loss_docs]
    if closing.rouge_docs < len(run.rouge_sample):
        run.rouge_sample = _rouge_sample(run.rouge_sample, closing.rouge_docs, run.config.seed)
    if closing.loss_docs < wanted.loss_docs or closing.rouge_docs < wanted.rouge_docs:
        logger.warning(
            "max_time %.0f s: validations scaled down to fit it, loss on %d of %d documents and"
            " ROUGE on %d of %d",
            run.config.max_time,
            closing.loss_docs,
            wanted.loss_docs,
            closing.rouge_docs,
            wanted.rouge_docs,
        )
    if wanted.candidates and not closing.candidates:
        logger.warning(
            "max_time %.0f s: too short to choose among %d decode settings after training;"
            " the validation decoding is kept",
            run.config.max_time,
            wanted.candidates + 1,
        )


def _measure_costs(run: _Run) -> Costs:
    """The closing's costs per document, measured on a few validation documents with the
    model as it is (an untrained model writes summaries to the length cap: an upper bound)."""
    loss_docs = run.valid[:PROBE_LOSS_DOCS]
    started = time.monotonic()
    valid_loss(run.model, loss_docs, run.config, run.device)
    loss_seconds = time.monotonic() - started
    probe = run.rouge_sample[:PROBE_DECODE_DOCS]
    scores = validate(
        run.model, run.tokenizer, [], probe, config=run.config, decode=run.decode,
        device=run.device,
    )  # fmt: skip
    return run.costs.updated(
        loss_per_doc=loss_seconds / max(1, len(loss_docs)),
        decode_per_doc=scores.get("decode_seconds", 0.0) / max(1, len(probe)),
    )


def _plan_line(run: _Run) -> str:
    closing = run.closing
    line = (
        f"training {len(run.train):,} pairs on {run.device}: {_updates_per_epoch(run):,} updates"
        f" an epoch, {run.horizon:,} planned; validating loss on {closing.loss_docs:,} pairs"
        f" and ROUGE on {closing.rouge_docs:,}"
    )
    if run.deadline.limited:
        line += (
            f"; max_time {run.config.max_time:.0f} s, {run.deadline.elapsed():.0f} s spent setting"
            f" up, {closing.seconds(run.costs):.0f} s kept for the closing"
        )
    return line


def _resumed_config(saved: TrainConfig, given: TrainConfig) -> TrainConfig:
    """The run's own config, with the stopping rules of ``given`` (a resume may extend a run)."""
    for name, value in saved.to_dict().items():
        if name not in RESUMABLE_FIELDS and getattr(given, name) != value:
            logger.warning(
                "resuming keeps the run's %s=%r (ignoring %r)", name, value, getattr(given, name)
            )
    return dataclasses.replace(saved, **{name: getattr(given, name) for name in RESUMABLE_FIELDS})


# --- the loop -----------------------------------------------------------------------------------


def _train(run: _Run, *, progress: bool) -> str:
    """Run updates until a stopping rule fires; returns the rule's name. A run stopped by a
    rule is validated at its last update (once), so that ``last`` and ``best`` are current."""
    if run.config.max_steps and run.state.step >= run.config.max_steps:
        return "max_steps"
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
        for batches in _updates(run):
            step_started = time.monotonic()
            meter.add(_train_step(run, batches), sum(batch.tokens for batch in batches))
            _time_step(run, time.monotonic() - step_started)
            run.state.elapsed = elapsed_before + time.monotonic() - started
            bar.update(1)
            bar.set_postfix(_progress_fields(run, meter), refresh=False)
            if run.state.step % TRAIN_CURVE_EVERY == 0:
                run.state.train_curve.append([run.state.step, meter.loss])
            reason = _stop_reason(run)
            if reason or _validation_due(run):
                _validate_and_save(run, meter)
                reason = reason or _stop_reason(run)
            if reason or _out_of_patience(run):
                stopped = reason or "early_stopping"
                break
        else:
            if not run.state.history or run.state.history[-1]["step"] != run.state.step:
                _validate_and_save(run, meter)
    finally:
        bar.close()
    return stopped


def _time_step(run: _Run, seconds: float) -> None:
    """Keep a moving average of an update's seconds (the first one as it is)."""
    if run.step_seconds:
        run.step_seconds = STEP_TIME_EMA * run.step_seconds + (1 - STEP_TIME_EMA) * seconds
    else:
        run.step_seconds = seconds


def _updates(run: _Run) -> Iterator[list[Batch]]:
    """The batches of each update (``grad_accumulation`` of them, fewer at an epoch's end),
    from the run's current position (epoch and batch) to the last epoch's end."""
    while run.state.epoch < run.config.max_epochs:
        batches = epoch_batches(run.train, run.config, run.state.epoch)
        run.epoch_size = len(batches)
        while run.state.batch_in_epoch < len(batches):
            first = run.state.batch_in_epoch
            group = batches[first : first + run.config.grad_accumulation]
            run.state.batch_in_epoch += len(group)
            yield [collate([run.train[i] for i in indices]).to(run.device) for indices in group]
        run.state.epoch += 1
        run.state.batch_in_epoch = 0


def _train_step(run: _Run, batches: list[Batch]) -> float:
    """One update from the gradients of ``batches``; returns their mean token loss.

    Every target token of the update weighs the same, whichever batch holds it: each batch's
    summed loss is divided by the update's token count before its backward pass."""
    run.model.train()
    run.state.step += 1
    lr = learning_rate(run.state.step, run.config, run.horizon)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.zero_grad(set_to_none=True)
    n_tokens = sum(int((batch.tgt_out != PAD_ID).sum()) for batch in batches)
    total = 0.0
    for batch in batches:
        loss = _batch_loss(run, batch, n_tokens)
        loss.backward()  # type: ignore[no-untyped-call]
        total += loss.item()
    if run.config.clip_norm:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.clip_norm)
    run.optimizer.step()
    return total


def _batch_loss(run: _Run, batch: Batch, n_tokens: int) -> torch.Tensor:
    """The batch's summed token loss (plus coverage loss) divided by ``n_tokens``."""
    bf16 = run.config.precision == "bf16"
    with torch.autocast(device_type=run.device, dtype=torch.bfloat16, enabled=bf16):
        out = run.model.teacher_forced(batch.src, batch.src_len, batch.tgt_in)
    loss_sum, _ = token_loss(
        out.log_probs.float(), batch.tgt_out, label_smoothing=run.config.label_smoothing
    )
    loss = loss_sum / n_tokens
    if run.model.config.coverage:
        mask = (batch.tgt_out != PAD_ID).float()
        loss = loss + run.config.coverage_weight * (out.coverage_loss * mask).sum() / n_tokens
    return loss


def _progress_fields(run: _Run, meter: _Meter) -> dict[str, str]:
    """Loss, tokens/s and, under a time budget, the time left (the bar's ETA counts epochs)."""
    fields = {"loss": f"{meter.loss:.3f}", "tok/s": f"{meter.tokens_per_second:.0f}"}
    if run.deadline.limited:
        fields["time_left"] = f"{max(0.0, run.deadline.left()) / 60:.1f}m"
    return fields


def _stop_reason(run: _Run) -> str:
    """Why training stops after this update: its step limit, or the time budget, which must
    still hold another update, a validation when one is due, and the closing."""
    if run.config.max_steps and run.state.step >= run.config.max_steps:
        return "max_steps"
    if run.deadline.limited:
        needed = run.closing.reserve(run.costs) + run.step_seconds
        if _validation_due(run) and not _validated_now(run):
            needed += _validation_seconds(run)
        if run.deadline.left() <= needed:
            return "max_time"
    return ""


def _validated_now(run: _Run) -> bool:
    return bool(run.state.history) and run.state.history[-1]["step"] == run.state.step


def _validation_seconds(run: _Run) -> float:
    """A validation's expected seconds: loss, ROUGE and the saves of last and best."""
    return Closing(run.closing.loss_docs, run.closing.rouge_docs, 0).seconds(run.costs)


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


def _save_best_decode(run: _Run, candidates: Sequence[DecodeConfig]) -> None:
    """Re-save the best checkpoint with the decoding that scores best on the ROUGE sample (its
    own decoding is scored already, when its validation used this sample)."""
    best_dir = run.output / BEST_DIR
    started = time.monotonic()
    checkpoint = load_checkpoint(best_dir, device=run.device)
    options = [checkpoint.decode, *(c for c in candidates if c != checkpoint.decode)]
    best = next((h for h in run.state.history if h["step"] == run.state.best_step), {})
    known = {}
    if best.get("rouge_docs") == len(run.rouge_sample) and "rougeL" in best:
        known[checkpoint.decode] = best["rougeL"]
    ranked = choose_decode(
        checkpoint, run.rouge_sample, options, max_src_tokens=run.config.max_src_tokens,
        device=run.device, known=known,
    )  # fmt: skip
    metadata = dict(checkpoint.metadata)
    metadata["decode_tuning"] = [{"decode": d.to_dict(), "rougeL": r} for d, r in ranked]
    save_checkpoint(
        best_dir, checkpoint.model, checkpoint.tokenizer, decode=ranked[0][0], metadata=metadata
    )
    changes = _changed_fields(checkpoint.decode, ranked[0][0]) or "the validation decoding"
    run.report(
        f"decode settings: {changes} (ROUGE-L {ranked[0][1]:.2f} on {len(run.rouge_sample)}"
        f" documents, {time.monotonic() - started:.0f} s)"
    )


def _changed_fields(before: DecodeConfig, after: DecodeConfig) -> str:
    old, new = before.to_dict(), after.to_dict()
    return ", ".join(f"{name}={value}" for name, value in new.items() if old[name] != value)


def _save_domain(best_dir: Path, profile: DomainProfile) -> None:
    """Save the training domain (``s2s_model.domain``) in the best checkpoint: the words its
    training sources and summaries use, and the out-of-domain threshold set on the
    validation sources."""
    if not (best_dir / CONFIG_FILE).exists():
        return
    attach_profile(best_dir, profile)
    logger.info(
        "saved the training domain in %s: %d known words, out of domain below %.3f",
        best_dir,
        len(profile.known_words),
        profile.threshold,
    )


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
        "loss_docs": len(run.valid),
        "rouge_docs": len(run.rouge_sample),
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
    saving = time.monotonic()
    saves = _save(run, improved)
    _write_curves(run)
    run.costs = run.costs.updated(
        loss_per_doc=scores["loss_seconds"] / max(1, len(run.valid)),
        decode_per_doc=scores.get("decode_seconds", 0.0) / max(1, len(run.rouge_sample)),
        save=(time.monotonic() - saving) / saves,
    )
    run.report(_validation_line(run, record, improved))


def _validation_line(run: _Run, record: dict[str, Any], improved: bool) -> str:
    """step 300 (epoch 1.50) | train loss 3.912 | valid loss 3.801 | ROUGE-1/2/L 31.2/12.0/29.9
    | 1m05s, ETA 2m10s (best so far)"""
    parts = [f"step {record['step']:,} (epoch {record['epoch']:.2f})"]
    if record["train_loss"] is not None:
        parts.append(f"train loss {record['train_loss']:.3f}")
    parts.append(f"valid loss {record['valid_nll']:.3f}")
    if "rougeL" in record:
        parts.append(
            f"ROUGE-1/2/L {record['rouge1']:.1f}/{record['rouge2']:.1f}/{record['rougeL']:.1f}"
        )
    parts.append(f"{_clock(run.deadline.elapsed())}, ETA {_clock(_eta(run))}")
    return " | ".join(parts) + (" (best so far)" if improved else "")


def _eta(run: _Run) -> float:
    """Seconds to the end of training: the budget's end, or the planned updates' at the
    current pace, whichever comes first."""
    steps_left = max(0, run.horizon - run.state.step)
    if run.config.max_steps:
        steps_left = min(steps_left, run.config.max_steps - run.state.step)
    by_steps = steps_left * run.step_seconds
    return min(by_steps, max(0.0, run.deadline.left()))


def _clock(seconds: float) -> str:
    """90 -> '1m30s', 3725 -> '1h02m'."""
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"


def _selection_score(config: TrainConfig, scores: dict[str, float]) -> float:
    """Higher is better: ROUGE-L, or minus the validation NLL."""
    return scores["rougeL"] if config.select_metric == "rougeL" else -scores["valid_nll"]


def _format_record(record: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
    )


def _save(run: _Run, improved: bool) -> int:
    """Write ``last`` (and ``best`` if improved, and ``checkpoints/step-N`` when kept), then the
    trainer state that matches ``last``; returns how many checkpoints were written."""
    metadata = _metadata(run)
    targets = [run.output / LAST_DIR]
    if improved:
        targets.append(run.output / BEST_DIR)
    if run.config.keep_checkpoints:
        targets.append(run.output / CHECKPOINTS_DIR / step_dir_name(run.state.step))
    for target in targets:
        save_checkpoint(target, run.model, run.tokenizer, decode=run.decode, metadata=metadata)
    save_trainer_state(run.output, run.state, run.config, run.optimizer, device=run.device)
    if run.config.keep_checkpoints:
        _drop_old_checkpoints(run.output / CHECKPOINTS_DIR, run.config.keep_checkpoints)
    return len(targets)


def _drop_old_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest ``step-N`` checkpoints in ``folder``."""
    for old in step_checkpoints(folder)[:-keep]:
        shutil.rmtree(old)


def _metadata(run: _Run) -> dict[str, Any]:
    """Provenance stored in config.json: data, config, time, hardware, scores."""
    latest = run.state.history[-1] if run.state.history else {}
    return {
        "step": run.state.step,
        "epoch": latest.get("epoch"),
        "data": run.data_info,
        "train_pairs": len(run.train),
        "valid_pairs": run.valid_pairs,
        "train_config": run.config.to_dict(),
        "max_src_tokens": run.config.max_src_tokens,
        "training_seconds": round(run.state.elapsed, 1),
        "hardware": hardware(run.device),
        "scores": {k: v for k, v in latest.items() if k not in ("step", "epoch", "elapsed")},
    }


def _parameter_count(model: Seq2Seq) -> int:
    return sum(p.numel() for p in model.parameters())


def _write_curves(run: _Run) -> None:
    """Training loss, validation NLL and ROUGE against updates, as a PNG (no display needed)."""
    if run.state.history:
        write_curves(run.state.history, run.state.train_curve, run.output / CURVES_FILE)
