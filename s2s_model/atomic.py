"""Write a file so that readers see the old one or the new one, never half of either."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Call ``write(temporary)`` for a temporary name beside ``path``, then rename it into
    place (an atomic replace on one filesystem); parent directories are created."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    write(temporary)
    temporary.replace(final)
