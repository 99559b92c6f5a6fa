"""``s2s train`` and ``s2s evaluate``: thin click layers over library functions.

torch, rouge-score and pyarrow are imported inside the commands, so ``s2s --help`` stays fast
(the decode flags are built from ``s2s_model.config``'s fields, which loads no torch).
Errors a user can fix (bad files, bad fields, bad settings) are ``S2SError``s, which
``S2SCommand`` prints as one line naming the problem, no traceback.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from s2s_cli.command import S2SCommand
from s2s_model.bundled import DEFAULT_MODEL, model_choices, model_directory
from s2s_model.config import (
    DEFAULT_DEVICE,
    DEVICES,
    DecodeConfig,
    FieldSpec,
    ModelConfig,
    TrainConfig,
    field_specs,
)

logger = logging.getLogger(__name__)

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
CONFIG_SECTIONS = ("model", "train", "decode", "decode_candidates")
PROGRESS_EVERY_S = 10.0
# The validation scores the last line gives for the best checkpoint.
BEST_SCORES = ("valid_nll", "rouge1", "rouge2", "rougeL")

TRAIN_HELP = """Train a summarizer on (text, summary) pairs and keep the best checkpoint.

\b
  s2s train --train train.jsonl --valid valid.jsonl --output runs/m1 --max_time 30m
  s2s train --train train.parquet --valid valid.parquet --output runs/m1 \\
      --text_field description --summary_field synopsis --config recipe.json --hidden_size 256
  s2s train ... --output runs/m1 --resume        # continue an interrupted run

Writes OUTPUT/best (the checkpoint to use: s2s summarize ... --model OUTPUT/best),
OUTPUT/last with trainer_state.* (for --resume) and OUTPUT/curves.png. Prints a line per
validation (-q: none). --max_time bounds the whole command, from its start to its exit.
Every field of ModelConfig and TrainConfig is a flag below; --config is a JSON object with
optional "model", "train" and "decode" sections holding the same fields (and DecodeConfig's),
and optionally "decode_candidates": a list of changes to "decode" to try on the validation
sample after training (the best is saved with the model). Flags override the file.
"""


class _Duration(click.ParamType):
    """Seconds from '90', '90s', '45m' or '1.5h'."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        match = _DURATION.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a duration like 90s, 45m or 1.5h", param, ctx)
        return float(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]


DURATION = _Duration()


