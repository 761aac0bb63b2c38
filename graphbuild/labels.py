"""Labels (``//pkg/path:name``) and command-line patterns (``//pkg:all``, ``//pkg/...``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
PACKAGE_RE = re.compile(r"([A-Za-z0-9_.+-][A-Za-z0-9._+-]*)(/[A-Za-z0-9_.+-][A-Za-z0-9._+-]*)*\Z")
PATTERN_WORDS = ("all",)


class LabelError(ValueError):
    """A malformed label or pattern; ``hint`` says how to write it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, order=True)
class Label:
    package: str  # "" for the root package
    name: str

    def __str__(self) -> str:
        return f"//{self.package}:{self.name}"

    @property
    def path(self) -> str:
        """The label as a relative path: ``services/api/server`` (used under $DEPS)."""
        return f"{self.package}/{self.name}" if self.package else self.name


def check_name(name: str) -> str | None:
    """Why ``name`` is not a valid target name, or None."""
    if name in PATTERN_WORDS:
        return f"'{name}' is a pattern word and cannot name a target"
    if not NAME_RE.match(name):
        return f"'{name}' is not a valid target name (allowed: [A-Za-z0-9][A-Za-z0-9._+-]*)"
    return None


def _check_package(pkg: str, text: str) -> None:
    if pkg and (not PACKAGE_RE.match(pkg) or any(p in (".", "..") for p in pkg.split("/"))):
        raise LabelError(f"malformed label '{text}': bad package path '{pkg}'",
                         "packages are directory paths below the workspace root, e.g. //services/api")


def parse_label(text: str, current_package: str | None = None) -> Label:
    """Parse ``//pkg:name``, ``//pkg`` (= ``//pkg:<last dir>``) or ``:name`` (relative)."""
    if not isinstance(text, str) or not text:
        raise LabelError(f"a label must be a non-empty string, not {text!r}")
    if text.startswith(":"):
        if current_package is None:
            raise LabelError(f"relative label '{text}' needs a package", "write //package:name")
        pkg, name = current_package, text[1:]
    elif text.startswith("//"):
        body = text[2:]
        pkg, sep, name = body.partition(":")
        if not sep:
            if not pkg:
                raise LabelError(f"malformed label '{text}'", "write //package:name")
            name = pkg.rsplit("/", 1)[-1]
    else:
        raise LabelError(f"malformed label '{text}'",
                         "labels start with // (//services/api:server) or : (:server)")
    _check_package(pkg.rstrip("/") if pkg.endswith("/") else pkg, text)
    if pkg.endswith("/"):
        raise LabelError(f"malformed label '{text}': trailing '/'", "write //package:name")
    problem = check_name(name)
    if problem:
        raise LabelError(f"malformed label '{text}': {problem}",
                         "write //package:name, e.g. //services/api:server")
    return Label(pkg, name)


@dataclass(frozen=True)
class Pattern:
    """``//pkg:name`` (one target), ``//pkg:all`` (a package), ``//pkg/...`` (a subtree)."""

    package: str
    name: str | None = None  # None with recursive=False means ':all'
    recursive: bool = False

    def __str__(self) -> str:
        if self.recursive:
            return f"//{self.package}/..." if self.package else "//..."
        return f"//{self.package}:{self.name or 'all'}"

    def covers_package(self, pkg: str) -> bool:
        if self.recursive:
            return not self.package or pkg == self.package or pkg.startswith(self.package + "/")
        return pkg == self.package


def parse_pattern(text: str) -> Pattern:
    """Parse a command-line pattern; plain labels are single-target patterns."""
    if text.endswith("/...:all"):  # Bazel's spelling of the same thing: every target below
        text = text[: -len(":all")]
    if text in ("//...", "..."):
        return Pattern("", recursive=True)
    if text.startswith("//") and text.endswith("/..."):
        pkg = text[2:-4]
        _check_package(pkg, text)
        return Pattern(pkg, recursive=True)
    if text.startswith("//") and text.endswith(":all"):
        pkg = text[2:-4]
        _check_package(pkg, text)
        return Pattern(pkg)
    if not text.startswith("//"):
        raise LabelError(f"malformed pattern '{text}'",
                         "patterns are //pkg:name, //pkg:all, //pkg/... or //...")
    label = parse_label(text)
    return Pattern(label.package, label.name)


def split_node(text: str) -> tuple[str, str | None]:
    """Split ``//x:img[linux/arm64]`` into the label text and the platform text."""
    if text.endswith("]") and "[" in text:
        base, _, plat = text[:-1].partition("[")
        return base, plat
    return text, None
