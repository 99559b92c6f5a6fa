"""``s2s corpus``: build training corpora (``s2s_cli/debian_corpus.py`` does the work).

The builders are imported inside the commands, so ``s2s --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from s2s_cli.command import S2SGroup


@click.group(cls=S2SGroup)
def corpus() -> None:
    """Build training corpora."""


DEBIAN_HELP = """Build (description -> synopsis) pairs from Debian's package descriptions.

\b
  s2s corpus debian data/debian                  # from apt's lists (see below)
  s2s corpus debian data/debian --from_jsonl debian_descriptions.jsonl.gz

Reads apt's Translation-en and Packages indexes (fetch them with
`apt-get -o Acquire::Languages=en update`), or an extracted JSONL file. Deduplicates by
Description-md5 and by description, splits by a hash of the source package, and writes
OUT_DIR/{train,valid,test}.jsonl (fields md5, package, source, synopsis, description) and
OUT_DIR/corpus_info.json. Train with --text_field description --summary_field synopsis.
"""


@corpus.command(help=DEBIAN_HELP)
@click.argument("out_dir")
@click.option("--from_jsonl", default=None, help="extracted records (md5, package, source, ...)")
@click.option("--translation", multiple=True, help="a Translation-en index file (repeatable)")
@click.option("--packages", multiple=True, help="a Packages index file, for source names")
@click.option("--lists_dir", default="/var/lib/apt/lists", show_default=True,
              help="where apt keeps its indexes")  # fmt: skip
@click.option("--test_fraction", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="share of source-package hash buckets in the test split")  # fmt: skip
@click.option("--valid_fraction", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="share of source-package hash buckets in the validation split")  # fmt: skip
def debian(
    out_dir: str,
    from_jsonl: str | None,
    translation: tuple[str, ...],
    packages: tuple[str, ...],
    lists_dir: str,
    test_fraction: float,
    valid_fraction: float,
) -> None:
    from s2s_cli import debian_corpus

    try:
        records, inputs = _debian_records(from_jsonl, translation, packages, lists_dir)
        info = debian_corpus.write_corpus(records, out_dir, inputs=inputs,
                                          test_fraction=test_fraction,
                                          valid_fraction=valid_fraction)  # fmt: skip
    except (debian_corpus.CorpusError, OSError) as err:
        raise click.ClickException(str(err)) from None
    counts = ", ".join(f"{k} {v['records']:,}" for k, v in info["splits"].items())
    click.echo(f"{info['records_kept']:,} pairs from {info['records_read']:,} records: {counts}")
    click.echo(f"wrote {out_dir}/{{train,valid,test}}.jsonl and corpus_info.json")


def _debian_records(
    from_jsonl: str | None,
    translation: tuple[str, ...],
    packages: tuple[str, ...],
    lists_dir: str,
) -> tuple[list[Any], list[str]]:
    from s2s_cli import debian_corpus

    if from_jsonl:
        return debian_corpus.descriptions_from_jsonl(from_jsonl), [from_jsonl]
    if translation:
        translations, package_files = [Path(t) for t in translation], [Path(p) for p in packages]
    else:
        translations, package_files = debian_corpus.find_apt_lists(lists_dir)
        if packages:
            package_files = [Path(p) for p in packages]
    records = debian_corpus.descriptions_from_apt(translations, package_files)
    return records, [str(p) for p in [*translations, *package_files]]


@corpus.command()
@click.argument("split_file")
@click.argument("out_dir")
@click.option("--docs", type=click.IntRange(min=1), default=400, show_default=True,
              help="documents in all")  # fmt: skip
@click.option("--shards", type=click.IntRange(min=1), default=4, show_default=True,
              help="files; even ones JSONL, odd ones plain lines")  # fmt: skip
def sample(split_file: str, out_dir: str, docs: int, shards: int) -> None:
    """A small demo corpus from a split file written by `s2s corpus debian`."""
    from s2s_cli import debian_corpus

    try:
        records = debian_corpus.descriptions_from_jsonl(split_file)
        written = debian_corpus.write_sample(records, out_dir, docs=docs, shards=shards)
    except (debian_corpus.CorpusError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {min(docs, len(records))} documents in {len(written)} shards to {out_dir}")


CNNDM_HELP = """Training and evaluation JSONL from the CNN/DailyMail subset (See et al. 2017).

\b
  s2s corpus cnndm data/cnndm \\
      --train_file ../shared/data/cnndm-train-subset/cnndm_train_subset.jsonl.xz \\
      --valid_file ../shared/data/cnndm-train-subset/cnndm_val_subset.jsonl.gz

Drops empty rows and repeated articles, cuts sources to 400 words and targets to 100, and
writes OUT_DIR/train.jsonl, valid.jsonl (whole), tune.jsonl and eval.jsonl (disjoint seeded
samples of the validation split; eval.jsonl keeps full references) and corpus_info.json.
Train with --text_field article --summary_field highlights.
"""


@corpus.command(help=CNNDM_HELP)
@click.argument("out_dir")
@click.option("--train_file", required=True, help="CNN/DM training records (.jsonl[.xz|.gz])")
@click.option("--valid_file", required=True, help="CNN/DM validation records (.jsonl[.xz|.gz])")
@click.option("--tune_docs", type=click.IntRange(min=1), default=100, show_default=True,
              help="validation articles to validate on and choose decoding with")  # fmt: skip
@click.option("--eval_docs", type=click.IntRange(min=1), default=500, show_default=True,
              help="other validation articles to score the model on")  # fmt: skip
def cnndm(out_dir: str, train_file: str, valid_file: str, tune_docs: int, eval_docs: int) -> None:
    from s2s_cli import cnndm_corpus

    info = cnndm_corpus.write_corpus(
        train_file, valid_file, out_dir, tune_docs=tune_docs, eval_docs=eval_docs
    )
    counts = ", ".join(f"{k} {v:,}" for k, v in info["records"].items())
    click.echo(f"{counts} articles (dropped: {info['dropped']}); wrote {out_dir}")
