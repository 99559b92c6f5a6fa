"""The ``s2s`` command line: a thin, typed layer over pipeline.run and friends.

Heavy imports (Beam, torch, pyarrow) happen inside the commands, so ``s2s --help`` is instant.
Errors from the library (``S2SError``) become one line, no traceback (s2s_cli/command.py).
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from pipeline import LOG_FORMAT, HarmlessBeamWarnings
from s2s_cli.command import S2SCommand, S2SGroup

if TYPE_CHECKING:
    from pipeline.show import RowCounts

# Third-party libraries log import-time chatter on the root logger (Beam: "apitools not
# found"); ours log on named loggers. Root records below ERROR are shown with -v only.
ROOT_LOGGER = "root"
HANDLER_NAME = "s2s-cli"
PROGRESS_EVERY_S = 10.0
SHOW_COLUMNS = ("doc_id", "summary", "score", "src_tokens", "novel_words", "flags")
DEAD_LETTER_COLUMNS = ("doc_id", "reason", "detail", "raw")
# s2s_model.quality.FLAGS and pipeline.show.SORTABLE, spelled here to keep `s2s --help` instant.
FLAGS = ("novel_word", "repeat", "truncated_source", "forced_end", "out_of_domain")
SORTABLE = ("novel_words", "repeated_words", "score", "src_tokens", "summary_tokens")


class _QuietRoot(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != ROOT_LOGGER or record.levelno >= logging.ERROR


def configure_logging(verbose: int) -> None:
    """Log to stderr; replaces the handler an earlier call added, leaves others alone."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.set_name(HANDLER_NAME)
    handler.addFilter(HarmlessBeamWarnings())
    if verbose == 0:
        handler.addFilter(_QuietRoot())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != HANDLER_NAME] + [handler]
    root.setLevel(level)
    # Our own progress and accounting messages are worth seeing by default.
    logging.getLogger("pipeline").setLevel(min(level, logging.INFO))


class ProgressLine:
    """Prints "N documents done, R docs/s" (with --reuse: "N documents done (M reused), ...") to
    stderr: in place on a terminal, else every PROGRESS_EVERY_S seconds."""

    def __init__(self) -> None:
        from pipeline.progress import progress_text  # Beam: only once a job runs

        self._text = progress_text
        self._tty = sys.stderr.isatty()
        self._printed_at = 0.0
        self._shown = False

    def __call__(self, done: int, elapsed: float, reused: int | None = None) -> None:
        text = self._text(done, elapsed, reused)
        if self._tty:
            click.echo(f"\r{text}   ", nl=False, err=True)
            self._shown = True
        elif done and time.monotonic() - self._printed_at >= PROGRESS_EVERY_S:
            click.echo(text, err=True)
            self._printed_at = time.monotonic()

    def close(self) -> None:
        if self._shown:
            click.echo("", err=True)


# Commands owned elsewhere, imported only when used: name -> "module:attribute".
LAZY_COMMANDS = {
    "train": "s2s_cli.train_commands:train",
    "evaluate": "s2s_cli.train_commands:evaluate",
    "corpus": "s2s_cli.corpus_commands:corpus",
    "import-opennmt": "s2s_cli.opennmt_import:import_opennmt_command",
    "average": "s2s_cli.average_command:average",
}


class LazyGroup(S2SGroup):
    """A group whose LAZY_COMMANDS are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = LAZY_COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command), LAZY_COMMANDS[cmd_name]
        return command


@click.group(
    cls=LazyGroup,
    help="Summarize corpora with an LSTM seq2seq model, locally or on any Beam runner.",
    context_settings={"show_default": True},  # every command's --help shows its defaults
)
@click.version_option(package_name="s2s-summarize")
@click.option("-v", "--verbose", count=True, help="more logging: -v info, -vv debug")
def main(verbose: int) -> None:
    configure_logging(verbose)


def entry() -> None:
    """The ``s2s`` console script: ``main``, then ``gc.freeze()`` before the interpreter exits.

    The collections Python runs while it shuts down would otherwise walk every object torch and
    Beam created: 0.45 s of each command that loaded a model (benchmarks/RESULTS.md)."""
    try:
        main()
    finally:
        gc.freeze()


class _SummarizeCommand(S2SCommand):
    """Shows the pipeline's flags (defined once, in pipeline/options.py) in --help."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from pipeline.options import format_flags_help

        super().format_options(ctx, formatter)
        with formatter.section("Pipeline flags (any Beam flag passes through: --runner, ...)"):
            formatter.write(format_flags_help())


