"""s2s_model: an LSTM sequence-to-sequence summarizer in pure PyTorch.

No Beam, click or pyarrow here: the pipeline and the command line depend on this package, never
the reverse.
"""

from s2s_model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from s2s_model.config import DecodeConfig, ModelConfig
from s2s_model.model import Seq2Seq, TeacherForced
from s2s_model.quantize import QUANTIZE_KINDS
from s2s_model.search import Hypothesis, SearchStats, beam_search, greedy_search
from s2s_model.state import DecoderState, Memory
from s2s_model.summarizer import DEVICES, Summarizer, Summary
from s2s_model.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    TextTokenizer,
    Tokenizer,
    WordTokenizer,
)

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
    "Hypothesis",
    "Memory",
    "ModelConfig",
    "SearchStats",
    "Seq2Seq",
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
