"""SummarizeOptions: every flag of the summarize pipeline, defined once, with help.

The decode flags are generated from ``DecodeConfig``'s fields (their help text included), so the
pipeline and the model can never disagree on names or meaning. Every decode flag defaults to
``None``: "use the decode settings saved with the model".
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import typing
from collections.abc import Sequence
from typing import Any

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    _BeamArgumentParser,
)

from s2s_model import DecodeConfig, RuntimeSettings
from s2s_model.bundled import DEFAULT_MODEL, model_choices
from s2s_model.config import (
    DEFAULT_DEVICE,
    DEFAULT_MAX_BATCH_TOKENS,
    DEVICES,
    GPU_MAX_BATCH_TOKENS,
    field_specs,
)
from s2s_model.errors import S2SError

INPUT_FORMATS = ("auto", "lines", "file", "jsonl", "parquet")
PARQUET_CODECS = ("zstd", "snappy", "gzip", "none")
IF_FINISHED = ("fail", "skip")
IF_REUSE_UNUSABLE = ("fail", "skip")
DEFAULT_MAX_DOC_CHARS = 100_000
DEFAULT_BATCH_WINDOW = 512
GPU_BATCH_WINDOW = 4096
# A local run on a GPU works two windows at once (threads of one worker process, one model):
# while one is searched on the GPU, the other is read, tokenized and written.
GPU_LOCAL_BUNDLE_THREADS = 2
DEFAULT_MAX_DEAD_LETTER_FRACTION = 0.1
# Issue 24: news through the Debian model gave exit 0 and "200 summarized", nothing more.
DEFAULT_WARN_OUT_OF_DOMAIN_SHARE = 0.5
DEFAULT_RUNNER = "FnApiRunner"
LOCAL_RUNNERS = ("fnapirunner", "directrunner", "bundlebaseddirectrunner", "switchingdirectrunner")
# An unknown flag this close to one of ours is a typo, not a runner-specific pass-through flag.
TYPO_CUTOFF = 0.8
# How close a suggestion must be when an unknown flag is refused anyway.
SUGGEST_CUTOFF = 0.6
RUNTIME_FIELDS = {spec.name: spec for spec in field_specs(RuntimeSettings)}


class OptionsError(S2SError, ValueError):
    """A bad command-line flag or value; the message is one line for the user."""

    exit_code = 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be at least 0")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 1")
    return value


def _add_decode_flags(parser: argparse._ActionsContainer) -> None:
    for spec in field_specs(DecodeConfig):
        help_text = f"{spec.help} (default: the model's, else {spec.default!r})"
        flag = f"--{spec.name}"
        if spec.kind is bool:
            parser.add_argument(
                flag,
                dest=spec.name,
                action="store_const",
                const=True,
                default=None,
                help=help_text,
            )
            parser.add_argument(
                f"--{spec.off_switch}",
                dest=spec.name,
                action="store_const",
                const=False,
                help=f"turn {flag} off",
            )
        else:
            parser.add_argument(
                flag, type=spec.kind, choices=spec.choices, default=None, help=help_text
            )


def _runtime_help(name: str, note: str = "") -> str:
    """The help of ``RuntimeSettings.<name>``, with what the pipeline adds to it."""
    return RUNTIME_FIELDS[name].help + (f"; {note}" if note else "")


class SummarizeOptions(PipelineOptions):
    """Flags of the summarize pipeline. Beam's own flags (``--runner``, ...) pass through."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("input")
        group.add_argument(
            "--input",
            action="append",
            help="file glob to summarize; repeatable; local paths or any Beam filesystem"
            " (gs://, s3://, ...); .gz and .bz2 are decompressed",
        )
        group.add_argument(
            "--input_format",
            choices=INPUT_FORMATS,
            default="auto",
            help="'lines': a document per line; 'file': a document per file; 'jsonl'; 'parquet';"
            " 'auto': by extension (.jsonl/.ndjson, .parquet, anything else is lines)",
        )
        group.add_argument(
            "--text_field", default="text", help="field holding the text (jsonl, parquet)"
        )
        group.add_argument(
            "--id_field",
            default=None,
            help="field holding a document id (jsonl, parquet); without it, or where a record"
            " lacks it, the id is '<shard>:<line>'",
        )
        group.add_argument(
            "--max_doc_chars",
            type=_positive_int,
            default=DEFAULT_MAX_DOC_CHARS,
            help="documents are cut to this many characters while reading (flagged truncated),"
            " in every format; memory stays bounded: a text line is read no further than 4 x"
            " this many bytes, a jsonl record whole up to 32 MiB (or 4 x this, where more), and"
            " only a longer record is a malformed_json dead letter",
        )
        group = parser.add_argument_group("output")
        group.add_argument(
            "--output",
            help="output directory: summaries/*.parquet, dead_letter/*.parquet, _SUCCESS.json",
        )
        group.add_argument(
            "--overwrite",
            action="store_true",
            default=False,
            help="replace a finished run's output (a directory holding _SUCCESS.json)",
        )
        group.add_argument(
            "--if_finished",
            choices=IF_FINISHED,
            default="fail",
            help="what to do when --output already holds a finished run (_SUCCESS.json) and"
            " --overwrite is not given: 'fail' before any work, or 'skip': log when it finished"
            " and exit 0 without running (for scheduled, idempotent runs)",
        )
        group.add_argument(
            "--output_shards",
            type=_non_negative_int,
            default=0,
            help="number of summary Parquet files; 0 writes one per bundle without a shuffle;"
            " N > 0 shuffles every row (held in memory on the local runner)",
        )
        group.add_argument(
            "--parquet_codec",
            choices=PARQUET_CODECS,
            default="zstd",
            help="Parquet compression codec",
        )
        group.add_argument(
            "--max_dead_letter_fraction",
            type=_fraction,
            default=DEFAULT_MAX_DEAD_LETTER_FRACTION,
            help="fail the run (no _SUCCESS.json) when more than this fraction of the records"
            " read became dead letters",
        )
        group.add_argument(
            "--warn_out_of_domain_share",
            type=_fraction,
            default=DEFAULT_WARN_OUT_OF_DOMAIN_SHARE,
            help="warn at the end of a run when more than this share of the summaries are"
            " flagged out_of_domain (the model does not fit the corpus: pass --model); 1 never"
            " warns",
        )
        group.add_argument(
            "--reuse",
            action="append",
            default=None,
            help="output directory of an earlier finished run (repeatable; local or any Beam"
            " filesystem): documents it summarized with the same text, model and answer-changing"
            " settings are carried over instead of decoded (see reuse_key in README.md)",
        )
        group.add_argument(
            "--if_reuse_unusable",
            choices=IF_REUSE_UNUSABLE,
            default="fail",
            help="what to do when a --reuse directory holds no finished run of this output"
            " version: 'fail' before any work, or 'skip' it with a warning (for scheduled runs"
            " whose previous output may be missing)",
        )
        group = parser.add_argument_group("model")
        group.add_argument(
            "--model",
            default=None,
            help=f"a bundled model by name ({model_choices()}) or a checkpoint directory (local"
            f" or any Beam filesystem); default: {DEFAULT_MODEL}",
        )
        group.add_argument(
            "--device",
            choices=DEVICES,
            default=DEFAULT_DEVICE,
            help=_runtime_help(
                "device", "'cuda' fails before any work where torch sees no usable GPU"
            ),
        )
        group.add_argument(
            "--torch_threads",
            type=_positive_int,
            default=1,
            help=_runtime_help("threads", "one per worker process measured fastest on CPU"),
        )
        group.add_argument(
            "--max_src_tokens",
            type=_positive_int,
            default=RUNTIME_FIELDS["max_src_tokens"].default,
            help=_runtime_help("max_src_tokens"),
        )
        group.add_argument(
            "--max_batch_tokens",
            type=_positive_int,
            default=None,
            help=_runtime_help(
                "max_batch_tokens",
                f"default {DEFAULT_MAX_BATCH_TOKENS} on a CPU, {GPU_MAX_BATCH_TOKENS} on a GPU"
                " worker",
            ),
        )
        group.add_argument(
            "--batch_window",
            type=_positive_int,
            default=None,
            help="documents a worker buffers, sorts by length and cuts into batches; larger"
            f" windows pad less and hold more in memory; default {DEFAULT_BATCH_WINDOW} on a"
            f" CPU, {GPU_BATCH_WINDOW} on a GPU worker",
        )
        group.add_argument(
            "--quantize",
            choices=RUNTIME_FIELDS["quantize"].choices,
            default=RUNTIME_FIELDS["quantize"].default,
            help=_runtime_help("quantize"),
        )
        group.add_argument(
            "--precision",
            choices=RUNTIME_FIELDS["precision"].choices,
            default=RUNTIME_FIELDS["precision"].default,
            help=_runtime_help("precision"),
        )
        group.add_argument(
            "--search_threads",
            type=_non_negative_int,
            default=0,
            help=_runtime_help(
                "search_threads",
                "each keeps one core busy; 0: one per core when the job runs in one local worker"
                " on the CPU (the default local run), else 1",
            ),
        )
        group.add_argument(
            "--no_refill",
            dest="refill",
            action="store_false",
            default=True,
            help="turn off: " + _runtime_help("refill", "fixed batches are for comparison"),
        )
        _add_decode_flags(parser.add_argument_group("decoding"))

    def runtime_settings(self) -> RuntimeSettings:
        """How each worker runs the model, worked out once per run (preflight's ``RunPlan``
        carries it to the workers): the flags, the workers' device, and that device's defaults
        where a flag is left out. On a local runner the device is resolved here (the workers
        run on this machine); a remote runner's stays as asked, and its workers resolve it as
        they load the model ('auto' gets the CPU defaults: pass ``--device cuda`` for a GPU
        fleet). Raises ``OptionsError`` on flags that do not combine, ``DeviceError`` on a
        device that local workers cannot have."""
        try:
            asked = RuntimeSettings(
                device=self.device,
                threads=self.torch_threads,
                max_src_tokens=self.max_src_tokens,
                refill=self.refill,
                quantize=self.quantize,
                precision=self.precision,
            )
        except ValueError as err:
            raise OptionsError(f"bad runtime flags: {err}") from None
        from s2s_model.device import resolve_device  # torch: only once a run is planned

        device = resolve_device(asked.device) if self.is_local_runner() else asked.device
        on_gpu = device == "cuda"
        return dataclasses.replace(
            asked,
            device=device,
            max_batch_tokens=self.max_batch_tokens
            or (GPU_MAX_BATCH_TOKENS if on_gpu else DEFAULT_MAX_BATCH_TOKENS),
            search_threads=self.search_threads or self._default_search_threads(on_gpu),
        )

    def _default_search_threads(self, on_gpu: bool) -> int:
        """All cores by default: a local job in one worker process (Beam's default) runs one
        search per core, so the model loads once and every core decodes (measured faster than
        as many worker processes, which each import torch and load the model). Anything else
        (several local workers, a distributed runner's workers, a GPU: one search with large
        batches measured fastest there) gets one search per worker."""
        workers = self.view_as(DirectOptions).direct_num_workers
        one_local_worker = self.is_local_runner() and workers in (None, 1)
        if not one_local_worker or on_gpu:
            return 1
        return max(1, os.cpu_count() or 1)

    def window(self, device: str) -> int:
        """Documents a worker buffers per model call on ``device`` (``runtime_settings().device``):
        ``--batch_window``, else that device's default."""
        if self.batch_window is not None:
            return int(self.batch_window)
        return GPU_BATCH_WINDOW if device == "cuda" else DEFAULT_BATCH_WINDOW

    def overlap_on_gpu(self, device: str) -> bool:
        """On a local runner whose workers use a GPU (``device``, from ``runtime_settings()``),
        with Beam's worker settings at their defaults (one worker, ``in_memory``): run
        ``GPU_LOCAL_BUNDLE_THREADS`` bundle threads sharing one model (``multi_threading``), so
        that host work overlaps the search. Any ``--direct_running_mode`` given keeps its
        worker count. Returns whether it did."""
        direct = self.view_as(DirectOptions)
        defaults = direct.direct_num_workers == 1 and direct.direct_running_mode == "in_memory"
        if device != "cuda" or not self.is_local_runner() or not defaults:
            return False
        direct.direct_num_workers = GPU_LOCAL_BUNDLE_THREADS
        direct.direct_running_mode = "multi_threading"
        return True

    def runner_name(self) -> str:
        """The runner's name (Beam's local default, FnApiRunner, before one is set)."""
        runner = self.view_as(StandardOptions).runner
        if runner is None:
            return DEFAULT_RUNNER
        return runner if isinstance(runner, str) else type(runner).__name__

    def is_local_runner(self) -> bool:
        return self.runner_name().lower() in LOCAL_RUNNERS

    def decode_overrides(self) -> dict[str, Any]:
        """The decode flags given on the command line (those left at None are not)."""
        names = [field.name for field in dataclasses.fields(DecodeConfig)]
        values = self.get_all_options()
        return {name: values[name] for name in names if values.get(name) is not None}


