"""Errors users can act on. The CLI prints them as one line (no traceback) and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """An expected error caused by input: a bad file, spec, path or argument.

    The message must name what is wrong (field / file / value) and what is allowed.
    """

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
