"""Cheaper arithmetic for CPU inference: dynamic int8 quantization of the RNN and linear layers."""

from __future__ import annotations

import warnings

from torch import nn
from torch.ao.quantization import quantize_dynamic

from s2s_model.config import QUANTIZE_KINDS
from s2s_model.model import Seq2Seq


def quantize_model(model: Seq2Seq, kind: str, device: str) -> Seq2Seq:
    """Return ``model`` with weights in ``kind`` ('none' or 'int8'); int8 is CPU only.

    Activations stay float and are quantized on the fly per batch (dynamic quantization), so no
    calibration data is needed. The attention's ``general`` matrix W projects the encoder outputs
    to keys once per document (``outputs @ W``): it becomes an int8 layer holding W^T, since with
    int8 steps that projection was 6% of the decoding time.
    """
    if kind not in QUANTIZE_KINDS:
        raise ValueError(f"quantize={kind!r}: choose one of {QUANTIZE_KINDS}")
    if kind == "none":
        return model
    if device != "cpu":
        raise ValueError("quantize='int8' runs on the CPU only: use device='cpu'")
    names = {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.LSTM | nn.GRU | nn.Linear) and not name.endswith("linear_in")
    }
    with warnings.catch_warnings():
        # torch.ao's quantized tensors are deprecated upstream (pytorch#184982); torch is pinned.
        warnings.simplefilter("ignore")
        quantized: Seq2Seq = quantize_dynamic(model, names, inplace=False)  # type: ignore[no-untyped-call]
        attention = quantized.decoder.attention
        if attention.kind == "general":
            weight = attention.linear_in.weight.detach()
            keys = nn.Linear(weight.size(0), weight.size(1), bias=False)
            keys.weight = nn.Parameter(weight.t().contiguous())
            attention.int8_keys = quantize_dynamic(nn.Sequential(keys), {nn.Linear})[0]  # type: ignore[no-untyped-call]
    return quantized
