"""Errors users can act on. The CLI prints them as one line (no traceback) and exits non-zero."""

from __future__ import annotations

import re

#: The trainer's last line on an expected failure; the operator finds it in the Ray job's message (which
#: ends with the log tail) and uses ``reason`` as the HeRLJob's Failed reason instead of a bare AppFailed.
FAILURE_MARKER = "herl-failure"
_FAILURE_RE = re.compile(FAILURE_MARKER + r" reason=([A-Z][A-Za-z0-9]{0,63}): ([^\n]*)")


class UserError(Exception):
    """An expected error caused by input: a bad file, spec, path or argument.

    The message must name what is wrong (field / file / value) and what is allowed.
    """

    exit_code: int = 2
    #: A CamelCase class of the failure (the HeRLJob's Failed reason when a trainer stops on it).
    reason: str = "InvalidInput"

    def __init__(self, message: str, *, exit_code: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        if reason is not None:
            self.reason = reason


def failure_line(reason: str, message: str) -> str:
    """The one line a trainer prints last when it stops on an expected failure (see FAILURE_MARKER)."""
    return f"{FAILURE_MARKER} reason={reason}: {' '.join(message.split())}"


def find_failure(text: str | None) -> tuple[str, str] | None:
    """(reason, message) of the last failure line in ``text`` (a Ray job message, a log), if any."""
    found = _FAILURE_RE.findall(text or "")
    return (found[-1][0], found[-1][1].strip()) if found else None
