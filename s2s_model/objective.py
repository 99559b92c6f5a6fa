"""What training minimises and how fast: the token loss and the learning-rate schedule."""

from __future__ import annotations

import math

from torch import Tensor

from s2s_model.config import TrainConfig
from s2s_model.tokenizer import PAD_ID


def token_loss(
    log_probs: Tensor, target: Tensor, *, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Summed training loss and summed NLL over the non-PAD positions of ``target``.

    Args:
        log_probs: (B, T, V) normalised log-probabilities.
        target: (B, T) gold tokens, PAD where there is none.

    Returns:
        (loss, nll), both scalars summed over tokens. With label smoothing eps the loss of a
        token is (1 - eps) * NLL + eps * (mean over V of -log p).
    """
    mask = target != PAD_ID  # (B, T)
    nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T)
    nll_sum = nll.masked_select(mask).sum()
    if not label_smoothing:
        return nll_sum, nll_sum.detach()
    uniform = -log_probs.mean(dim=-1)  # (B, T)
    loss = (1.0 - label_smoothing) * nll + label_smoothing * uniform
    return loss.masked_select(mask).sum(), nll_sum.detach()


def learning_rate(step: int, config: TrainConfig, horizon: int) -> float:
    """Learning rate of update ``step`` (1-based): linear warm-up, then the configured decay."""
    warmup = config.warmup_steps
    if warmup and step <= warmup:
        return config.lr * step / warmup
    if config.lr_schedule == "inverse_sqrt":
        return config.lr * math.sqrt(max(warmup, 1) / step)
    if config.lr_schedule == "linear" and horizon > warmup:
        progress = min(1.0, (step - warmup) / (horizon - warmup))
        return config.lr * (1.0 - (1.0 - config.min_lr_ratio) * progress)
    return config.lr