class _StrictParser(_BeamArgumentParser):
    """Beam's parser, raising instead of printing usage and exiting."""

    def error(self, message: str) -> typing.NoReturn:
        raise OptionsError(message)


def _all_flags_parser() -> _StrictParser:
    # Mirrors PipelineOptions.get_all_options: every direct subclass contributes its flags.
    parser = _StrictParser(allow_abbrev=False)
    seen: dict[str, type[PipelineOptions]] = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)
    return parser


def _our_flags() -> list[str]:
    parser = argparse.ArgumentParser(add_help=False)
    SummarizeOptions._add_argparse_args(parser)
    return [opt for action in parser._actions for opt in action.option_strings]


def parse_options(argv: Sequence[str]) -> SummarizeOptions:
    """Check every flag now (types, choices, typos of ours) and return the options.

    Raises ``OptionsError`` with a one-line message instead of argparse's usage-and-exit. Flags
    that no Beam options class knows and that are not near-misses of ours pass through to the
    runner (Flink and Spark job servers read some of their own).
    """
    argv = list(argv)
    _, unknown = _all_flags_parser().parse_known_args(argv)
    ours = _our_flags()
    for token in unknown:
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        close = difflib.get_close_matches(name, ours, n=1, cutoff=TYPO_CUTOFF)
        if close:
            raise OptionsError(f"unknown flag {name}: did you mean {close[0]}?")
    return SummarizeOptions(argv)


