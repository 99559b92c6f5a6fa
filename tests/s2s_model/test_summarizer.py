"""The Summarizer facade: order, batching, truncation, errors, threads."""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from s2s_model import (
    DecodeConfig,
    DeviceError,
    SearchStats,
    Summarizer,
    Tokenizer,
    WordTokenizer,
    load_checkpoint,
    save_checkpoint,
)
from s2s_model.quality import repeated_words
from tests.conftest import make_texts, tiny_model

DECODE = DecodeConfig(beam_size=3, n_best=2, max_len=8)


@pytest.fixture(scope="module")
def summarizer(tiny_checkpoint: Path) -> Summarizer:
    return Summarizer.load(tiny_checkpoint, max_src_tokens=30, max_batch_tokens=120)


def test_same_order_as_input_and_same_as_one_by_one(summarizer: Summarizer) -> None:
    texts = make_texts(12, seed=4, min_words=1, max_words=30)
    together = summarizer.summarize(texts, DECODE)
    alone = [summarizer.summarize([t], DECODE)[0] for t in texts]
    assert [s.tokens for s in together] == [s.tokens for s in alone]
    assert [s.src_tokens for s in together] == [summarizer.count_tokens(t) for t in texts]
    for s in together:
        assert s.text == summarizer.tokenizer.decode(s.tokens)
        assert len(s.n_best) == 2 and s.n_best[0] == (s.text, s.score)


def test_token_budget_does_not_change_results(tiny_checkpoint: Path) -> None:
    texts = make_texts(10, seed=5)
    small = Summarizer.load(tiny_checkpoint, max_batch_tokens=1).summarize(texts, DECODE)
    large = Summarizer.load(tiny_checkpoint, max_batch_tokens=100_000).summarize(texts, DECODE)
    assert [s.tokens for s in small] == [s.tokens for s in large]
    for a, b in zip(small, large, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_a_per_call_budget_changes_nothing_but_the_batching(summarizer: Summarizer) -> None:
    texts = make_texts(12, seed=14)
    expected = summarizer.summarize(texts, DECODE)
    small = summarizer.summarize(texts, DECODE, max_batch_tokens=10)
    assert [s.tokens for s in small] == [s.tokens for s in expected]
    with pytest.raises(ValueError, match="max_batch_tokens"):
        summarizer.summarize(texts, DECODE, max_batch_tokens=0)


@pytest.mark.parametrize("refill", [True, False])
def test_search_threads_give_the_same_summaries_in_order(
    tiny_checkpoint: Path, refill: bool
) -> None:
    texts = make_texts(31, seed=14, min_words=1, max_words=40)
    decode = DecodeConfig(beam_size=3, max_len=12, length_penalty="avg", shortlist=20)
    one = Summarizer.load(tiny_checkpoint, max_batch_tokens=150, refill=refill)
    three = Summarizer.load(tiny_checkpoint, max_batch_tokens=150, refill=refill, search_threads=3)
    one_stats, three_stats = SearchStats(), SearchStats()
    expected = one.summarize(texts, decode, stats=one_stats)
    dealt = three.summarize(texts, decode, stats=three_stats)
    assert [s.tokens for s in dealt] == [s.tokens for s in expected]
    assert [s.src_tokens for s in dealt] == [s.src_tokens for s in expected]
    assert three_stats.source_tokens > 0 and three_stats.steps >= one_stats.steps / 3
    assert [s.tokens for s in three.summarize(texts[:2], decode)] == [
        s.tokens for s in expected[:2]
    ]  # fewer documents than threads
    with pytest.raises(ValueError, match="search_threads"):
        Summarizer.load(tiny_checkpoint, search_threads=0)


def test_refill_gives_the_same_summaries(tiny_checkpoint: Path) -> None:
    texts = make_texts(30, seed=11, min_words=1, max_words=40)
    plain = Summarizer.load(tiny_checkpoint, max_batch_tokens=150, refill=False)
    refill = Summarizer.load(tiny_checkpoint, max_batch_tokens=150, refill=True)
    decode = DecodeConfig(beam_size=3, max_len=12, length_penalty="avg")
    expected = plain.summarize(texts, decode)
    for a, b in zip(expected, refill.summarize(texts, decode), strict=True):
        assert a.tokens == b.tokens
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_batches_respect_the_token_budget(summarizer: Summarizer) -> None:
    texts = make_texts(40, seed=6)
    encoded = sorted(
        (summarizer._encode(i, summarizer.read(t)) for i, t in enumerate(texts)),
        key=lambda e: -len(e.ids),
    )
    batches = summarizer._batches(encoded, summarizer.settings.max_batch_tokens)
    assert sorted(e.index for b in batches for e in b) == list(range(40))
    for batch in batches:
        longest = max(len(e.ids) for e in batch)
        assert len(batch) == 1 or longest * len(batch) <= summarizer.settings.max_batch_tokens


def test_long_documents_are_truncated_and_flagged(summarizer: Summarizer) -> None:
    long_text = " ".join(make_texts(20, seed=7))
    short = summarizer.summarize(["server client."], DECODE)[0]
    cut = summarizer.summarize([long_text], DECODE)[0]
    assert cut.truncated and cut.src_tokens == summarizer.settings.max_src_tokens
    assert not short.truncated and short.src_tokens < summarizer.settings.max_src_tokens


@pytest.mark.parametrize("bad", ["", "   \n\t "])
def test_blank_text_is_refused_with_its_index(summarizer: Summarizer, bad: str) -> None:
    with pytest.raises(ValueError, match="text 1 is blank"):
        summarizer.summarize(["fine text.", bad], DECODE)


def test_default_decode_and_fingerprint_come_from_the_checkpoint(tiny_checkpoint: Path) -> None:
    s = Summarizer.load(tiny_checkpoint)
    assert s.decode == load_checkpoint(tiny_checkpoint).decode
    assert s.fingerprint == load_checkpoint(tiny_checkpoint).fingerprint


def test_concurrent_calls_from_threads(summarizer: Summarizer) -> None:
    texts = make_texts(16, seed=8)
    expected = [s.tokens for s in summarizer.summarize(texts, DECODE)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda _: summarizer.summarize(texts, DECODE), range(4)))
    for run in runs:
        assert [s.tokens for s in run] == expected