def _pair_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--text_field",
            default="text",
            show_default=True,
            help="JSONL field / Parquet column holding the document",
        ),
        click.option(
            "--summary_field",
            default="summary",
            show_default=True,
            help="JSONL field / Parquet column holding the reference summary",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="torch CPU threads (default: torch's choice; 1 is often faster on a busy machine)",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _read_pairs(path: str, text_field: str, summary_field: str, limit: int | None) -> list[Any]:
    from s2s_cli.pairs import read_pairs

    return read_pairs(path, text_field=text_field, summary_field=summary_field, limit=limit)


def load_config_file(path: str | None) -> dict[str, Any]:
    """The sections of a ``--config`` JSON file; unknown sections are an error."""
    if path is None:
        return {"model": {}, "train": {}, "decode": {}, "decode_candidates": []}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise click.ClickException(f"--config {path}: cannot read it as JSON ({err})") from None
    if not isinstance(data, dict) or set(data) - set(CONFIG_SECTIONS):
        raise click.ClickException(
            f"--config {path}: must be a JSON object with sections among {CONFIG_SECTIONS}"
        )
    candidates = data.get("decode_candidates", [])
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise click.ClickException(
            f"--config {path}: 'decode_candidates' must be a list of objects"
        )
    sections: dict[str, Any] = {name: dict(data.get(name, {})) for name in CONFIG_SECTIONS[:3]}
    sections["decode_candidates"] = candidates
    return sections


def build_configs(
    sections: dict[str, Any], train_overrides: dict[str, Any]
) -> tuple[Any, Any, Any, list[Any]]:
    """ModelConfig, TrainConfig, DecodeConfig and the decode candidates (each a set of changes
    to the DecodeConfig) from config-file sections plus flags."""
    train_values = {**sections.get("train", {}), **train_overrides}
    try:
        train_config = TrainConfig.from_dict(train_values)
        model_values = {"vocab_size": train_config.vocab_size, **sections.get("model", {})}
        model_config = ModelConfig.from_dict(model_values)
        decode = DecodeConfig.from_dict(sections.get("decode", {}))
        candidates = [decode.with_overrides(c) for c in sections.get("decode_candidates", [])]
    except (TypeError, ValueError) as err:
        raise click.ClickException(f"bad configuration: {err}") from None
    return model_config, train_config, decode, candidates


# The model's vocab_size is the tokenizer's, set by TrainConfig's --vocab_size.
DERIVED_MODEL_FIELDS = ("vocab_size",)
# Flags whose values are read by a type of their own rather than the field's.
FLAG_TYPES: dict[str, click.ParamType] = {"max_time": DURATION}


def _config_options(cls: type, section: str, skip: tuple[str, ...] = ()) -> Callable[..., Any]:
    """One ``--flag`` per field of ``cls`` (``ModelConfig`` or ``TrainConfig``), default None:
    a flag given overrides the ``--config`` file, which overrides the field's default."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for spec in reversed(field_specs(cls)):
            if spec.name in skip:
                continue
            help_text = f"{section}: {spec.help} [default: {_shown(spec.default)}]"
            function = _field_option(spec, help_text)(function)
        return function

    return decorate


def _field_option(spec: FieldSpec, help_text: str) -> Callable[..., Any]:
    flag = f"--{spec.name}"
    if spec.kind is bool:
        return click.option(f"{flag}/--{spec.off_switch}", spec.name, default=None,
                            help=help_text)  # fmt: skip
    if spec.choices is not None:
        kind: Any = click.Choice(spec.choices)
    elif typing.get_origin(spec.kind) is tuple:
        kind = typing.get_args(spec.kind)
    else:
        kind = FLAG_TYPES.get(spec.name, spec.kind)
    return click.option(flag, spec.name, type=kind, default=None, help=help_text)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _field_values(cls: type, flags: dict[str, Any]) -> dict[str, Any]:
    """The flags given (not None) among ``cls``'s fields."""
    names = {spec.name for spec in field_specs(cls)}
    return {name: value for name, value in flags.items() if name in names and value is not None}


@click.command(cls=S2SCommand, help=TRAIN_HELP)
@click.option("--train", "train_path", required=True, help="training pairs: JSONL or Parquet")
@click.option("--valid", "valid_path", required=True, help="validation pairs: JSONL or Parquet")
@click.option("--output", required=True, help="run directory (best/, last/, curves.png)")
@_pair_options
@click.option("--config", "config_path", default=None, help="JSON recipe: model/train/decode")
@click.option("--resume", is_flag=True, help="continue the run in --output where it stopped")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="train on N pairs drawn at random (seeded by --seed) from the training file",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=DEFAULT_DEVICE,
    show_default=True,
    help="where to train; 'auto' takes a GPU when torch can use one, else the CPU",
)
@click.option("--progress/--no_progress", default=None,
              help="show a progress bar [default: when stderr is a terminal]")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="print nothing but errors and the result")
@_config_options(TrainConfig, "training")
@_config_options(ModelConfig, "model", skip=DERIVED_MODEL_FIELDS)
def train(
    train_path: str,
    valid_path: str,
    output: str,
    text_field: str,
    summary_field: str,
    threads: int | None,
    config_path: str | None,
    resume: bool,
    limit: int | None,
    device: str,
    progress: bool | None,
    quiet: bool,
    **fields: Any,
) -> None:
    started = time.monotonic()
    sections = load_config_file(config_path)
    sections["model"].update(_field_values(ModelConfig, fields))
    model_config, train_config, decode, candidates = build_configs(
        sections, _field_values(TrainConfig, fields)
    )
    _set_threads(threads)
    train_pairs = _read_pairs(train_path, text_field, summary_field, None)
    if limit is not None:
        train_pairs = sample_pairs(train_pairs, limit, train_config.seed)
    valid_pairs = _read_pairs(valid_path, text_field, summary_field, None)
    data_info = {
        "train": train_path,
        "valid": valid_path,
        "text_field": text_field,
        "summary_field": summary_field,
        "limit": limit,
    }
    report = None if quiet else _echo_progress
    result = _fit(
        train_pairs,
        valid_pairs,
        output,
        model_config=model_config,
        train_config=train_config,
        decode=decode,
        resume=resume,
        device=device,
        data_info=data_info,
        decode_candidates=candidates,
        progress=sys.stderr.isatty() and not quiet if progress is None else progress,
        report=report,
        started=started,
    )
    scores = ", ".join(f"{k} {result.best[k]:.3f}" for k in BEST_SCORES if k in result.best)
    click.echo(
        f"stopped ({result.stopped}) after {result.steps} updates: {result.elapsed:.0f} s training,"
        f" {time.monotonic() - started:.0f} s in all"
    )
    click.echo(f"best checkpoint: {result.best_dir} (step {result.best.get('step')}: {scores})")


