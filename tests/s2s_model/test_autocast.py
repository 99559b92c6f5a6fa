"""bf16 autocast: correct by construction under CUDA's policy, emulated on the CPU."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

from s2s_model import DecodeConfig, Summarizer
from tests.conftest import tiny_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "debian" / "part-00000.jsonl"


def _in_fp32(softmax: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def wrapped(input: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        kwargs.pop("dtype", None)
        return softmax(input.float(), *args, **kwargs)

    return wrapped


@pytest.fixture
def cuda_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """CPU bf16 autocast (matrix products in bf16) with softmax returning fp32, as CUDA's
    autocast policy does: the mix that broke the copy mixture's in-place ``scatter_add_``."""
    for name in ("softmax", "log_softmax"):
        monkeypatch.setattr(torch, name, _in_fp32(getattr(torch, name)))
        monkeypatch.setattr(torch.nn.functional, name, _in_fp32(getattr(torch.nn.functional, name)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yield


def test_the_bundled_model_copies_under_the_cuda_autocast_policy(cuda_policy: None) -> None:
    summarizer = Summarizer.load()
    assert summarizer.model.config.copy, "the bundled model copies: this tests the copy path"
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()[:6]
    texts = [json.loads(line)["text"] for line in lines]
    dtypes: set[torch.dtype] = set()
    hook = summarizer.model.decoder.generator.register_forward_hook(
        lambda module, args, out: dtypes.add(out.dtype)
    )
    summaries = summarizer.summarize(texts, DecodeConfig(beam_size=2, max_len=8))
    hook.remove()
    assert dtypes == {torch.bfloat16}, "the emulation must give bf16 logits"
    assert torch.softmax(torch.ones(2, dtype=torch.bfloat16), -1).dtype == torch.float32
    assert len(summaries) == 6 and all(s.tokens and math.isfinite(s.score) for s in summaries)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_encoder_lstm_runs_in_fp32_under_autocast(dtype: torch.dtype) -> None:
    model = tiny_model(40, copy=True)
    seen: list[torch.dtype] = []

    def record(module: torch.nn.Module, args: tuple[Any, ...], out: Any) -> None:
        packed_in, (packed_out, _) = args[0], out
        assert isinstance(packed_in, PackedSequence) and isinstance(packed_out, PackedSequence)
        seen.extend([packed_in.data.dtype, packed_out.data.dtype, out[1][0].dtype])

    hook = model.encoder.rnn.register_forward_hook(record)
    src = torch.randint(4, 40, (3, 7))
    lengths = torch.tensor([7, 3, 5])
    plain = model.encoder(src, lengths)
    with torch.autocast("cpu", dtype=dtype):
        mixed = model.encoder(src, lengths)
    hook.remove()
    assert set(seen) == {torch.float32}
    for a, b in zip(plain, mixed, strict=True):
        assert torch.equal(a, b)


def test_encoder_outputs_come_back_in_input_order() -> None:
    """Outputs are reordered without reading indices back: each row equals encoding it alone."""
    model = tiny_model(40)
    src = torch.randint(4, 40, (4, 6))
    lengths = torch.tensor([2, 6, 4, 6])
    outputs, h, _ = model.encoder(src, lengths)
    for row, length in enumerate(lengths.tolist()):
        alone, h_alone, _ = model.encoder(src[row : row + 1, :length], lengths[row : row + 1])
        torch.testing.assert_close(outputs[row, :length], alone[0])
        assert not outputs[row, length:].any()
        torch.testing.assert_close(h[:, row], h_alone[:, 0])
