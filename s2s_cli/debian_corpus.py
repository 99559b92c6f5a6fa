"""The Debian corpus: long package description -> one-line synopsis, split by source package.

Input is apt's ``Translation-en`` index (``apt-get -o Acquire::Languages=en update`` fetches it into
``/var/lib/apt/lists``), with the ``Packages`` index to find each package's source package; or a
JSONL file of records already extracted (``md5, package, source, synopsis, description``, the
format of ``../shared/data/debian-descriptions/``).

Records are deduplicated by ``Description-md5`` and then by the long description itself (the
first in package-name order wins), and split by a hash of the source package, so sibling binary
packages (``libfoo1``, ``libfoo-dev``, ``libfoo-doc``), whose descriptions are near-duplicates,
always land in the same split. The rule depends on the source name alone: adding packages never
moves others.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from s2s_model.errors import S2SError

APT_LISTS = Path("/var/lib/apt/lists")
TRANSLATION_GLOB = "*_i18n_Translation-en*"
PACKAGES_GLOB = "*_binary-*_Packages*"
SPLITS = ("train", "valid", "test")
SPLIT_BUCKETS = 1000
DEFAULT_TEST_FRACTION = 0.02
DEFAULT_VALID_FRACTION = 0.02
INFO_FILE = "corpus_info.json"
TEXT_FIELD = "description"
SUMMARY_FIELD = "synopsis"
_VERSION_SUFFIX = re.compile(r"\s*\(.*\)\s*$")


class CorpusError(S2SError, ValueError):
    """The corpus cannot be built; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Description:
    """One package description: ``synopsis`` is the target, ``description`` the source text."""

    md5: str
    package: str
    source: str
    synopsis: str
    description: str


# --- reading apt's indexes ----------------------------------------------------------------------


