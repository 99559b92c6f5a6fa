"""``s2s corpus`` through click's CliRunner."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from click.testing import CliRunner

from s2s_cli.corpus_commands import corpus

TRANSLATION = """\
Package: libfoo1
Description-md5: 00000000000000000000000000000001
Description-en: library for foo
 Foo is a library.

Package: libfoo-dev
Description-md5: 00000000000000000000000000000002
Description-en: library for foo - development files
 Foo is a library.
 .
 Development files.
"""


def test_corpus_debian_from_apt_files(tmp_path: Path) -> None:
    translation = tmp_path / "Translation-en.gz"
    with gzip.open(translation, "wt") as handle:
        handle.write(TRANSLATION)
    packages = tmp_path / "Packages"
    packages.write_text("Package: libfoo1\nSource: foo\n\nPackage: libfoo-dev\nSource: foo\n")
    out = tmp_path / "corpus"
    result = CliRunner().invoke(
        corpus,
        ["debian", str(out), "--translation", str(translation), "--packages", str(packages)],
    )
    assert result.exit_code == 0, result.output
    assert "2 pairs from 2 records" in result.output
    rows = [json.loads(line) for name in ("train", "valid", "test")
            for line in (out / f"{name}.jsonl").read_text().splitlines()]  # fmt: skip
    assert {r["source"] for r in rows} == {"foo"}
    assert sorted(r["synopsis"] for r in rows)[0] == "library for foo"

    sample = CliRunner().invoke(corpus, ["sample", str(out / "train.jsonl"), str(tmp_path / "s")])
    assert sample.exit_code == 0, sample.output


def test_corpus_debian_without_apt_lists_says_how_to_get_them(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        corpus, ["debian", str(tmp_path / "c"), "--lists_dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "apt-get -o Acquire::Languages=en update" in result.output
    assert "Traceback" not in result.output
