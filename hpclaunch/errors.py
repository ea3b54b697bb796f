"""Errors a user can fix. The CLI prints them as one line, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in input or configuration; the message says what and what to do.

    ``exit_code`` lets callers distinguish classes of failure in scripts.
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotFound(UserError):
    """A task, batch, worker, launch or site that does not exist."""

    exit_code = 3


class DatabaseError(UserError):
    """The queue database is unreachable, uninitialised or of the wrong version."""

    exit_code = 4
