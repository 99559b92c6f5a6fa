"""A stand-in for the beam search, to time and test the work around it (``Summarizer.with_search``).

``FirstPieces`` answers each document with its first pieces, at once or after a wait per document
that releases the GIL, as a device of a given speed would. Its waits take turns (one lock), as
searches on one device do, so two callers together get no more than the device's speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from s2s_model.config import DecodeConfig
from s2s_model.search import Hypothesis, SearchStats

SUMMARY_PIECES = 8


class FirstPieces:
    """A ``DocumentSearch``: each summary is its source's first ``pieces`` ids, scored 0.0.

    ``seconds_per_document``: how long each call waits per document (0: none), with the GIL
    released; calls from several threads wait in turn.
    """

    def __init__(self, *, seconds_per_document: float = 0.0, pieces: int = SUMMARY_PIECES) -> None:
        if seconds_per_document < 0 or pieces < 1:
            raise ValueError("seconds_per_document must be >= 0 and pieces >= 1")
        self.seconds_per_document = seconds_per_document
        self.pieces = pieces
        self._device = threading.Lock()

    def __call__(
        self,
        sources: Sequence[list[int]],
        config: DecodeConfig,
        *,
        max_batch_tokens: int,
        stats: SearchStats | None,
    ) -> list[list[Hypothesis]]:
        if self.seconds_per_document:
            with self._device:
                time.sleep(self.seconds_per_document * len(sources))
        return [[Hypothesis(list(ids[: self.pieces]), 0.0, 0.0)] for ids in sources]
