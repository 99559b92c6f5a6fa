"""Dead letters: bounded, writable excerpts; one closed list of reasons, counted by reason."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline

from pipeline.dead_letters import (
    DETAIL_CHARS,
    METRICS_NAMESPACE,
    RAW_EXCERPT_CHARS,
    REASONS,
    count_dead_letter,
    dead_letter,
    safe_text,
)

LONE_SURROGATE = "\ud800"  # JSON can carry one; UTF-8 cannot encode it


def test_reasons_are_a_closed_list_of_distinct_codes() -> None:
    assert len(set(REASONS)) == len(REASONS)
    assert all(reason.isidentifier() and reason.islower() for reason in REASONS)


def test_the_excerpt_and_the_detail_are_bounded() -> None:
    letter = dead_letter("a:1", "a", REASONS[0], "d" * (DETAIL_CHARS + 50), "r" * 10**6)
    assert letter.raw == "r" * RAW_EXCERPT_CHARS
    assert letter.detail == "d" * DETAIL_CHARS
    assert (letter.doc_id, letter.source, letter.reason) == ("a:1", "a", REASONS[0])


def test_raw_bytes_are_decoded_with_replacements() -> None:
    # Multi-byte characters: the cut is made on characters, after decoding.
    raw = b"\xff" + "\u00e9".encode() * (2 * RAW_EXCERPT_CHARS)
    letter = dead_letter("a:1", "a", REASONS[0], "bad", raw)
    assert letter.raw == "\ufffd" + "\u00e9" * (RAW_EXCERPT_CHARS - 1)


def test_a_raw_value_that_is_no_text_is_shown_as_its_repr() -> None:
    letter = dead_letter("a:1", "a", REASONS[0], "bad", {"text": 3})
    assert letter.raw == "{'text': 3}"


def test_every_field_can_be_written_as_utf8() -> None:
    text = f"x{LONE_SURROGATE}y"
    letter = dead_letter(text, text, REASONS[0], text, text)
    for field in (letter.doc_id, letter.source, letter.detail, letter.raw):
        field.encode("utf-8")  # raises on a lone surrogate
        assert field.startswith("x") and field.endswith("y")


@pytest.mark.parametrize("text", ["plain", "caf\u00e9 \u2014 \U0001f600", ""])
def test_safe_text_keeps_valid_text_as_it_is(text: str) -> None:
    assert safe_text(text) is text


def test_safe_text_replaces_only_the_unencodable() -> None:
    assert safe_text(f"ok {LONE_SURROGATE} \u00e9") == "ok ? \u00e9"


def test_dead_letters_are_counted_in_all_and_by_reason() -> None:
    reasons = [REASONS[0], REASONS[0], REASONS[-1]]
    pipeline = BeamPipeline()
    _ = pipeline | beam.Create(reasons) | beam.Map(count_dead_letter)
    result = pipeline.run()
    result.wait_until_finish()
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    counts = {c.key.metric.name: c.committed for c in query["counters"]}
    assert counts == {
        "dead_letters": 3,
        f"dead_letters_{REASONS[0]}": 2,
        f"dead_letters_{REASONS[-1]}": 1,
    }
