"""``--reuse EARLIER_OUTPUT``: carry rows of earlier finished runs over instead of decoding again.

The key. A summary row, apart from ``doc_id`` and ``source``, is a function of the document as
the job reads it and of what the model does with it. ``reuse_key`` (a sha256, hex) holds all of
that, and every summary row carries it:

- the document's text after ``--max_doc_chars`` cutting, and its ``cut`` and ``replaced`` flags
  (they become the row's ``truncated`` and ``replaced_invalid_utf8`` columns);
- the model's fingerprint (weights, config and tokenizer files);
- every ``DecodeConfig`` field (those added since key version 1, ``LATER_DECODE_FIELDS``, only
  when not at their defaults: a run that does not use them keeps the keys it had before they
  existed), ``max_src_tokens``, ``quantize`` and ``precision``;
- ``KEY_VERSION``, raised whenever what the key holds changes.

Left out, because they do not change the answer: ``refill``, ``max_batch_tokens``,
``batch_window``, ``torch_threads``, the runner and its workers
(tests/pipeline/test_reliability_determinism.py: the same summaries, and scores within
1e-5, whatever the batching, refilling or worker processes). Also left out: the device (a
remote runner's workers resolve ``--device auto`` themselves, after the key is needed); rows
decoded on a GPU and reused on a CPU may differ from a fresh CPU run in the last digits of
their scores, as two GPU models do.

The join. Documents are keyed, the earlier runs' ``summaries/*.parquet`` files (those their
manifests list) are read with Beam's Parquet reader and keyed by their ``reuse_key``, and the
two meet in a ``CoGroupByKey``: a key with an earlier row gives each document of that key a copy
of the row under the document's own ``doc_id`` and ``source``; every other record goes on to the
model. Nothing is collected on the launcher, and the earlier outputs are only read. Dead letters
of earlier runs are not read, so their documents are tried again.

On Beam's local runners a ``CoGroupByKey`` holds its whole input in memory: with ``--reuse`` a
local run holds every document (and every earlier row) once; without it, nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquet
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import TaggedOutput

from pipeline.dead_letters import METRICS_NAMESPACE, REUSED_COUNTER, DeadLetter
from pipeline.output import read_manifest
from pipeline.progress import REUSED_PREFIX, ReportProgress
from pipeline.sinks import DEAD_LETTER, LOCAL_SCHEMES, SUMMARIES, success_path, summary_schema
from pipeline.sources import Document, Record
from s2s_model import DecodeConfig
from s2s_model.config import field_specs

logger = logging.getLogger(__name__)

KEY_VERSION = 1
KEY_COLUMN = "reuse_key"
# The two streams of the join, and the output of records the model still has to see.
DOCUMENTS, EARLIER, REUSED, TO_DECODE = "documents", "earlier", "reused", "to_decode"
# Keys of read failures: never a sha256 hex, so they match no earlier row.
DEAD_LETTER_KEY_PREFIX = "dead-letter:"
# The runtime settings that change a summary (the manifest's "model" section holds them too).
RUNTIME_ANSWER_FIELDS = ("max_src_tokens", "quantize", "precision")
# DecodeConfig fields added after KEY_VERSION 1: in the key only when set (see above).
LATER_DECODE_FIELDS = ("coverage_beta",)


@dataclass(frozen=True)
class AnswerSettings:
    """Everything besides the document and the model that changes a summary row."""

    decode: DecodeConfig
    max_src_tokens: int
    quantize: str
    precision: str

    def digest(self, fingerprint: str) -> bytes:
        """sha256 of these settings with the model ``fingerprint`` (canonical JSON)."""
        settings = {
            "key_version": KEY_VERSION,
            "model": fingerprint,
            "decode": self._typed_decode(),
            **{name: getattr(self, name) for name in RUNTIME_ANSWER_FIELDS},
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).digest()

    def values(self) -> dict[str, Any]:
        """Each setting by name: the decode fields, then ``RUNTIME_ANSWER_FIELDS``."""
        return {
            **self._typed_decode(),
            **{name: getattr(self, name) for name in RUNTIME_ANSWER_FIELDS},
        }

    def _typed_decode(self) -> dict[str, Any]:
        # Typed values: a model's saved decode may hold 0 where the flag parser gives 0.0.
        decode: dict[str, Any] = {}
        for spec in field_specs(DecodeConfig):
            value = getattr(self.decode, spec.name)
            if spec.name in LATER_DECODE_FIELDS and value == spec.default:
                continue
            decode[spec.name] = float(value) if spec.kind is float else value
        return decode


class RowKeys:
    """``keys(doc, fingerprint)``: the ``reuse_key`` of a document decoded by that model.

    Small and picklable; the settings digest is computed once per fingerprint."""

    def __init__(self, settings: AnswerSettings) -> None:
        self.settings = settings
        self._digests: dict[str, bytes] = {}

    def __call__(self, doc: Document, fingerprint: str) -> str:
        digest = self._digests.get(fingerprint)
        if digest is None:
            digest = self._digests[fingerprint] = self.settings.digest(fingerprint)
        key = hashlib.sha256(digest)
        key.update(bytes([doc.cut, doc.replaced]))
        key.update(doc.text.encode("utf-8", "surrogatepass"))
        return key.hexdigest()


# -- preflight ---------------------------------------------------------------------------------


def _same_directory(a: str, b: str) -> bool:
    def normal(path: str) -> str:
        local = FileSystems.get_scheme(path) in LOCAL_SCHEMES
        return os.path.realpath(path) if local else path.rstrip("/")

    return normal(a) == normal(b)


def unusable_reason(directory: str, output: str, manifest_version: int) -> str | None:
    """Why ``directory`` cannot be reused by a run writing ``output``, in one line; else None."""
    if _same_directory(directory, output):
        return (
            f"--reuse {directory} is the --output itself (its rows are removed before the job"
            " reads them): copy it elsewhere first, or reuse another run's output"
        )
    try:
        manifest = read_manifest(directory)
    except Exception as err:  # OSError, ValueError (bad JSON), a filesystem plugin error, ...
        message = " ".join(str(err).split()) or type(err).__name__
        return f"cannot read {success_path(directory)} ({message}): give a finished run's output"
    if manifest is None:
        return (
            f"--reuse {directory} holds no finished run (no {success_path(directory)}): give"
            " the output directory of a run that finished, or drop that --reuse"
        )
    version = manifest.get("manifest_version")
    if version != manifest_version:
        return (
            f"--reuse {directory} was written with output version {version}, this version"
            f" writes {manifest_version} (rows without a {KEY_COLUMN}): drop that --reuse; this"
            " run's output can be reused by the next"
        )
    return None


def usable_directories(
    directories: Sequence[str], *, output: str, manifest_version: int, if_unusable: str
) -> list[str]:
    """The ``--reuse`` directories that hold a finished run of this output version.

    ``if_unusable='fail'``: the first that does not raises ``ValueError`` (one line);
    ``'skip'``: it is left out with a warning."""
    usable = []
    for directory in directories:
        reason = unusable_reason(directory, output, manifest_version)
        if reason is None:
            usable.append(directory)
        elif if_unusable == "skip":
            logger.warning("not reusing: %s", reason)
        else:
            raise ValueError(reason)
    return usable


def answer_differences(
    manifest: dict[str, Any], fingerprint: str, answer: AnswerSettings
) -> list[str]:
    """What the run of ``manifest`` did otherwise than a run of model ``fingerprint`` with
    ``answer`` (["the model", "beam_size 4 -> 5", ...]): none of its rows can be reused then.
    [] when they can."""
    model = manifest.get("model", {})
    differences = [] if model.get("fingerprint") == fingerprint else ["the model"]
    earlier: dict[str, Any] = {
        **manifest.get("decode", {}),
        **{name: model.get(name) for name in RUNTIME_ANSWER_FIELDS},
    }
    now = answer.values()
    for name, value in now.items():
        if earlier.get(name) != value:
            differences.append(f"{name} {earlier.get(name)!r} -> {value!r}")
    return differences


def earlier_summary_files(directories: Iterable[str], manifest_version: int) -> list[str]:
    """The summary files the manifests of ``directories`` list (their committed rows); a
    directory without a manifest of ``manifest_version`` has none (preflight has refused it, or
    warned that it is skipped)."""
    files = []
    for directory in directories:
        manifest = read_manifest(directory) or {}
        if manifest.get("manifest_version") != manifest_version:
            continue
        names = manifest.get("files", {}).get("summaries", [])
        files += [FileSystems.join(directory, name) for name in names]
    return files


# -- the join ----------------------------------------------------------------------------------


class _KeyRecords(beam.DoFn):
    """Record -> (reuse_key, record); a read failure gets a key no earlier row has."""

    def __init__(self, keys: RowKeys, fingerprint: str) -> None:
        self._keys = keys
        self._fingerprint = fingerprint

    def process(self, record: Record) -> Iterator[tuple[str, Record]]:
        if isinstance(record, DeadLetter):
            yield DEAD_LETTER_KEY_PREFIX + record.doc_id, record
        else:
            yield self._keys(record, self._fingerprint), record


def _keyed_row(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return row[KEY_COLUMN], row


def _row_order(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


class _CarryOver(beam.DoFn):
    """(key, {documents, earlier}) -> a reused row per document (main output) where an earlier
    row has the key, else each record unchanged (tagged TO_DECODE)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self._columns = list(columns)
        self._reused = Metrics.counter(METRICS_NAMESPACE, REUSED_COUNTER)

    def process(self, element: tuple[str, dict[str, Iterable[Any]]]) -> Iterator[Any]:
        _, groups = element
        records = list(groups[DOCUMENTS])
        if not records:
            return
        earlier = list(groups[EARLIER])
        if not earlier:
            for record in records:
                yield TaggedOutput(TO_DECODE, record)
            return
        # Rows of one key agree but for doc_id and source; any rule picks the same summary,
        # this one picks the same row whatever order the earlier files are read in.
        chosen = min(earlier, key=_row_order)
        row = {name: chosen[name] for name in self._columns}
        for doc in records:
            self._reused.inc()
            yield {**row, "doc_id": doc.doc_id, "source": doc.source}