def test_greedy_path(summarizer: Summarizer) -> None:
    texts = make_texts(3, seed=9)
    out = summarizer.summarize(texts, DecodeConfig(beam_size=1, max_len=5))
    assert all(len(s.tokens) <= 5 and len(s.n_best) == 1 for s in out)


def test_bad_device_and_threads(tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="device"):
        Summarizer.load(tiny_checkpoint, device="tpu")
    with pytest.raises(ValueError, match="threads"):
        Summarizer.load(tiny_checkpoint, threads=0)


def test_cuda_without_a_gpu_is_refused_in_one_line(
    tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(DeviceError) as refused:
        Summarizer.load(tiny_checkpoint, device="cuda")
    message = str(refused.value)
    assert "\n" not in message and "device 'cuda' asked for" in message
    assert "--device cpu" in message
    caplog.set_level("INFO", logger="s2s_model.device")
    assert Summarizer.load(tiny_checkpoint, device="auto").device == "cpu"
    assert "device 'auto': using the CPU" in caplog.text


def test_int8_quantization(tiny_checkpoint: Path) -> None:
    from torch.ao.nn.quantized.dynamic import LSTM as QuantizedLSTM

    texts = make_texts(6, seed=12)
    quantized = Summarizer.load(tiny_checkpoint, quantize="int8")
    assert isinstance(quantized.model.decoder.lstm, QuantizedLSTM)
    out = quantized.summarize(texts, DecodeConfig(beam_size=2, max_len=6, shortlist=10))
    assert len(out) == 6 and all(len(s.tokens) <= 6 for s in out)
    with pytest.raises(ValueError, match="quantize"):
        Summarizer.load(tiny_checkpoint, quantize="int4")


def test_int8_quantization_of_gru_cells(tmp_path: Path, tiny_tokenizer: Tokenizer) -> None:
    from torch.ao.nn.quantized.dynamic import GRU as QuantizedGRU

    model = tiny_model(tiny_tokenizer.vocab_size, seed=3, rnn_type="GRU", num_layers=2)
    save_checkpoint(tmp_path / "gru", model, tiny_tokenizer)
    texts = make_texts(6, seed=14)
    plain = Summarizer.load(tmp_path / "gru").summarize(texts, DecodeConfig(beam_size=2))
    quantized = Summarizer.load(tmp_path / "gru", quantize="int8")
    assert isinstance(quantized.model.decoder.gru, QuantizedGRU)
    out = quantized.summarize(texts, DecodeConfig(beam_size=2))
    assert len(out) == 6 and all(math.isfinite(s.score) for s in out)
    assert any(q.score != p.score for q, p in zip(out, plain, strict=True))  # int8 did run


def test_shortlist_through_the_summarizer(summarizer: Summarizer) -> None:
    texts = make_texts(5, seed=13)
    frequent = set(summarizer.tokenizer.most_frequent(8))
    for text, summary in zip(
        texts,
        summarizer.summarize(texts, DecodeConfig(beam_size=2, max_len=6, shortlist=8)),
        strict=True,
    ):
        source = set(summarizer.tokenizer.encode(text)[: summarizer.settings.max_src_tokens])
        assert set(summary.tokens) <= frequent | source | {3}


@pytest.mark.parametrize("search_threads", [1, 2])
def test_bf16_precision_runs_the_model_in_bf16(tiny_checkpoint: Path, search_threads: int) -> None:
    texts = make_texts(6, seed=15)
    decode = DecodeConfig(beam_size=2, max_len=6)
    dtypes: list[torch.dtype] = []
    for precision in ("fp32", "bf16"):
        summarizer = Summarizer.load(
            tiny_checkpoint, precision=precision, search_threads=search_threads
        )
        hook = summarizer.model.decoder.generator.register_forward_hook(
            lambda module, args, out: dtypes.append(out.dtype)
        )
        out = summarizer.summarize(texts, decode)
        hook.remove()
        assert len(out) == 6 and all(0 < len(s.tokens) <= 6 for s in out)
        assert all(math.isfinite(s.score) for s in out)
        expected = torch.float32 if precision == "fp32" else torch.bfloat16
        assert dtypes and set(dtypes) == {expected}
        dtypes.clear()
        # One document, or documents of equal length, take oneDNN's LSTM path in the encoder.
        assert len(summarizer.summarize(texts[:1], decode)) == 1
        assert len(summarizer.summarize([texts[0]] * 3, decode)) == 3
    with pytest.raises(ValueError, match="precision"):
        Summarizer.load(tiny_checkpoint, precision="fp8")
    with pytest.raises(ValueError, match="do not combine"):
        Summarizer.load(tiny_checkpoint, precision="bf16", quantize="int8")


def test_forced_end_says_when_the_length_cap_ended_a_summary(summarizer: Summarizer) -> None:
    texts = make_texts(6, seed=41)
    capped = summarizer.summarize(texts, DecodeConfig(beam_size=2, min_len=3, max_len=3))
    assert all(s.forced_end and len(s.tokens) == 3 for s in capped)
    free = summarizer.summarize(texts, DecodeConfig(beam_size=2, max_len=12))
    assert [s.forced_end for s in free] == [len(s.tokens) == 12 for s in free]


def test_word_rules_through_the_summarizer(summarizer: Summarizer) -> None:
    texts = make_texts(6, seed=42)
    config = DecodeConfig(beam_size=3, max_len=10, whole_words=True, no_repeat_words=True)
    plain = summarizer.summarize(texts, dataclasses.replace(config, no_repeat_words=False))
    summaries = summarizer.summarize(texts, config)
    assert any(repeated_words(s.text) for s in plain)  # the rule has work to do
    assert not any(repeated_words(s.text) for s in summaries)
    assert all(math.isfinite(s.score) for s in summaries)


def test_copied_unknown_words_show_in_the_summary(tmp_path: Path) -> None:
    """A word-level model copying only: words outside its vocabulary come out as themselves,
    the same in any batch, with or without refill."""
    tokens = ["<pad>", "<s>", "</s>", "<unk>", *[f"w{i}" for i in range(20)]]
    model = tiny_model(len(tokens), seed=4, copy=True, copy_gate="opennmt", extended_vocab=True)
    assert model.decoder.copy_gate is not None
    with torch.no_grad():
        model.decoder.copy_gate.bias.fill_(30.0)  # p_copy ~ 1
    save_checkpoint(tmp_path / "m", model, WordTokenizer(tokens))
    texts = ["w1 zlib w2 zlib", "libfoo w3", "w4 w5 w6 qux-dev w7 w8", "w9"]
    decode = DecodeConfig(beam_size=3, max_len=5)
    summarizer = Summarizer.load(tmp_path / "m")
    together = summarizer.summarize(texts, decode)
    alone = [summarizer.summarize([t], decode)[0] for t in texts]
    fixed = Summarizer.load(tmp_path / "m", refill=False, max_batch_tokens=7)
    assert [s.text for s in together] == [s.text for s in alone]
    assert [s.text for s in together] == [s.text for s in fixed.summarize(texts, decode)]
    for text, summary in zip(texts, together, strict=True):
        assert set(summary.text.split()) <= set(text.split())
    assert any(w in s.text.split() for s in together for w in ("zlib", "libfoo", "qux-dev"))
    assert "<unk>" not in " ".join(s.text for s in together)
