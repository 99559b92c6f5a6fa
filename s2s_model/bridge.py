"""The connection layer: encoder final (h, c) -> decoder initial (h, c)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from s2s_model.config import ModelConfig


class Bridge(nn.Module):
    """One linear map per state over all layers at once, then ReLU (OpenNMT-py's ``bridge``):
    for h and c with LSTM cells, for h alone with GRU cells (they have no c).

    Keeping OpenNMT-py's form lets its checkpoints load unchanged.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.hidden_size * config.num_layers
        self.h = nn.Linear(width, width)
        self.c = nn.Linear(width, width) if config.rnn_type == "LSTM" else None

    def forward(self, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """h, c: (L, B, H) -> (L, B, H) each (c None for GRU cells)."""
        if c is None or self.c is None:
            return self._project(self.h, h), None
        return self._project(self.h, h), self._project(self.c, c)

    @staticmethod
    def _project(linear: nn.Linear, state: Tensor) -> Tensor:
        layers, batch, hidden = state.shape
        flat = state.transpose(0, 1).reshape(batch, layers * hidden)  # (B, L * H)
        out = F.relu(linear(flat))
        return out.view(batch, layers, hidden).transpose(0, 1).contiguous()
