"""The ``s2s`` commands' edge: every ``S2SError`` becomes one line on stderr, no traceback.

Library code raises ``S2SError`` subclasses (a bad checkpoint, unreadable pairs, a preflight
problem, a failed run); the commands do not catch them one by one. ``S2SCommand`` and
``S2SGroup`` translate them here, once, into ``click.ClickException`` with the error's exit
status (2 for a problem found before any work, 1 otherwise).
"""

from __future__ import annotations

from typing import Any

import click

from s2s_model.errors import S2SError


class UserError(click.ClickException):
    """An ``S2SError`` on its way to the terminal: the run failed (exit status 1)."""


class BadRequest(UserError):
    """A problem found before any work (exit status 2, as for a usage error)."""

    exit_code = 2


class S2SCommand(click.Command):
    """A command whose ``S2SError`` becomes a one-line ``Error: ...``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except S2SError as err:
            raise (BadRequest if err.exit_code == 2 else UserError)(str(err)) from None


class S2SGroup(click.Group):
    """A group whose commands and subgroups are ``S2SCommand`` / ``S2SGroup`` by default."""

    command_class = S2SCommand
    group_class = type