def read_index(path: str | os.PathLike[str]) -> Iterator[str]:
    """Lines of an apt index file, plain or compressed (.gz, .xz, .bz2, .lz4)."""
    file = Path(path)
    name = file.name
    if name.endswith(".lz4"):
        yield from _read_lz4(file)
        return
    opener: Any = open
    if name.endswith(".gz"):
        opener = gzip.open
    elif name.endswith(".xz"):
        opener = lzma.open
    elif name.endswith(".bz2"):
        opener = bz2.open
    with opener(file, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            yield line.rstrip("\n")


def _read_lz4(file: Path) -> Iterator[str]:
    # The standard library has no LZ4; apt's own lists use it, and Debian ships the `lz4` tool.
    if shutil.which("lz4") is None:
        raise CorpusError(f"{file} is LZ4-compressed: install the `lz4` tool (apt-get install lz4)")
    result = subprocess.run(["lz4", "-dc", str(file)], check=True, capture_output=True)
    yield from result.stdout.decode("utf-8", errors="replace").split("\n")


def stanzas(lines: Iterable[str]) -> Iterator[list[str]]:
    """Group deb822 lines into stanzas (blank-line separated)."""
    stanza: list[str] = []
    for line in lines:
        if line.strip():
            stanza.append(line)
        elif stanza:
            yield stanza
            stanza = []
    if stanza:
        yield stanza


def parse_translation(lines: Iterable[str]) -> Iterator[tuple[str, str, str, str]]:
    """(package, md5, synopsis, long description) of each ``Translation-en`` stanza."""
    for stanza in stanzas(lines):
        fields: dict[str, str] = {}
        long_lines: list[str] = []
        current = ""
        for line in stanza:
            if line.startswith((" ", "\t")):
                if current == "Description-en":
                    long_lines.append(line)
                continue
            current, _, value = line.partition(":")
            fields[current] = value.strip()
        if fields.get("Package") and fields.get("Description-md5"):
            yield (
                fields["Package"],
                fields["Description-md5"],
                fields.get("Description-en", ""),
                long_description(long_lines),
            )


def long_description(lines: Sequence[str]) -> str:
    """Debian's extended description as plain text: paragraphs (split at `` .``) joined by
    newlines, the lines of a paragraph (list items and verbatim lines too) joined by spaces, and
    runs of spaces inside a line collapsed (as in the shared extract)."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        text = " ".join(line.split())
        if text == ".":
            if current:
                paragraphs.append(" ".join(current))
            current = []
        elif text:
            current.append(text)
    if current:
        paragraphs.append(" ".join(current))
    return "\n".join(paragraphs)


def parse_sources(lines: Iterable[str]) -> dict[str, str]:
    """Binary package -> source package, from a ``Packages`` index (no Source field: itself)."""
    sources: dict[str, str] = {}
    for stanza in stanzas(lines):
        fields: dict[str, str] = {}
        for line in stanza:
            if not line.startswith((" ", "\t")):
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        package = fields.get("Package")
        if package:
            source = _VERSION_SUFFIX.sub("", fields.get("Source", "")) or package
            sources.setdefault(package, source)
    return sources


def find_apt_lists(lists_dir: str | os.PathLike[str] = APT_LISTS) -> tuple[list[Path], list[Path]]:
    """apt's ``Translation-en`` and ``Packages`` files in ``lists_dir``: the main suite's first,
    then its updates and security suites (a description in several keeps the main suite's)."""
    root = Path(lists_dir)
    translations = sorted(root.glob(TRANSLATION_GLOB), key=_suite_order)
    packages = sorted(root.glob(PACKAGES_GLOB))
    if not translations:
        raise CorpusError(
            f"no {TRANSLATION_GLOB} file in {root}: run `apt-get -o Acquire::Languages=en update`"
            " (as root) to fetch Debian's English descriptions, or pass --translation FILE"
        )
    return translations, packages


def _suite_order(path: Path) -> tuple[bool, str]:
    return ("-updates_" in path.name or "-security_" in path.name, path.name)


def descriptions_from_apt(
    translations: Sequence[Path], packages: Sequence[Path]
) -> list[Description]:
    """Every description in ``translations``; source packages from ``packages``."""
    sources: dict[str, str] = {}
    for path in packages:
        for package, source in parse_sources(read_index(path)).items():
            sources.setdefault(package, source)
    records = []
    for path in translations:
        for package, md5, synopsis, text in parse_translation(read_index(path)):
            source = sources.get(package, package)
            records.append(Description(md5, package, source, synopsis, text))
    return records


def descriptions_from_jsonl(path: str | os.PathLike[str]) -> list[Description]:
    """Records of an extracted corpus file (JSONL, optionally gzipped)."""
    file = Path(path)
    opener: Any = gzip.open if file.name.endswith(".gz") else open
    names = [f for f in Description.__dataclass_fields__]
    records = []
    with opener(file, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                records.append(Description(**{name: str(data[name]) for name in names}))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise CorpusError(
                    f"{file}: record {number} is not a description record with fields {names}"
                    f" ({type(err).__name__}: {err})"
                ) from None
    return records


# --- cleaning and splitting ---------------------------------------------------------------------


def deduplicate(records: Iterable[Description]) -> tuple[list[Description], Counter[str]]:
    """Unique records with a synopsis and a long description, in package order, and why others
    were dropped (``duplicate_md5``, ``empty``, ``duplicate_description``).

    A description shared by several binary packages keeps the first in input order (apt's index
    order: a source's packages together, the main suite first), as the shared extract does; of
    equal long descriptions the first in package-name order stays.
    """
    dropped: Counter[str] = Counter()
    unique: dict[str, Description] = {}
    for record in records:
        if record.md5 in unique:
            dropped["duplicate_md5"] += 1
        else:
            unique[record.md5] = record
    seen_text: set[str] = set()
    kept = []
    for record in sorted(unique.values(), key=lambda r: (r.package, r.md5)):
        if not record.synopsis.strip() or not record.description.strip():
            dropped["empty"] += 1
        elif record.description in seen_text:
            dropped["duplicate_description"] += 1
        else:
            seen_text.add(record.description)
            kept.append(record)
    return kept, dropped


def split_of(
    source: str,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
) -> str:
    """'test', 'valid' or 'train' for a source package, from the first 32 bits of its SHA-256.

    Bucket ``b = int(sha256(source)[:8], 16) % 1000``: test if ``b < 1000 * test_fraction``, valid
    if below ``1000 * (test_fraction + valid_fraction)``, else train.
    """
    bucket = int(hashlib.sha256(source.encode("utf-8")).hexdigest()[:8], 16) % SPLIT_BUCKETS
    test_limit = round(SPLIT_BUCKETS * test_fraction)
    if bucket < test_limit:
        return "test"
    if bucket < test_limit + round(SPLIT_BUCKETS * valid_fraction):
        return "valid"
    return "train"


def split_records(
    records: Iterable[Description],
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
) -> dict[str, list[Description]]:
    """Records per split, each in input order."""
    if test_fraction < 0 or valid_fraction < 0 or test_fraction + valid_fraction >= 1:
        raise CorpusError(
            f"test_fraction={test_fraction} and valid_fraction={valid_fraction}: each must be"
            " >= 0 and together below 1"
        )
    splits: dict[str, list[Description]] = {name: [] for name in SPLITS}
    for record in records:
        split = split_of(record.source, test_fraction=test_fraction, valid_fraction=valid_fraction)
        splits[split].append(record)
    return splits


# --- writing ------------------------------------------------------------------------------------


def write_corpus(
    records: Sequence[Description],
    out_dir: str | os.PathLike[str],
    *,
    inputs: Sequence[str] = (),
    test_fraction: float = DEFAULT_TEST_FRACTION,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
) -> dict[str, Any]:
    """Deduplicate, split and write ``{train,valid,test}.jsonl`` and ``corpus_info.json``.

    Returns the corpus info (counts, lengths, the split rule, the inputs).
    """
    kept, dropped = deduplicate(records)
    splits = split_records(kept, test_fraction=test_fraction, valid_fraction=valid_fraction)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        _write_jsonl(out / f"{name}.jsonl", (asdict(r) for r in rows))
    info = {
        "inputs": list(inputs),
        "records_read": len(records),
        "dropped": dict(dropped),
        "records_kept": len(kept),
        "text_field": TEXT_FIELD,
        "summary_field": SUMMARY_FIELD,
        "split_rule": (
            "bucket = int(sha256(source package)[:8], 16) % 1000; test if bucket <"
            f" {round(SPLIT_BUCKETS * test_fraction)}, valid if bucket <"
            f" {round(SPLIT_BUCKETS * (test_fraction + valid_fraction))}, else train"
        ),
        "splits": {name: _split_stats(rows) for name, rows in splits.items()},
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _split_stats(rows: Sequence[Description]) -> dict[str, Any]:
    n = max(1, len(rows))
    return {
        "records": len(rows),
        "source_packages": len({r.source for r in rows}),
        "description_words_mean": round(sum(len(r.description.split()) for r in rows) / n, 2),
        "synopsis_words_mean": round(sum(len(r.synopsis.split()) for r in rows) / n, 2),
    }


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    temporary.replace(path)


def write_sample(
    records: Sequence[Description],
    out_dir: str | os.PathLike[str],
    *,
    docs: int,
    shards: int,
) -> list[Path]:
    """A demo corpus: ``docs`` records evenly spaced through ``records``, in ``shards`` shards.

    Even shards are JSONL (``id``, ``text``, ``summary``: the synopsis as a reference); odd ones
    are plain text, one description per line (its paragraphs joined by spaces).
    """
    if docs < 1 or shards < 1:
        raise CorpusError(f"docs={docs} and shards={shards} must be at least 1")
    stride = max(1, len(records) // docs)
    chosen = list(records[::stride][:docs])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for shard in range(shards):
        part = chosen[shard::shards]
        if shard % 2 == 0:
            path = out / f"part-{shard:05d}.jsonl"
            rows = ({"id": r.package, "text": r.description, "summary": r.synopsis} for r in part)
            _write_jsonl(path, rows)
        else:
            path = out / f"part-{shard:05d}.txt"
            lines = (" ".join(r.description.split()) + "\n" for r in part)
            path.write_text("".join(lines), encoding="utf-8")
        written.append(path)
    return written