class ReuseOrSummarize(beam.PTransform):
    """Records -> ``{"summaries": rows, "dead_letter": DeadLetters}``, as ``summarize`` gives,
    with the documents that an earlier run of ``earlier_files`` summarized carried over."""

    def __init__(
        self,
        summarize: beam.PTransform,
        earlier_files: Sequence[str],
        *,
        keys: RowKeys,
        fingerprint: str,
        with_n_best: bool,
        progress_dir: str | None = None,
    ) -> None:
        super().__init__()
        self._summarize = summarize
        self._earlier_files = list(earlier_files)
        self._keys = keys
        self._fingerprint = fingerprint
        self._columns = summary_schema(with_n_best=with_n_best).names
        self._progress_dir = progress_dir

    def expand(self, records: beam.pvalue.PCollection) -> dict[str, beam.pvalue.PCollection]:
        documents = records | "KeyDocuments" >> beam.ParDo(
            _KeyRecords(self._keys, self._fingerprint)
        )
        earlier = (
            records.pipeline
            | "EarlierFiles" >> beam.Create(self._earlier_files)
            | "ReadEarlier" >> ReadAllFromParquet()
            | "KeyEarlier" >> beam.Map(_keyed_row)
        )
        joined = (
            {DOCUMENTS: documents, EARLIER: earlier}
            | "Join" >> beam.CoGroupByKey()
            | "CarryOver"
            >> beam.ParDo(_CarryOver(self._columns)).with_outputs(TO_DECODE, main=REUSED)
        )
        reused = joined[REUSED]
        outputs = joined[TO_DECODE] | "Summarize" >> self._summarize
        summaries = (outputs[SUMMARIES], reused) | "WithReused" >> beam.Flatten()
        if self._progress_dir:
            reporter = ReportProgress(self._progress_dir, prefix=REUSED_PREFIX)
            _ = reused | "ReportReused" >> beam.ParDo(reporter)
        return {SUMMARIES: summaries, DEAD_LETTER: outputs[DEAD_LETTER]}


__all__ = [
    "KEY_COLUMN",
    "AnswerSettings",
    "ReuseOrSummarize",
    "RowKeys",
    "earlier_summary_files",
    "unusable_reason",
    "usable_directories",
]
