"""Error types. A UserError is the user's mistake (exit 2, no traceback); a BuildError is a failed
action or push (exit 1)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class GraphbuildError(Exception):
    """Base of every error graphbuild reports without a traceback."""

    exit_code = 1

    def render(self) -> str:
        return str(self)


class UserError(GraphbuildError):
    """Bad command line, workspace, BUILD or Dockerfile input: exit code 2.

    Renders as ``path:LINE: //label: what is wrong`` and, on the next line, ``hint: ...``.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        label: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.label = label
        self.hint = hint

    def location(self) -> str:
        parts = []
        if self.path:
            parts.append(f"{self.path}:{self.line}" if self.line else self.path)
        if self.label:
            parts.append(self.label)
        return ": ".join(parts)

    def render(self) -> str:
        loc = self.location()
        text = f"{loc}: {self.message}" if loc else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.render()


class BuildError(GraphbuildError):
    """An action, a backend or a push failed: exit code 1."""

    exit_code = 1


class NoSpace(BuildError):
    """The disk (or quota) is full: exit 1 with one line, nothing recorded half-written."""


def no_space(path) -> NoSpace:
    return NoSpace(f"no space left on device while writing {path}")


def is_no_space(exc: BaseException) -> bool:
    """A full disk or quota (an OSError's errno, or SQLite's "database or disk is full")."""
    import errno

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return type(exc).__name__ == "OperationalError" and "full" in str(exc)


@contextlib.contextmanager
def writing(path) -> Iterator[None]:
    """Name ``path`` in a full disk's OSError (write(), flush() and close() give one naming no
    file), so the one line said is "no space left on device while writing PATH"."""
    try:
        yield
    except OSError as exc:
        if is_no_space(exc) and not exc.filename:
            exc.filename = str(path)
        raise


def did_you_mean(word: str, choices) -> str | None:
    """The closest of ``choices`` to ``word``, phrased as a hint, or None."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class ActionFailed(BuildError):
    """An action ran and failed; ``log`` holds the tail of its output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log
