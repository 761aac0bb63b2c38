"""Image references, parsed the way Docker's ``distribution/reference`` grammar parses them.

``[host[:port]/]path[:tag][@digest]``. The first path component is a registry host only when it
holds a ``.`` or a ``:``, or is ``localhost``, or has an upper-case letter (as in Docker);
otherwise the image lives on Docker Hub (``docker.io``, one-component names under ``library/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

DOCKER_HUB = "docker.io"
# Docker Hub's API lives on another host than its name; credential files use the legacy key.
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_LEGACY_NAMES = frozenset({"index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64_RE = re.compile(r"[a-f0-9]{64}")


class ReferenceError(ValueError):
    """An image reference that does not follow the grammar; the message quotes it."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"invalid image reference '{text}': {problem}")
        self.text = text
        self.problem = problem


@dataclass(frozen=True)
class Reference:
    """A fully qualified reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def endpoint(self) -> str:
        """The host:port that serves the registry API (Docker Hub's differs from its name)."""
        return DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag (``latest``)."""
        return self.digest or self.tag or DEFAULT_TAG

    def familiar(self) -> str:
        """The short form Docker prints: ``alpine:3`` rather than ``docker.io/library/alpine:3``."""
        text = str(self)
        if self.registry == DOCKER_HUB:
            text = text[len(DOCKER_HUB) + 1:]
            if text.startswith("library/") and "/" not in self.repository[len("library/"):]:
                text = text[len("library/"):]
        return text

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise ReferenceError(f"{self.name}:{tag}", f"invalid tag '{tag}'")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        _check_digest(str(self), digest)
        return replace(self, digest=digest)


def parse_reference(text: str) -> Reference:
    """Parse an image reference; raise ReferenceError naming what is wrong with it."""
    if not isinstance(text, str) or not text:
        raise ReferenceError(str(text), "an image reference must be a non-empty string")
    if text != text.strip():
        raise ReferenceError(text, "it has leading or trailing whitespace")
    remainder, digest = _split_digest(text)
    remainder, tag = _split_tag(text, remainder)
    registry, path = _split_registry(remainder)
    _check_path(text, path, registry)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return Reference(registry, path, tag, digest)


def _split_digest(text: str) -> tuple[str, str | None]:
    name, at, digest = text.partition("@")
    if not at:
        return text, None
    _check_digest(text, digest)
    return name, digest


def _check_digest(text: str, digest: str) -> None:
    if not _DIGEST_RE.fullmatch(digest):
        raise ReferenceError(text, f"invalid digest '{digest}' (expected algorithm:hex)")
    if digest.startswith("sha256:") and not _SHA256_RE.fullmatch(digest):
        raise ReferenceError(text, "a sha256 digest is 64 lower-case hexadecimal characters")


def _split_tag(text: str, name: str) -> tuple[str, str | None]:
    # A colon after the last slash is a tag; one before it belongs to host:port.
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        return name, None
    tag = name[colon + 1:]
    if not _TAG_RE.fullmatch(tag):
        raise ReferenceError(text, f"invalid tag '{tag}' (letters, digits, '_', '.', '-'; "
                                   "at most 128, not starting with '.' or '-')")
    return name[:colon], tag


def _split_registry(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    is_host = slash and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first)
    if not is_host:
        return DOCKER_HUB, name
    if first in DOCKER_HUB_LEGACY_NAMES:
        return DOCKER_HUB, rest
    return first, rest


def _check_path(text: str, path: str, registry: str) -> None:
    if registry != DOCKER_HUB and not _HOST_RE.fullmatch(registry):
        raise ReferenceError(text, f"invalid registry host '{registry}'")
    if not path:
        raise ReferenceError(text, "the repository name is empty")
    if path.lower() != path and _PATH_RE.fullmatch(path.lower()):
        raise ReferenceError(text, "repository names must be lower-case")
    if not _PATH_RE.fullmatch(path):
        raise ReferenceError(
            text, f"invalid repository name '{path}' (components of lower-case letters and "
                  "digits, separated by '/' and joined inside by '.', '_', '__' or '-')")
    if _HEX64_RE.fullmatch(path) and registry == DOCKER_HUB:
        raise ReferenceError(text, "a 64-character hexadecimal string is an image ID, not a name")
    if len(f"{registry}/{path}") > MAX_NAME_LENGTH:
        raise ReferenceError(text, f"the name is longer than {MAX_NAME_LENGTH} characters")