SUMMARIZE_HELP = """Summarize every document in INPUT... (file globs) into Parquet.

\b
  s2s summarize 'corpus/*.txt.gz' --output out/
  s2s summarize data.jsonl --text_field body --id_field id --output out/ --beam_size 5
  s2s summarize 'gs://bucket/shards/*' --output gs://bucket/out --runner DataflowRunner ...

Writes out/summaries/*.parquet, out/dead_letter/*.parquet and, last, out/_SUCCESS.json.
Runs on the local FnApiRunner unless --runner says otherwise; --direct_num_workers N
--direct_running_mode multi_processing uses N local processes. Flags that Beam does not
know must be written --flag=value.
"""


@main.command(
    cls=_SummarizeCommand,
    help=SUMMARIZE_HELP,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="INPUT... --output DIR")
def summarize(args: tuple[str, ...]) -> None:
    from pipeline.options import inputs_as_flags
    from pipeline.run import run

    progress = ProgressLine()
    try:
        report = run(inputs_as_flags(args), on_progress=progress)
    finally:
        progress.close()
    click.echo(report.describe())


@main.command()
@click.argument("output", metavar="DIR")
@click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True, help="rows")
@click.option("--dead_letters", is_flag=True, help="show the dead letters instead")
@click.option("--width", type=click.IntRange(min=20), default=60, show_default=True,
              help="characters per text column")  # fmt: skip
@click.option("--flag", type=click.Choice(["any", *FLAGS]), default=None,
              help="only summaries with this quality flag")  # fmt: skip
@click.option("--sort", type=click.Choice(SORTABLE), default=None,
              help="the rows with the largest values of this column")  # fmt: skip
def show(
    output: str, limit: int, dead_letters: bool, width: int, flag: str | None, sort: str | None
) -> None:
    """Print a run's summaries (or dead letters) from DIR as a table, with its counts."""
    from pipeline.show import read_rows, row_counts, run_summary

    columns = DEAD_LETTER_COLUMNS if dead_letters else SHOW_COLUMNS
    if dead_letters and (flag or sort):
        raise click.UsageError("--flag and --sort apply to summaries, not to --dead_letters")
    rows = read_rows(
        output, dead_letters=dead_letters, limit=limit, columns=columns, flag=flag, sort=sort
    )
    counts = row_counts(output, dead_letters=dead_letters, flag=flag)
    click.echo(run_summary(output))
    click.echo(format_table(rows, columns, width))
    click.echo(shown_line(len(rows), counts, dead_letters=dead_letters, flag=flag, sort=sort))


def shown_line(
    shown: int, counts: RowCounts, *, dead_letters: bool, flag: str | None, sort: str | None
) -> str:
    """ "showing 10 of 1,200 summaries (37 match --flag repeat)", and how they were chosen."""
    kind = "dead letters" if dead_letters else "summaries"
    match = f" ({counts.matching:,} match --flag {flag})" if flag else ""
    order = f", those with the largest {sort}" if sort else ""
    return f"showing {shown:,} of {counts.total:,} {kind}{match}{order}"


def format_table(rows: list[dict[str, Any]], columns: tuple[str, ...], width: int) -> str:
    """A plain-text table; long cells are cut to ``width`` characters with an ellipsis."""

    def cell(value: Any) -> str:
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"

    cells = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)
