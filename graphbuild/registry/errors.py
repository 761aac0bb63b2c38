"""Registry errors: each names the registry, the repository, the operation and what the registry
said, and never a credential (messages pass through a Redactor before they are built)."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from graphbuild.errors import BuildError

if TYPE_CHECKING:
    from .transport import Response

MIN_SECRET_LENGTH = 4


class RegistryError(BuildError):
    """A registry operation failed (exit code 1)."""

    def __init__(self, registry: str, repository: str | None, operation: str, detail: str, *,
                 status: int | None = None, codes: tuple[str, ...] = ()) -> None:
        where = f"{registry}/{repository}" if repository else registry
        super().__init__(f"{where}: {operation}: {detail}")
        self.registry = registry
        self.repository = repository
        self.operation = operation
        self.detail = detail
        self.status = status
        self.codes = codes


class AuthenticationError(RegistryError):
    """The registry or its token service refused the credentials (or needs some)."""


class DigestMismatchError(RegistryError):
    """Content did not hash to the digest it was fetched or pushed by."""


class Redactor:
    """Replaces every known secret (passwords, tokens, Basic header values) with ``***``."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"

    def add(self, *secrets: str) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text


def describe_response(response: Response) -> tuple[str, tuple[str, ...]]:
    """What the registry said: its JSON ``errors`` messages, else the HTTP status line.

    The body must already be read (an unread body counts as empty, as for HEAD).
    """
    status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    errors = _json_errors(response)
    if errors:
        codes = tuple(code for code, _ in errors if code)
        said = "; ".join(f"{code}: {msg}" if code and msg else code or msg for code, msg in errors)
        return f"{said} ({status})", codes
    text = _short_text(response)
    return (f"{status}: {text}" if text else status), ()


def _json_errors(response: Response) -> list[tuple[str, str]]:
    try:
        data = json.loads(response.content or b"null")
    except ValueError:
        return []
    items = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    found = []
    for item in items:
        if isinstance(item, dict):
            found.append((str(item.get("code") or ""), str(item.get("message") or "")))
    return found


def _short_text(response: Response) -> str:
    text = response.content.decode("utf-8", "replace").strip()
    if not text or text.startswith("<"):  # an HTML error page says nothing useful
        return ""
    first = text.splitlines()[0]
    return first[:200]
