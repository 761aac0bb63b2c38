"""Values: named strings written as ``{NAME}`` in the tags, build_args, labels and annotations of
BUILD.yaml targets.

A value is declared with its default under ``vars:`` in WORKSPACE.yaml and overridden by the
environment (``GRAPHBUILD_VAR_<NAME>``), then by ``--set NAME=VALUE``. Four are built in and
read from git only when something uses them: ``git_sha``, ``git_short_sha``, ``git_branch`` and
``git_tag``. ``{os}``, ``{arch}`` and ``{variant}`` stay as written: the image rule expands them
per platform. ``${NAME}`` and ``{{NAME}}`` are not references (shell and Go-template text).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import UserError, did_you_mean

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
REF_RE = re.compile(r"(?<![{$])\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
ENV_PREFIX = "GRAPHBUILD_VAR_"
PLATFORM_KEYS = frozenset({"os", "arch", "variant"})  # the image rule's per-platform templates
ATTRS = ("tags", "build_args", "labels", "annotations")  # the attributes values reach
BUILTIN = {
    "git_sha": "the commit checked out (HEAD), 40 hex digits",
    "git_short_sha": "HEAD abbreviated as `git rev-parse --short` does (7 or more digits)",
    "git_branch": "the branch checked out; empty on a detached HEAD",
    "git_tag": "a tag pointing at HEAD; empty when there is none",
}
_GIT_ARGS = {
    "git_sha": ("rev-parse", "--verify", "-q", "HEAD"),
    "git_short_sha": ("rev-parse", "--verify", "-q", "--short", "HEAD"),
    "git_branch": ("symbolic-ref", "-q", "--short", "HEAD"),
    "git_tag": ("describe", "--tags", "--exact-match", "HEAD"),
}


class UnknownValue(Exception):
    """``{name}`` names no value; ``hint`` suggests the closest."""

    def __init__(self, name: str, hint: str) -> None:
        super().__init__(name)
        self.name = name
        self.hint = hint


class NoGitValue(Exception):
    """A git value asked for outside a git checkout."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(why)
        self.name = name
        self.why = why


def references(text: str) -> list[str]:
    """The value names ``text`` refers to (the per-platform template keys left out)."""
    return [n for n in REF_RE.findall(text) if n not in PLATFORM_KEYS]


def strings_with_references(value, line: int) -> Iterator[tuple[int, str]]:
    """(line, text) of every string in a Pos-wrapped YAML value that refers to a value."""
    v = value.value
    if isinstance(v, str):
        if references(v):
            yield value.line or line, v
    elif isinstance(v, list):
        for item in v:
            yield from strings_with_references(item, item.line or line)
    elif isinstance(v, dict):
        for item in v.values():
            yield from strings_with_references(item, item.line or line)


class Values:
    """Every value's text and where it came from; git is asked only for what is used."""

    def __init__(self, root: Path, declared: Mapping[str, str] | None = None,
                 sets: list[str] | None = None, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.text: dict[str, str] = dict(declared or {})
        self.source: dict[str, str] = dict.fromkeys(self.text, "WORKSPACE.yaml vars")
        env = os.environ if env is None else env
        for name in [*self.text, *BUILTIN]:
            if ENV_PREFIX + name in env:
                self.text[name] = env[ENV_PREFIX + name]
                self.source[name] = f"${ENV_PREFIX}{name}"
        for item in sets or []:
            name, value = self._parse_set(item)
            self.text[name] = value
            self.source[name] = "--set"
        self._checkout: str | None = None  # "" in a git checkout, else why not

    def known(self) -> list[str]:
        return sorted({*self.text, *BUILTIN})

    def _parse_set(self, item: str) -> tuple[str, str]:
        name, eq, value = item.partition("=")
        if not eq or not NAME_RE.fullmatch(name):
            raise UserError(f"--set {item!r}: expected NAME=VALUE",
                            hint="e.g. --set VERSION=1.4 (names are letters, digits and _)")
        if name not in self.text and name not in BUILTIN:
            raise UserError(f"--set {name}: no value of that name",
                            hint=did_you_mean(name, self.known()) or
                            f"declare it under vars: in WORKSPACE.yaml (known: "
                            f"{', '.join(self.known())})")
        return name, value

    def get(self, name: str) -> str:
        """A value's text; raises UnknownValue, or NoGitValue outside a git checkout."""
        if name not in self.text:
            if name not in BUILTIN:
                raise UnknownValue(name, did_you_mean(name, self.known()) or
                                   "declare it under vars: in WORKSPACE.yaml, e.g. "
                                   f"vars: {{{name}: ''}} (known: {', '.join(self.known())})")
            self.text[name] = self._git(name)
            self.source[name] = "git"
        return self.text[name]

    def expand(self, text: str) -> str:
        return REF_RE.sub(lambda m: m.group(0) if m.group(1) in PLATFORM_KEYS
                          else self.get(m.group(1)), text)

    def describe(self, names: list[str]) -> str:
        """``{NAME} is 'text' (from SOURCE)`` for each name, for error messages."""
        return "; ".join(f"{{{n}}} is {self.text[n]!r} (from {self.source[n]})"
                         for n in dict.fromkeys(names) if n in self.text)

    def _git(self, name: str) -> str:
        """A built-in git value: empty when the checkout has none (a detached HEAD has no
        branch); outside a git checkout there is no right answer, so NoGitValue."""
        if self._checkout is None:
            try:
                head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"],
                                      cwd=self.root, capture_output=True, text=True, check=False)
                self._checkout = "" if head.returncode == 0 else (
                    f"{self.root} is not in a git checkout with a commit")
            except FileNotFoundError:
                self._checkout = "git is not installed"
        if self._checkout:
            raise NoGitValue(name, self._checkout)
        proc = subprocess.run(["git", *_GIT_ARGS[name]], cwd=self.root, capture_output=True,
                              text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""
