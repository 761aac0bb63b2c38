"""The Dockerfile front end's error type, shared by the parser and the word lexer."""

from __future__ import annotations

from graphbuild.errors import UserError


class DockerfileSyntaxError(UserError, ValueError):
    """A Dockerfile BuildKit would reject; ``line`` is 1-based where known."""

    def __init__(self, message: str, line: int | None = None, path: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, path=path, line=line, hint=hint)
