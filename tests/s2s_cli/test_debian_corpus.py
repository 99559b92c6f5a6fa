"""The Debian corpus builder on small hand-written apt indexes."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from s2s_cli.debian_corpus import (
    CorpusError,
    Description,
    deduplicate,
    descriptions_from_apt,
    descriptions_from_jsonl,
    find_apt_lists,
    long_description,
    parse_sources,
    parse_translation,
    read_index,
    split_of,
    split_records,
    write_corpus,
    write_sample,
)

TRANSLATION = """\
Package: libfoo-dev
Description-md5: 00000000000000000000000000000002
Description-en: library for foo - development files
 Foo is a library.
 It does foo things.
 .
 This package contains:
  * headers
  * static library

Package: foo-tools
Description-md5: 00000000000000000000000000000003
Description-en: tools for foo
 Foo is a library.
 .
 This package has the tools.

Package: libfoo1
Description-md5: 00000000000000000000000000000001
Description-en: library for foo
 Foo is a library.
 It does foo things.

Package: libfoo1
Description-md5: 00000000000000000000000000000001
Description-en: library for foo
 Foo is a library.
 It does foo things.

Package: bar
Description-md5: 00000000000000000000000000000004
Description-en: bar in a new packaging
 Foo is a library.
 It does foo things.

Package: empty
Description-md5: 00000000000000000000000000000005
Description-en: no long description
"""

PACKAGES = """\
Package: libfoo1
Source: foo (1.2-3)
Version: 1.2-3+b1
Description: library for foo
Description-md5: 00000000000000000000000000000001
Tag: role::shared-lib,
 devel::library

Package: libfoo-dev
Source: foo
Version: 1.2-3

