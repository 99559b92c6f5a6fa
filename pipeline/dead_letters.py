"""Dead letters: the records that could not be summarized, each with a reason code and detail.

Every input record ends as exactly one summary row or one dead-letter row; these reason codes are
the closed list of ways a record can fail. They appear in the Parquet ``reason`` column, in the
``dead_letters_<reason>`` Beam counters and in ``_SUCCESS.json``.
"""

from __future__ import annotations

from typing import NamedTuple

from apache_beam.metrics.metric import Metrics

METRICS_NAMESPACE = "s2s"
# Rows that --reuse carried over from an earlier run (pipeline/reuse.py).
REUSED_COUNTER = "documents_reused"
RAW_EXCERPT_CHARS = 1000
DETAIL_CHARS = 2000

UNREADABLE_SHARD = "unreadable_shard"  # the shard could not be opened or read to its end
MALFORMED_JSON = "malformed_json"  # a jsonl line that is not valid JSON
NOT_AN_OBJECT = "not_an_object"  # valid JSON, but not an object
MISSING_FIELD = "missing_field"  # the text field is absent or null
WRONG_FIELD_TYPE = "wrong_field_type"  # the text field is not a string
EMPTY_DOCUMENT = "empty_document"  # nothing but whitespace
INFERENCE_ERROR = "inference_error"  # the model failed on this document alone
OUT_OF_MEMORY = "out_of_memory"  # this document alone, in a batch of one, ran out of memory

REASONS = (
    UNREADABLE_SHARD,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    WRONG_FIELD_TYPE,
    EMPTY_DOCUMENT,
    INFERENCE_ERROR,
    OUT_OF_MEMORY,
)


class DeadLetter(NamedTuple):
    """A record that became no summary: where it came from, why, and what it looked like."""

    doc_id: str
    source: str
    reason: str
    detail: str
    raw: str


def safe_text(text: str) -> str:
    """``text`` with lone surrogates (which JSON can carry, UTF-8 cannot) replaced."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def dead_letter(doc_id: str, source: str, reason: str, detail: str, raw: object) -> DeadLetter:
    """A dead letter with a bounded, writable excerpt of ``raw`` (bytes, text or anything)."""
    assert reason in REASONS, reason
    if isinstance(raw, bytes):
        excerpt = raw[: RAW_EXCERPT_CHARS * 4].decode("utf-8", "replace")
    else:
        excerpt = raw if isinstance(raw, str) else repr(raw)
    return DeadLetter(
        doc_id=safe_text(doc_id),
        source=safe_text(source),
        reason=reason,
        detail=safe_text(detail[:DETAIL_CHARS]),
        raw=safe_text(excerpt[:RAW_EXCERPT_CHARS]),
    )


def count_dead_letter(reason: str) -> None:
    """Beam counters: all dead letters, and dead letters of this reason."""
    Metrics.counter(METRICS_NAMESPACE, "dead_letters").inc()
    Metrics.counter(METRICS_NAMESPACE, f"dead_letters_{reason}").inc()
