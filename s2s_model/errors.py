"""One base class for every error a user can fix, so each command line catches it once.

Each subclass's message is one line that names the problem and the fix; the command lines print
it without a traceback (``s2s_cli`` and ``python -m pipeline`` catch ``S2SError`` at their edge).
"""

from __future__ import annotations


class S2SError(Exception):
    """A problem the user can fix; ``str(err)`` is one line saying what and how."""

    # The exit status a command line gives this error: 1 a failure, 2 a bad request (usage).
    exit_code = 1


def one_line(err: BaseException) -> str:
    """``err``'s message on one line (its type name when the message is empty)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__