Package: foo-tools
Source: foo
"""


def test_long_description_joins_lines_and_splits_paragraphs() -> None:
    lines = [" First  line", " second line.", " .", "  * verbatim item", "  * another", " ."]
    assert long_description(lines) == "First line second line.\n* verbatim item * another"


def test_parse_translation() -> None:
    records = list(parse_translation(TRANSLATION.splitlines()))
    assert records[0] == (
        "libfoo-dev",
        "00000000000000000000000000000002",
        "library for foo - development files",
        "Foo is a library. It does foo things.\nThis package contains: * headers * static library",
    )
    assert len(records) == 6
    assert records[-1][2:] == ("no long description", "")


def test_parse_sources_strips_versions_and_defaults_to_the_package() -> None:
    sources = parse_sources([*PACKAGES.splitlines(), "", "Package: solo", "Version: 1"])
    assert sources == {"libfoo1": "foo", "libfoo-dev": "foo", "foo-tools": "foo", "solo": "solo"}


def apt_lists(root: Path) -> Path:
    root.mkdir()
    with gzip.open(root / "x_dists_bookworm_main_i18n_Translation-en.gz", "wt") as handle:
        handle.write(TRANSLATION)
    with lzma.open(root / "x_dists_bookworm_main_binary-amd64_Packages.xz", "wt") as handle:
        handle.write(PACKAGES)
    return root


def test_descriptions_from_apt_lists(tmp_path: Path) -> None:
    translations, packages = find_apt_lists(apt_lists(tmp_path / "lists"))
    records = descriptions_from_apt(translations, packages)
    by_package = {r.package: r for r in records}
    assert by_package["libfoo-dev"].source == "foo"
    assert by_package["bar"].source == "bar"  # not in Packages: its own source
    assert by_package["libfoo1"].synopsis == "library for foo"


def test_missing_apt_lists_explain_how_to_fetch_them(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"apt-get -o Acquire::Languages=en update"):
        find_apt_lists(tmp_path)


@pytest.mark.skipif(shutil.which("lz4") is None, reason="needs the lz4 tool")
def test_reads_lz4_indexes_like_apt_keeps_them(tmp_path: Path) -> None:
    plain = tmp_path / "Translation-en"
    plain.write_text(TRANSLATION, encoding="utf-8")
    subprocess.run(["lz4", "-q", str(plain), str(tmp_path / "Translation-en.lz4")], check=True)
    assert list(read_index(tmp_path / "Translation-en.lz4"))[:2] == TRANSLATION.splitlines()[:2]


def test_deduplicate_by_md5_then_description_in_package_order(tmp_path: Path) -> None:
    translations, packages = find_apt_lists(apt_lists(tmp_path / "lists"))
    kept, dropped = deduplicate(descriptions_from_apt(translations, packages))
    # "bar" sorts first, so it keeps the description that libfoo1 shares with it.
    assert [r.package for r in kept] == ["bar", "foo-tools", "libfoo-dev"]
    assert dropped == {"duplicate_md5": 1, "duplicate_description": 1, "empty": 1}


def test_split_is_the_documented_hash_rule() -> None:
    for source in ("foo", "bar", "linux", "python3.11", "zzuf"):
        bucket = int(hashlib.sha256(source.encode()).hexdigest()[:8], 16) % 1000
        expected = "test" if bucket < 20 else "valid" if bucket < 40 else "train"
        assert split_of(source) == expected
    assert split_of("anything", test_fraction=1.0, valid_fraction=0.0) == "test"
    assert split_of("anything", test_fraction=0.0, valid_fraction=0.0) == "train"


def test_siblings_share_a_split_and_every_split_gets_records() -> None:
    records = [
        Description(f"{s}-{i}", f"lib{s}{i}", f"src{s}", "syn", f"text {s} {i}")
        for s in range(300)
        for i in range(3)
    ]
    splits = split_records(records, test_fraction=0.1, valid_fraction=0.1)
    seen: dict[str, str] = {}
    for name, rows in splits.items():
        assert rows, name
        for row in rows:
            assert seen.setdefault(row.source, name) == name
    assert sum(len(rows) for rows in splits.values()) == len(records)
    with pytest.raises(CorpusError, match="together below 1"):
        split_records(records, test_fraction=0.5, valid_fraction=0.5)


def test_write_corpus_and_read_it_back(tmp_path: Path) -> None:
    records = [
        Description(f"md5-{i}", f"pkg{i}", f"src{i % 50}", f"synopsis {i}", f"text {i}")
        for i in range(200)
    ]
    info = write_corpus(records, tmp_path / "out", inputs=["test"], test_fraction=0.2)
    total = 0
    for name in ("train", "valid", "test"):
        rows = descriptions_from_jsonl(tmp_path / "out" / f"{name}.jsonl")
        assert len(rows) == info["splits"][name]["records"]
        assert all(split_of(r.source, test_fraction=0.2) == name for r in rows)
        total += len(rows)
    assert total == info["records_kept"] == 200
    saved = json.loads((tmp_path / "out" / "corpus_info.json").read_text())
    assert saved["inputs"] == ["test"] and "sha256" in saved["split_rule"]


def test_corrupt_extracted_file_names_the_record(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    good = {"md5": "1", "package": "a", "source": "a", "synopsis": "s", "description": "d"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"md5": "2"}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"d\.jsonl: record 2 .*KeyError"):
        descriptions_from_jsonl(path)


def test_write_sample_alternates_jsonl_and_lines(tmp_path: Path) -> None:
    records = [
        Description(str(i), f"p{i}", f"p{i}", f"syn {i}", f"para {i}\nmore {i}") for i in range(9)
    ]
    written = write_sample(records, tmp_path, docs=4, shards=3)
    assert [p.name for p in written] == ["part-00000.jsonl", "part-00001.txt", "part-00002.jsonl"]
    # Every second record (9 // 4 = 2), dealt round-robin: p0 p6 | p2 | p4.
    first = [json.loads(line) for line in written[0].read_text().splitlines()]
    assert first[0] == {"id": "p0", "text": "para 0\nmore 0", "summary": "syn 0"}
    assert [r["id"] for r in first] == ["p0", "p6"]
    assert written[1].read_text().splitlines() == ["para 2 more 2"]
    assert json.loads(written[2].read_text())["id"] == "p4"
