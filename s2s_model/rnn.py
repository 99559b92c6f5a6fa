"""The recurrent cells the encoder and the decoder share: LSTM (h and c) or GRU (h only)."""

from __future__ import annotations

from torch import nn

from s2s_model.config import ModelConfig


def make_rnn(
    config: ModelConfig,
    input_size: int,
    hidden_size: int,
    *,
    bidirectional: bool = False,
    batch_first: bool = True,
) -> nn.LSTM | nn.GRU:
    """A stack of ``config.num_layers`` cells of ``config.rnn_type``."""
    kind = nn.GRU if config.rnn_type == "GRU" else nn.LSTM
    return kind(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=config.num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
    )


def rnn_name(config: ModelConfig) -> str:
    """The attribute (and state-dict prefix) of the cells: 'lstm' or 'gru'."""
    return config.rnn_type.lower()
