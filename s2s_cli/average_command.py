"""``s2s average``: a thin click layer over ``s2s_model.averaging`` (torch loads on use)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from s2s_cli.command import S2SCommand

AVERAGE_HELP = """Average the weights of several checkpoints of one training run into OUTPUT.

\b
  s2s average runs/m1/checkpoints/step-00004000 runs/m1/checkpoints/step-00005000 \\
      --output runs/m1/averaged
  s2s average --run runs/m1 --last 5 --output runs/m1/averaged

With --run and --last N: the N newest RUN/checkpoints/step-<8-digit step>/ directories.
Floating weights are averaged in fp32; the output keeps the newest checkpoint's (the last
named) tokenizer, decode settings and metadata, and records what was averaged.
"""


@click.command(cls=S2SCommand, help=AVERAGE_HELP)
@click.argument("checkpoints", nargs=-1, metavar="[CHECKPOINT]...")
@click.option("--run", "run_dir", default=None, help="training run directory (with --last)")
@click.option("--last", type=click.IntRange(min=2), default=None,
              help="average the N newest RUN/checkpoints/step-* directories")  # fmt: skip
@click.option("--output", required=True, help="directory to write the averaged checkpoint to")
def average(
    checkpoints: tuple[str, ...], run_dir: str | None, last: int | None, output: str
) -> None:
    from s2s_model.averaging import average_checkpoints, last_checkpoints

    if checkpoints and (run_dir or last):
        raise click.UsageError("name CHECKPOINT directories or give --run with --last, not both")
    directories: Sequence[str | Path]
    if checkpoints:
        directories = list(checkpoints)
    elif run_dir and last:
        directories = last_checkpoints(run_dir, last)
    else:
        raise click.UsageError("name CHECKPOINT directories, or give --run RUN --last N")
    record = average_checkpoints(directories, output)
    steps = [c["step"] for c in record["checkpoints"]]
    click.echo(f"averaged {len(steps)} checkpoints (steps {steps}) into {output}")