def inputs_as_flags(tokens: Sequence[str]) -> list[str]:
    """Command-line tokens with every positional argument turned into ``--input PATTERN``.

    Known flags take their value from the next token as argparse would. A flag unknown to every
    Beam options class must be written ``--flag=value``: an unknown ``--flag`` followed by a
    value is refused (``OptionsError``), so that its value never becomes an input.
    """
    actions = _all_flags_parser()._option_string_actions
    argv: list[str] = []
    inputs: list[str] = []
    pending = list(tokens)
    while pending:
        token = pending.pop(0)
        if not token.startswith("-") or token == "-":
            inputs += ["--input", token]
            continue
        argv.append(token)
        action = actions.get(token)
        if action is None and "=" not in token and pending and not pending[0].startswith("-"):
            raise OptionsError(_unknown_flag_message(token, pending[0]))
        if action is not None and action.nargs != 0 and pending:
            argv.append(pending.pop(0))
    return inputs + argv


def _unknown_flag_message(flag: str, value: str) -> str:
    close = difflib.get_close_matches(flag, _our_flags(), n=1, cutoff=SUGGEST_CUTOFF)
    hint = f"did you mean {close[0]}?" if close else "no s2s or Beam flag has this name;"
    return (
        f"unknown flag {flag}: {hint} (a runner's own flag takes its value as"
        f" {flag}={value}, so that {value!r} is not read as an input)"
    )


class _DefaultsFormatter(argparse.HelpFormatter):
    """argparse's help, with "(default: X)" after each flag that has a value by default and
    does not already say what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        silent = action.default in (None, argparse.SUPPRESS) or "default" in text
        if silent or isinstance(action, argparse._StoreConstAction):
            return text
        return f"{text} (default: {action.default})"


def format_flags_help() -> str:
    """The summarize flags as argparse formats them, defaults shown, for ``--help``."""
    parser = argparse.ArgumentParser(
        prog="s2s summarize",
        add_help=False,
        usage=argparse.SUPPRESS,
        formatter_class=_DefaultsFormatter,
    )
    SummarizeOptions._add_argparse_args(parser)
    return parser.format_help()
