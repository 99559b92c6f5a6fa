"""The wall-clock budget of one training command (``TrainConfig.max_time``).

The budget counts from the command's start to its exit. What follows the last update (the
closing: a last validation, the choice among decode settings, the saves) is measured before
training starts and again at every validation, and training stops while the closing still fits.
A closing that would take more than ``CLOSING_SHARE`` of the time left is scaled down: first the
choice of decode settings is skipped, then the validation samples shrink, both with a warning.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

# The most of the time left after setting up that the closing may take.
CLOSING_SHARE = 0.25
# Estimates are multiplied by this, and this many seconds kept spare, before a stop is decided.
SAFETY = 1.2
SPARE_SECONDS = 1.0
# The fewest documents a scaled-down validation keeps (or all, when there are fewer).
MIN_LOSS_DOCS = 16
MIN_ROUGE_DOCS = 8


@dataclass(frozen=True)
class Deadline:
    """When a command with ``seconds`` to spend (0: no limit) must exit; times are
    ``time.monotonic()``."""

    started: float
    seconds: float

    @property
    def limited(self) -> bool:
        return self.seconds > 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        """Seconds to the deadline (infinite without one; negative once past it)."""
        return self.seconds - self.elapsed() if self.limited else math.inf


@dataclass(frozen=True)
class Costs:
    """Measured seconds of the closing's parts: scoring one validation document's loss,
    decoding one document of the ROUGE sample (one decode setting), and saving (or loading)
    one checkpoint, the curves included."""

    loss_per_doc: float
    decode_per_doc: float
    save: float

    def updated(self, **measured: float) -> Costs:
        """These costs with newer measurements of some parts."""
        return replace(self, **measured)


@dataclass(frozen=True)
class Closing:
    """What the closing will do: validation loss on ``loss_docs`` documents, ROUGE on
    ``rouge_docs`` documents, and decoding them with ``candidates`` other settings to choose
    the best."""

    loss_docs: int
    rouge_docs: int
    candidates: int

    def seconds(self, costs: Costs) -> float:
        """The closing's expected seconds: a validation, its saves (last and best), and the
        choice of decode settings (the best checkpoint loaded, each candidate decoding the
        ROUGE sample, the best checkpoint saved again)."""
        validation = self.loss_docs * costs.loss_per_doc + self.rouge_docs * costs.decode_per_doc
        choice = self.candidates * self.rouge_docs * costs.decode_per_doc
        saves = (4 if self.candidates else 2) * costs.save
        return validation + choice + saves

    def reserve(self, costs: Costs) -> float:
        """Seconds to keep free for the closing when deciding to stop."""
        return SAFETY * self.seconds(costs) + SPARE_SECONDS


def fit_closing(wanted: Closing, costs: Costs, left: float) -> Closing:
    """``wanted``, or the closest closing that takes at most ``CLOSING_SHARE`` of ``left``
    seconds: without the choice of decode settings, then with both samples scaled down alike
    (never below ``MIN_LOSS_DOCS`` / ``MIN_ROUGE_DOCS``)."""
    allowance = CLOSING_SHARE * max(0.0, left)
    if wanted.reserve(costs) <= allowance:
        return wanted
    plain = replace(wanted, candidates=0)
    if plain.reserve(costs) <= allowance:
        return plain
    scalable = plain.reserve(costs) - SPARE_SECONDS - SAFETY * 2 * costs.save
    share = max(0.0, allowance - (plain.reserve(costs) - scalable)) / max(scalable, 1e-9)
    return replace(
        plain,
        loss_docs=_scaled(plain.loss_docs, share, MIN_LOSS_DOCS),
        rouge_docs=_scaled(plain.rouge_docs, share, MIN_ROUGE_DOCS),
    )


def _scaled(count: int, share: float, least: int) -> int:
    return min(count, max(least, math.floor(count * share)))
