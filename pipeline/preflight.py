"""Everything checked before any work: flags, inputs, the output directory, the model, the device.

Each problem is a ``PreflightError`` whose message is one line naming the problem and the fix; a
run that passes preflight is described by a ``RunPlan``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from pipeline.model_handler import load_summarizer
from pipeline.options import DEFAULT_RUNNER, OptionsError, SummarizeOptions, parse_options
from pipeline.output import MANIFEST_VERSION, read_manifest
from pipeline.reuse import AnswerSettings, answer_differences, usable_directories
from pipeline.sinks import (
    DEAD_LETTER,
    FILE_PREFIX,
    FILE_SUFFIX,
    LOCAL_SCHEMES,
    SUCCESS_FILE,
    SUMMARIES,
    TEMPORARY_DIR,
    success_path,
)
from s2s_model import DecodeConfig, RuntimeSettings, Summarizer
from s2s_model.bundled import model_name
from s2s_model.device import DeviceError
from s2s_model.domain import DomainProfile
from s2s_model.errors import S2SError, one_line

logger = logging.getLogger(__name__)

# Files of a foreign --output named in its error message.
FOREIGN_SHOWN = 3


class PreflightError(S2SError):
    """The run cannot start; the message is one line saying what and how to fix it."""

    exit_code = 2


@dataclass(frozen=True)
class RunPlan:
    """What preflight established, once: the run is possible, and the job is built from this.

    ``settings`` is what every worker runs with (its device resolved where the launcher can
    know it: local runners), ``decode`` the model's saved decoding with the flags applied,
    ``window`` the documents of one model call."""

    patterns: list[str]
    shards: int
    output: str
    model: str
    fingerprint: str
    decode: DecodeConfig
    settings: RuntimeSettings
    window: int
    runner: str
    # The model's training domain (None: it has none, and nothing is flagged out_of_domain).
    domain: DomainProfile | None = None
    # The model as preflight loaded it (on the CPU), kept on local runners only: run_plan offers
    # it to in-process workers (a remote job's launcher would hold it for nothing).
    loaded: Summarizer | None = field(default=None, repr=False, compare=False)

    @property
    def answer(self) -> AnswerSettings:
        """Everything besides the document and the model that changes a summary row."""
        settings = self.settings
        return AnswerSettings(
            self.decode, settings.max_src_tokens, settings.quantize, settings.precision
        )


def parse(argv: Sequence[str]) -> SummarizeOptions:
    """The options of ``argv``; the local runner that downloads nothing is the default."""
    try:
        options = parse_options(argv).view_as(SummarizeOptions)
    except OptionsError as err:
        raise PreflightError(str(err)) from None
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    return options


def expand_pattern(pattern: str) -> str:
    """A directory (a local one, or any path ending in '/') means every file below it."""
    if pattern.endswith("/"):
        return pattern + "**"
    if FileSystems.get_scheme(pattern) in LOCAL_SCHEMES and os.path.isdir(pattern):
        return pattern.rstrip("/") + "/**"
    return pattern


def _count_shards(patterns: Sequence[str]) -> int:
    paths: set[str] = set()
    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as err:  # BeamIOError, a missing filesystem plugin, ...
            raise PreflightError(f"cannot list --input {pattern!r}: {one_line(err)}") from None
        if not matched:
            raise PreflightError(f"--input {pattern!r} matches no file")
        paths.update(m.path for m in matched)
    return len(paths)


def _check_output(output: str, overwrite: bool) -> None:
    """``--output`` is a folder that can be written (or made), and holds nothing that a run did
    not write; a finished run there is refused unless ``--overwrite``."""
    if FileSystems.get_scheme(output) in LOCAL_SCHEMES:
        _check_local_folder(output)
    try:
        finished = FileSystems.exists(success_path(output))
        foreign = [] if overwrite else _foreign_files(output)
    except Exception as err:  # BeamIOError, a missing filesystem plugin, credentials, ...
        raise PreflightError(f"cannot read --output {output}: {one_line(err)}") from None
    if finished and not overwrite:
        raise PreflightError(
            f"{output} already holds a finished run ({success_path(output)}): pass --overwrite"
            " to replace it, --if_finished skip to keep it, or choose another --output"
        )
    if foreign:
        more = f", and {len(foreign) - FOREIGN_SHOWN} more" if len(foreign) > FOREIGN_SHOWN else ""
        raise PreflightError(
            f"--output {output} holds files that no run wrote ({', '.join(foreign[:FOREIGN_SHOWN])}"
            f"{more}): choose an empty or new folder, or pass --overwrite to write there anyway"
            f" (its {SUMMARIES}/ and {DEAD_LETTER}/ are replaced)"
        )


def _check_local_folder(output: str) -> None:
    """A local ``--output`` is a folder, or can be made as one, by this user."""
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise PreflightError(f"--output {output} is a file: give a folder (it is made if missing)")
    nearest = next(p for p in (path, *path.parents) if p.exists())
    if not nearest.is_dir():
        raise PreflightError(f"--output {output} is below a file ({nearest}): give a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise PreflightError(
            f"--output {output} cannot be written: {nearest} is not writable by this user;"
            " choose another folder or change its permissions"
        )


def _foreign_files(output: str) -> list[str]:
    """The files below ``output`` that no run writes (paths relative to it, sorted)."""
    return sorted(name for name in _files_below(output) if not _written_by_a_run(name))


def _files_below(output: str) -> list[str]:
    if FileSystems.get_scheme(output) in LOCAL_SCHEMES:
        root = Path(output)
        return [p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()]
    prefix = output.rstrip("/") + "/"
    found = FileSystems.match([prefix + "**"])[0].metadata_list
    return [m.path[len(prefix) :] for m in found if m.path.startswith(prefix)]


def _written_by_a_run(name: str) -> bool:
    """``_SUCCESS.json``, ``_temporary/...`` and the Parquet files of the two outputs; hidden
    files at the top (a desktop's ``.DS_Store``) are left alone, so they pass too."""
    top, _, rest = name.partition("/")
    if not rest:
        return name == SUCCESS_FILE or name.startswith(".")
    if top == TEMPORARY_DIR:
        return True
    return (
        top in (SUMMARIES, DEAD_LETTER)
        and "/" not in rest
        and fnmatch.fnmatch(rest, f"{FILE_PREFIX}-*{FILE_SUFFIX}")
    )


def _check_reuse(options: SummarizeOptions) -> list[str]:
    """Every --reuse directory holds a finished run of this output version (or is skipped);
    returns those that do."""
    try:
        return usable_directories(
            options.reuse or [],
            output=options.output,
            manifest_version=MANIFEST_VERSION,
            if_unusable=options.if_reuse_unusable,
        )
    except ValueError as err:
        raise PreflightError(str(err)) from None


def _note_unreusable(directories: list[str], plan: RunPlan) -> None:
    """Warn about each --reuse run made with another model or other answer-changing settings:
    none of its rows can be carried over (the run goes on, and decodes them)."""
    for directory in directories:
        manifest = read_manifest(directory) or {}
        differences = answer_differences(manifest, plan.fingerprint, plan.answer)
        if differences:
            logger.warning(
                "--reuse %s can reuse nothing: its run differs in %s",
                directory,
                ", ".join(differences),
            )


def _settings(options: SummarizeOptions) -> RuntimeSettings:
    """The workers' settings; a device that local workers cannot have fails here, before any
    work (remote workers check theirs as they load the model, and fail rather than fall back)."""
    try:
        return options.runtime_settings()
    except (OptionsError, DeviceError) as err:
        raise PreflightError(str(err)) from None


def _load_model(options: SummarizeOptions, settings: RuntimeSettings) -> Summarizer:
    """The model on the CPU: proof that it loads, and its fingerprint and saved decoding."""
    try:
        return load_summarizer(options.model, dataclasses.replace(settings, device="cpu"))
    except Exception as err:  # CheckpointError, OSError, a filesystem plugin error, ...
        raise PreflightError(
            f"cannot load model {model_name(options.model)}: {one_line(err)}"
        ) from None


def _resolve_decode(model: Summarizer, options: SummarizeOptions) -> DecodeConfig:
    try:
        return model.decode.with_overrides(options.decode_overrides())
    except ValueError as err:
        raise PreflightError(f"bad decode flags: {err}") from None


def preflight(options: SummarizeOptions) -> RunPlan:
    """Check everything that can be checked before any work; raise PreflightError if not."""
    if not options.input:
        raise PreflightError("no input: give at least one file glob (--input PATTERN)")
    if not options.output:
        raise PreflightError("no output directory: pass --output DIR")
    settings = _settings(options)
    patterns = [expand_pattern(p) for p in options.input]
    _check_output(options.output, options.overwrite)
    reusable = _check_reuse(options)
    shards = _count_shards(patterns)
    model = _load_model(options, settings)
    decode = _resolve_decode(model, options)
    if options.overlap_on_gpu(settings.device):
        logger.info(
            "a local GPU run: %d bundle threads share the model (searches take turns)",
            options.view_as(DirectOptions).direct_num_workers,
        )
    plan = RunPlan(
        patterns=patterns,
        shards=shards,
        output=options.output,
        model=model_name(options.model),
        fingerprint=model.fingerprint,
        decode=decode,
        settings=settings,
        window=options.window(settings.device),
        runner=options.runner_name(),
        domain=model.domain,
        loaded=model if options.is_local_runner() else None,
    )
    _note_unreusable(reusable, plan)
    return plan
