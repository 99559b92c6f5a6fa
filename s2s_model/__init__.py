"""s2s_model: an LSTM sequence-to-sequence summarizer in pure PyTorch.

No Beam, click or pyarrow here: the pipeline and the command line depend on this package, never
the reverse.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s2s_model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
    from s2s_model.config import DEVICES, QUANTIZE_KINDS, DecodeConfig, ModelConfig, RuntimeSettings
    from s2s_model.device import DeviceError
    from s2s_model.errors import S2SError
    from s2s_model.model import Seq2Seq, TeacherForced
    from s2s_model.search import Hypothesis, SearchStats, beam_search, greedy_search
    from s2s_model.state import DecoderState, Memory
    from s2s_model.summarizer import Source, Summarizer, Summary
    from s2s_model.tokenizer import (
        BOS_ID,
        EOS_ID,
        PAD_ID,
        UNK_ID,
        TextTokenizer,
        Tokenizer,
        WordTokenizer,
    )

# Each public name and the module that defines it. Loaded on first use (PEP 562), so that a
# light consumer (``s2s show``, an error class) does not pay for torch's import.
_EXPORTS = {
    "Checkpoint": "s2s_model.checkpoint",
    "CheckpointError": "s2s_model.checkpoint",
    "load_checkpoint": "s2s_model.checkpoint",
    "save_checkpoint": "s2s_model.checkpoint",
    "DEVICES": "s2s_model.config",
    "QUANTIZE_KINDS": "s2s_model.config",
    "DecodeConfig": "s2s_model.config",
    "ModelConfig": "s2s_model.config",
    "RuntimeSettings": "s2s_model.config",
    "DeviceError": "s2s_model.device",
    "S2SError": "s2s_model.errors",
    "Seq2Seq": "s2s_model.model",
    "TeacherForced": "s2s_model.model",
    "Hypothesis": "s2s_model.search",
    "SearchStats": "s2s_model.search",
    "beam_search": "s2s_model.search",
    "greedy_search": "s2s_model.search",
    "DecoderState": "s2s_model.state",
    "Memory": "s2s_model.state",
    "Source": "s2s_model.summarizer",
    "Summarizer": "s2s_model.summarizer",
    "Summary": "s2s_model.summarizer",
    "BOS_ID": "s2s_model.tokenizer",
    "EOS_ID": "s2s_model.tokenizer",
    "PAD_ID": "s2s_model.tokenizer",
    "UNK_ID": "s2s_model.tokenizer",
    "TextTokenizer": "s2s_model.tokenizer",
    "Tokenizer": "s2s_model.tokenizer",
    "WordTokenizer": "s2s_model.tokenizer",
}

__all__ = [
    "BOS_ID",
    "DEVICES",
    "EOS_ID",
    "PAD_ID",
    "QUANTIZE_KINDS",
    "UNK_ID",
    "Checkpoint",
    "CheckpointError",
    "DecodeConfig",
    "DecoderState",
    "DeviceError",
    "Hypothesis",
    "Memory",
    "ModelConfig",
    "RuntimeSettings",
    "S2SError",
    "SearchStats",
    "Seq2Seq",
    "Source",
    "Summarizer",
    "Summary",
    "TeacherForced",
    "TextTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "beam_search",
    "greedy_search",
    "load_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 's2s_model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
