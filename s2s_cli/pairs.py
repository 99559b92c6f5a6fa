"""Read (text, summary) training pairs, and single text columns, from JSONL or Parquet.

One reader for every command that takes pairs (``s2s train``, ``s2s evaluate``). A path is a file
(``.jsonl``, ``.jsonl.gz``, ``.json``, ``.parquet``, ``.pq``; ``.txt`` for one text per line), a
directory (its files of those kinds, sorted) or a glob. Records are numbered from 1 in each file:
the line number in JSONL (blank lines are skipped but counted), the row number in Parquet, so an
error points at the record to fix.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from s2s_model.errors import S2SError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
LINES_SUFFIXES = (".txt", ".txt.gz")
PARQUET_BATCH_ROWS = 4096


class PairsError(S2SError, ValueError):
    """Unreadable pairs: the message names the file, the record number and the fix."""


class Pair(NamedTuple):
    """One training or evaluation example."""

    text: str
    summary: str


def resolve_files(path: str | os.PathLike[str]) -> list[Path]:
    """The data files ``path`` names: itself, the data files in a directory, or a glob's matches."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in sorted(glob.glob(text))]
    elif Path(text).is_dir():
        files = sorted(p for p in Path(text).iterdir() if p.is_file() and _is_data_file(p))
    else:
        files = [Path(text)]
    files = [f for f in files if f.is_file()]
    if not files:
        raise PairsError(f"{text}: no such file, or no .jsonl/.parquet/.txt files match")
    return files


def _is_data_file(path: Path) -> bool:
    return path.name.endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES + LINES_SUFFIXES)


def read_pairs(
    path: str | os.PathLike[str],
    *,
    text_field: str = "text",
    summary_field: str = "summary",
    limit: int | None = None,
) -> list[Pair]:
    """(text, summary) pairs from JSONL or Parquet; missing, null or non-string fields raise."""
    pairs = []
    for record in read_fields(path, (text_field, summary_field), limit=limit):
        pairs.append(Pair(*record))
    return pairs


def read_texts(
    path: str | os.PathLike[str], *, field: str = "summary", limit: int | None = None
) -> list[str]:
    """One text per record: a ``.txt`` file's lines, or ``field`` of JSONL/Parquet records."""
    texts: list[str] = []
    for file in resolve_files(path):
        if file.name.endswith(LINES_SUFFIXES):
            records: Iterable[str] = _read_lines(file)
        else:
            records = (values[0] for values in _read_file(file, (field,)))
        if limit is not None and len(texts) >= limit:
            return texts
        for text in records:
            texts.append(text)
            if limit is not None and len(texts) >= limit:
                return texts
    return texts


def read_fields(
    path: str | os.PathLike[str], fields: Sequence[str], *, limit: int | None = None
) -> Iterator[tuple[str, ...]]:
    """The string values of ``fields`` in every record of the files ``path`` names."""
    count = 0
    for file in resolve_files(path):
        if file.name.endswith(LINES_SUFFIXES):
            raise PairsError(
                f"{file}: a plain text file has no fields {list(fields)}; give JSONL or Parquet"
            )
        for record in _read_file(file, fields):
            if limit is not None and count >= limit:
                return
            count += 1
            yield record


def _read_file(file: Path, fields: Sequence[str]) -> Iterator[tuple[str, ...]]:
    if file.name.endswith(PARQUET_SUFFIXES):
        return _read_parquet(file, fields)
    if file.name.endswith(JSONL_SUFFIXES):
        return _read_jsonl(file, fields)
    raise PairsError(f"{file}: unknown file type; use one of {JSONL_SUFFIXES + PARQUET_SUFFIXES}")


def _open_text(file: Path) -> Any:
    if file.name.endswith(".gz"):
        return gzip.open(file, "rt", encoding="utf-8")
    return open(file, encoding="utf-8")


def _read_lines(file: Path) -> list[str]:
    with _open_text(file) as handle:
        return [line.rstrip("\n") for line in handle]


def _read_jsonl(file: Path, fields: Sequence[str]) -> Iterator[tuple[str, ...]]:
    with _open_text(file) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise PairsError(
                        f"{file}: record {number} is not valid JSON ({err.msg} at column"
                        f" {err.colno}); fix or remove that line"
                    ) from None
                yield _values(record, fields, file, number)
        except UnicodeDecodeError as err:
            raise PairsError(f"{file}: not UTF-8 text ({err}); is it really JSONL?") from None
        except (OSError, EOFError) as err:
            raise PairsError(f"{file}: cannot be read ({err})") from None


def _values(record: Any, fields: Sequence[str], file: Path, number: int) -> tuple[str, ...]:
    if not isinstance(record, dict):
        raise PairsError(
            f"{file}: record {number} is a JSON {type(record).__name__}, not an object with"
            f" fields {list(fields)}"
        )
    values = []
    for name in fields:
        if name not in record:
            raise PairsError(
                f"{file}: record {number} has no field {name!r} (it has {sorted(record)[:10]});"
                " pick the field with --text_field / --summary_field"
            )
        values.append(_checked(record[name], name, file, number))
    return tuple(values)


def _checked(value: Any, name: str, file: Path, number: int) -> str:
    if value is None:
        raise PairsError(f"{file}: record {number} has a null {name!r}; fix or remove the record")
    if not isinstance(value, str):
        raise PairsError(
            f"{file}: record {number} field {name!r} is a {type(value).__name__}, not a string"
        )
    if not value.strip():
        raise PairsError(f"{file}: record {number} has an empty {name!r}; fix or remove the record")
    return value


def _read_parquet(file: Path, fields: Sequence[str]) -> Iterator[tuple[str, ...]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as err:
        raise PairsError(f"{file}: not a readable Parquet file ({err})") from None
    columns = parquet.schema_arrow.names
    for name in fields:
        if name not in columns:
            raise PairsError(
                f"{file}: no column {name!r} (columns: {columns});"
                " pick the column with --text_field / --summary_field"
            )
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=list(fields)):
            data = [batch.column(name).to_pylist() for name in fields]
            for row in zip(*data, strict=True):
                number += 1
                yield tuple(
                    _checked(value, name, file, number)
                    for value, name in zip(row, fields, strict=True)
                )
    except pa.ArrowException as err:
        raise PairsError(f"{file}: corrupt Parquet after row {number} ({err})") from None
