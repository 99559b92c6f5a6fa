"""The search reads back to the host at most twice per decoding step (each read stops a GPU)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from s2s_model import SearchStats, Summarizer
from tests.host_reads import HostReads

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "debian" / "part-00000.jsonl"
MAX_READS_PER_STEP = 2.0


def test_the_bundled_model_reads_back_at_most_twice_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """64 documents, the bundled model, its own decoding settings; a step is one decoder call
    over the active batch (``SearchStats.steps``, checked against the calls to the model)."""
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines[:64]]
    summarizer = Summarizer.load()
    calls: list[int] = []
    decode_step = summarizer.model.decode_step

    def counted(*args: Any) -> Any:
        calls.append(1)
        return decode_step(*args)

    monkeypatch.setattr(summarizer.model, "decode_step", counted)
    stats = SearchStats()
    with torch.inference_mode(), HostReads() as reads:
        summaries = summarizer.summarize(texts, stats=stats)
    assert len(summaries) == 64 and all(s.tokens for s in summaries)
    assert stats.steps == len(calls) > 0
    per_step = reads.total / stats.steps
    assert per_step <= MAX_READS_PER_STEP, f"{per_step:.2f} reads per step: {reads.by_site}"


def test_the_counter_sees_each_kind_of_read() -> None:
    t = torch.tensor([1.0, 0.0, 2.0])
    with HostReads(package="tests") as reads:
        t.tolist()
        t[0].item()
        bool(t[0])
        int(t[0])
        float(t[0])
        t.nonzero()
        t[t > 0]
        t[t > 0] = 0.0
        t.cpu()
        t.repeat_interleave(2)
        t[[0, 2]] = 1.0
        torch.where(t > 0, t, 0.0)  # stays on the device: not a read
        t.repeat_interleave(2, output_size=6)  # the size is known: no wait
        t[0] = 1.0
        t[:, None].repeat(1, 2).reshape(6)  # what replaces repeat_interleave
    assert reads.total == 11