def sample_pairs(pairs: list[Any], limit: int, seed: int) -> list[Any]:
    """``limit`` pairs drawn at random (seeded), in their order in the file: a limited run sees
    the whole file's variety, not its first packages."""
    if limit >= len(pairs):
        return pairs
    picks = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[i] for i in picks]


def _echo_progress(line: str) -> None:
    """A progress line on stderr that does not break a progress bar."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _fit(train_pairs: list[Any], valid_pairs: list[Any], output: str, **options: Any) -> Any:
    from s2s_model.train import fit

    return fit(train_pairs, valid_pairs, output, **options)


# --- evaluate -----------------------------------------------------------------------------------

EVALUATE_HELP = """ROUGE of a model (or a predictions file) on TEST_FILE, next to the best lead-N.

\b
  s2s evaluate test.jsonl --model runs/m1/best
  s2s evaluate test.jsonl                          # the bundled model 'debian'
  s2s evaluate cnndm.jsonl --model news --text_field article --summary_field highlights
  s2s evaluate test.parquet --predictions preds.txt --text_field description
  s2s evaluate test.jsonl --model runs/m1/best --beam_size 5 --json_out scores.json

ROUGE-1/2/L/Lsum F1 x 100 (rouge-score, Porter stemming; Lsum with one sentence per line).
Lead-N takes the first N words of each document, with N chosen on TEST_FILE to maximise
ROUGE-L. A predictions file is .txt (one summary per line, in TEST_FILE's order) or
JSONL/Parquet with a --prediction_field column. Beside ROUGE: the quality rates of the
summary columns (a content word repeated, words not in the source; with --known_words_from,
glued or cut words), for the system and for the references.
"""

MODEL_HELP = (
    f"a bundled model by name ({model_choices()}) or a checkpoint directory;"
    f" default: {DEFAULT_MODEL}"
)


def _decode_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """One --flag per DecodeConfig field, default None (= the model's saved setting)."""
    for spec in reversed(field_specs(DecodeConfig)):
        flag = f"--{spec.name}"  # the spelling of s2s summarize's (Beam-style) flags
        help_text = f"decoding: {spec.help} (default: the model's)"
        if spec.kind is bool:
            option = click.option(f"{flag}/--{spec.off_switch}", spec.name, default=None,
                                  help=help_text)  # fmt: skip
        elif spec.choices is not None:
            choice = click.Choice(spec.choices)
            option = click.option(flag, spec.name, type=choice, default=None, help=help_text)
        else:
            option = click.option(flag, spec.name, type=spec.kind, default=None, help=help_text)
        function = option(function)
    return function


@click.command(cls=S2SCommand, help=EVALUATE_HELP)
@click.argument("test_file")
@click.option("--model", "model_path", default=None, help=MODEL_HELP)
@click.option("--predictions", default=None, help="score this predictions file instead of a model")
@click.option("--prediction_field", default="summary", show_default=True,
              help="field of a JSONL/Parquet predictions file")  # fmt: skip
@_pair_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="first N documents only")
@click.option("--max_lead_words", type=click.IntRange(min=1), default=100, show_default=True,
              help="largest N tried for the lead-N baseline")  # fmt: skip
@click.option("--max_src_tokens", type=click.IntRange(min=1), default=None,
              help="source tokens the model reads (default: as s2s summarize)")  # fmt: skip
@click.option("--json_out", default=None, help="also write the report as JSON to this file")
@click.option("-q", "--quiet", is_flag=True, help="no progress lines, only the report")
@click.option("--predictions_out", default=None, help="write the model's summaries here (.txt)")
@click.option("--known_words_from", default=None, metavar="TRAIN",
              help="training pairs: also count summaries with a word in neither their source nor"
              " these (glued or cut copies)")  # fmt: skip
@_decode_options
def evaluate(
    test_file: str,
    model_path: str | None,
    predictions: str | None,
    prediction_field: str,
    text_field: str,
    summary_field: str,
    threads: int | None,
    limit: int | None,
    max_lead_words: int,
    max_src_tokens: int | None,
    json_out: str | None,
    predictions_out: str | None,
    known_words_from: str | None,
    quiet: bool,
    **decode_flags: Any,
) -> None:
    from s2s_model.evaluation import evaluate_predictions, format_report

    if predictions and model_path:
        raise click.UsageError("give --model or --predictions, not both")
    pairs = _read_pairs(test_file, text_field, summary_field, limit)
    sources, references = [p.text for p in pairs], [p.summary for p in pairs]
    seconds, domain = None, None
    if predictions:
        outputs = _read_predictions(predictions, prediction_field, len(pairs))
    else:
        _set_threads(threads)
        progress = None if quiet else SummaryProgress()
        outputs, seconds, domain = _run_model(
            model_path, sources, decode_flags, max_src_tokens, progress
        )
    known = None
    if known_words_from:
        from s2s_model.quality import vocabulary

        train = _read_pairs(known_words_from, text_field, summary_field, None)
        known = vocabulary(text for p in train for text in (p.text, p.summary))
    report = evaluate_predictions(references, outputs, sources=sources, seconds=seconds,
                                  max_lead_words=max_lead_words, known_words=known,
                                  domain=domain)  # fmt: skip
    _write_outputs(report, outputs, json_out, predictions_out, test_file)
    click.echo(format_report(report, system_name="predictions" if predictions else "model"))


class SummaryProgress:
    """Prints "summarized 256 of 1,155 documents, 12.5 docs/s, ETA 1m12s" to stderr: in place on
    a terminal, else a line every ``PROGRESS_EVERY_S`` seconds and at the end."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._printed_at = 0.0

    def __call__(self, done: int, total: int, seconds: float) -> None:
        rate = done / max(seconds, 1e-9)
        line = (
            f"summarized {done:,} of {total:,} documents, {rate:.1f} docs/s,"
            f" ETA {(total - done) / max(rate, 1e-9):.0f} s"
        )
        if self._tty:
            click.echo(f"\r{line}   ", nl=False, err=True)
            if done == total:
                click.echo("", err=True)
        elif done == total or seconds - self._printed_at >= PROGRESS_EVERY_S:
            click.echo(line, err=True)
            self._printed_at = seconds


def _read_predictions(path: str, field: str, expected: int) -> list[str]:
    from s2s_cli.pairs import read_texts

    outputs = read_texts(path, field=field)
    if len(outputs) < expected:
        raise click.ClickException(
            f"{path} has {len(outputs)} predictions but the test file has {expected} documents"
        )
    return outputs[:expected]


def _run_model(
    model_path: str | None,
    sources: list[str],
    decode_flags: dict[str, Any],
    max_src_tokens: int | None,
    progress: Callable[[int, int, float], None] | None,
) -> tuple[list[str], float, Any]:
    """The model's summaries of ``sources``, their seconds, and its training domain (for
    ``novel_word`` by its own house style; None for a model saved without one)."""
    from s2s_model.checkpoint import load_checkpoint
    from s2s_model.config import DEFAULT_MAX_SRC_TOKENS, RuntimeSettings
    from s2s_model.evaluation import summarize_all
    from s2s_model.summarizer import Summarizer

    checkpoint = load_checkpoint(model_directory(model_path))
    try:
        decode = checkpoint.decode.with_overrides(decode_flags)
    except ValueError as err:
        raise click.ClickException(f"bad decode flags: {err}") from None
    # The Summarizer's own default unless told otherwise: score what `s2s summarize` produces.
    settings = RuntimeSettings(max_src_tokens=max_src_tokens or DEFAULT_MAX_SRC_TOKENS)
    summarizer = Summarizer(checkpoint, settings)
    outputs, seconds = summarize_all(summarizer, sources, decode, on_progress=progress)
    return outputs, seconds, summarizer.domain


def _write_outputs(
    report: Any,
    outputs: list[str],
    json_out: str | None,
    predictions_out: str | None,
    test_file: str,
) -> None:
    if json_out:
        data = {"test_file": test_file, **report.to_dict()}
        Path(json_out).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if predictions_out:
        text = "".join(" ".join(o.split()) + "\n" for o in outputs)
        Path(predictions_out).write_text(text, encoding="utf-8")
