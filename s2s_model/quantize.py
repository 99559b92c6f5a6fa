"""Cheaper arithmetic for CPU inference: dynamic int8 quantization of the LSTM and linear layers."""

from __future__ import annotations

import warnings

from torch import nn
from torch.ao.quantization import quantize_dynamic

from s2s_model.config import QUANTIZE_KINDS
from s2s_model.model import Seq2Seq


def quantize_model(model: Seq2Seq, kind: str, device: str) -> Seq2Seq:
    """Return ``model`` with weights in ``kind`` ('none' or 'int8'); int8 is CPU only.

    Activations stay float and are quantized on the fly per batch (dynamic quantization), so no
    calibration data is needed. The attention's ``general`` matrix is left in float: it is applied
    to the encoder outputs once per document, not per step.
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
        if isinstance(module, nn.LSTM | nn.Linear) and not name.endswith("linear_in")
    }
    with warnings.catch_warnings():
        # torch.ao's quantized tensors are deprecated upstream (pytorch#184982); torch is pinned.
        warnings.simplefilter("ignore")
        quantized: Seq2Seq = quantize_dynamic(model, names, inplace=False)  # type: ignore[no-untyped-call]
    return quantized
