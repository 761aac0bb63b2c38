""".dockerignore matching with Docker's semantics (moby/patternmatcher + ignorefile).

Lines are read as ``ignorefile.ReadAll`` does (``#`` comments, blank lines, a leading ``/`` dropped,
``filepath.Clean``), then compiled as ``patternmatcher.New`` does: ``*`` and ``?`` never cross a
``/``, ``**`` matches any number of directories, ``[...]`` classes and ``\\`` escapes follow Go's
``filepath.Match``, and the last pattern that matches a path *or one of its parents* wins, so
``!`` exceptions can re-include files below an excluded directory.

Two deliberate departures from patternmatcher, both in corners where its regexp translation
contradicts the ``filepath.Match`` rules Docker documents: an escaped character (``\\d``) is that
literal character, not a regexp escape, and ``^`` outside a class is a literal character.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from graphbuild.dockerfile.globmatch import Matcher, Token, compile_tokens
from graphbuild.errors import UserError

__all__ = [
    "DockerIgnore",
    "DockerIgnoreError",
    "MatchInfo",
    "compile_glob",
    "go_clean",
    "has_glob_meta",
]

# Per-pattern "did this pattern match the parent?" flags, as patternmatcher.MatchInfo.
MatchInfo = tuple[bool, ...]

_EXACT, _PREFIX, _SUFFIX, _REGEXP = "exact", "prefix", "suffix", "regexp"
_UTF8_BOM = "\ufeff"


class DockerIgnoreError(UserError):
    """A malformed .dockerignore pattern (Go's filepath.ErrBadPattern, or a lone ``!``)."""


def go_clean(path: str) -> str:
    """Go's ``path.Clean``: collapse ``//``, ``.`` and ``..`` lexically; ``""`` becomes ``"."``."""
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def has_glob_meta(component: str) -> bool:
    """Whether a path component holds an unescaped ``*``, ``?`` or ``[`` (fsutil's test)."""
    i = 0
    while i < len(component):
        ch = component[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "*?[":
            return True
        i += 1
    return False


# --- Go filepath.Match syntax, shared by .dockerignore and COPY wildcards -----------------------


def _class_char(pattern: str, pos: int) -> tuple[str, int]:
    """One (possibly escaped) character of a ``[...]`` class: Go's ``getEsc``."""
    if pos >= len(pattern) or pattern[pos] in "-]":
        raise DockerIgnoreError(f"syntax error in pattern {pattern!r}")
    if pattern[pos] == "\\":
        pos += 1
        if pos >= len(pattern):
            raise DockerIgnoreError(f"syntax error in pattern {pattern!r}")
    if pos + 1 >= len(pattern):  # a class must be closed after this character
        raise DockerIgnoreError(f"syntax error in pattern {pattern!r}: unterminated [")
    return pattern[pos], pos + 1


def _class_token(pattern: str, pos: int) -> tuple[Token, int]:
    """Read the class starting after ``[`` at ``pos``; return (its token, position after ``]``)."""
    negated = pos < len(pattern) and pattern[pos] == "^"
    if negated:
        pos += 1
    ranges: list[tuple[str, str]] = []
    count = 0
    while True:
        if pos < len(pattern) and pattern[pos] == "]" and count > 0:
            pos += 1
            break
        lo, pos = _class_char(pattern, pos)
        hi = lo
        if pattern[pos] == "-":
            hi, pos = _class_char(pattern, pos + 1)
        count += 1
        if lo <= hi:  # Go accepts a reversed range that matches nothing
            ranges.append((lo, hi))
    # Like Go's filepath.Match (and patternmatcher), a negated class may match "/".
    return ("class", tuple(ranges), negated), pos


def _translate(pattern: str) -> tuple[str, list[Token]]:
    """patternmatcher's ``Pattern.compile``: (match kind, the tokens of its regexp)."""
    out: list[Token] = []
    kind = _EXACT
    pos, first = 0, True
    n = len(pattern)
    while pos < n:
        ch = pattern[pos]
        pos += 1
        if ch == "*":
            if pos < n and pattern[pos] == "*":
                pos += 1
                if pos < n and pattern[pos] == "/":  # "**/" is "**"
                    pos += 1
                if pos >= n:  # trailing "**": everything below (as .gitignore)
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        out.append(("rest",))
                        kind = _REGEXP
                else:
                    out.append(("dirs",))
                    kind = _REGEXP
                if first:
                    kind = _SUFFIX
            else:
                out.append(("star",))
                kind = _REGEXP
        elif ch == "?":
            out.append(("one",))
            kind = _REGEXP
        elif ch == "\\":
            if pos >= n:
                raise DockerIgnoreError(f"syntax error in pattern {pattern!r}: trailing \\")
            out.append(("lit", pattern[pos]))
            pos += 1
            kind = _REGEXP
        elif ch == "[":
            cls, pos = _class_token(pattern, pos)
            out.append(cls)
            kind = _REGEXP
        else:
            out.append(("lit", ch))
        first = False
    return kind, out


def compile_glob(pattern: str) -> Matcher:
    """Compile a Go ``filepath.Match`` pattern; ``fullmatch`` it against a slash path (in time
    linear in the path: see globmatch).

    Raises DockerIgnoreError for what Go reports as ErrBadPattern.
    """
    out: list[str] = []
    pos, n = 0, len(pattern)
    while pos < n:
        ch = pattern[pos]
        pos += 1
        if ch == "*":
            out.append(("star",))
        elif ch == "?":
            out.append(("one",))
        elif ch == "\\":
            if pos >= n:
                raise DockerIgnoreError(f"syntax error in pattern {pattern!r}: trailing \\")
            out.append(("lit", pattern[pos]))
            pos += 1
        elif ch == "[":
            cls, pos = _class_token(pattern, pos)
            out.append(cls)
        else:
            out.append(("lit", ch))
    return compile_tokens(out)


# --- patterns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    kind: str
    regex: Matcher | None

    def match(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return bool(self.regex.fullmatch(path))

    def could_match_below(self, reldir: str) -> bool:
        """Conservatively: can this pattern match some path strictly below ``reldir``?"""
        below = reldir + "/"
        if self.kind == _EXACT:
            return self.text.startswith(below)
        if self.kind == _PREFIX:
            prefix = self.text[:-2]
            return prefix.startswith(below) or below.startswith(prefix)
        if self.kind == _SUFFIX or "**" in self.text or "[" in self.text or "\\" in self.text:
            return True  # "**", classes that may match "/" and escapes: don't try to be clever
        dirs = reldir.split("/")
        parts = self.text.split("/")
        if len(parts) <= len(dirs):
            return False
        return all(compile_glob(p).fullmatch(d) for p, d in zip(parts, dirs))


def _compile_pattern(line: str) -> _Pattern | None:
    """patternmatcher.New for one line (already through ReadAll); None for a blank line."""
    text = line.strip()
    if not text:
        return None
    text = go_clean(text)
    exclusion = text.startswith("!")
    if exclusion:
        if len(text) == 1:
            raise DockerIgnoreError('illegal exclusion pattern: "!"')
        text = text[1:]
    kind, tokens = _translate(text)
    regex = compile_tokens(tokens) if kind == _REGEXP else None
    return _Pattern(text, exclusion, kind, regex)


def _read_lines(lines: Iterable[str]) -> list[str]:
    """ignorefile.ReadAll: drop comments and blanks, clean, make ``/abs`` patterns relative."""
    out: list[str] = []
    for number, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        if number == 0:
            line = line.removeprefix(_UTF8_BOM)
        if line.startswith("#"):  # only a "#" in the first column starts a comment
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        out.append("!" + line if invert else line)
    return out


class DockerIgnore:
    """The patterns of one .dockerignore file.

    ``matches(path)`` says whether a context-relative slash path is excluded from the context.
    """

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self._patterns: tuple[_Pattern, ...] = tuple(
            p for p in map(_compile_pattern, _read_lines(lines)) if p is not None
        )
        self._exceptions = tuple(p for p in self._patterns if p.exclusion)
        self._below_cache: dict[str, bool] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> DockerIgnore:
        """Read a .dockerignore file; a missing file ignores nothing."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return cls()
        return cls(data.decode("utf-8", errors="surrogateescape").split("\n"))

    @property
    def patterns(self) -> tuple[str, ...]:
        """The cleaned patterns, exceptions prefixed with ``!``."""
        return tuple(("!" if p.exclusion else "") + p.text for p in self._patterns)

    @property
    def has_exceptions(self) -> bool:
        return bool(self._exceptions)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def matches(self, relpath: str) -> bool:
        """Whether ``relpath`` (relative to the context, ``/``-separated) is excluded.

        patternmatcher's ``MatchesOrParentMatches``: a pattern matching a parent directory
        matches everything below it.
        """
        path = _normalise(relpath)
        if path == ".":
            return False  # the context root itself is never excluded
        parents = _parent_prefixes(path)
        matched = False
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue  # cannot change the outcome
            if pattern.match(path) or any(pattern.match(p) for p in parents):
                matched = not pattern.exclusion
        return matched

    def match_in_walk(self, relpath: str, parent: MatchInfo | None) -> tuple[bool, MatchInfo]:
        """``matches`` for a tree walk: reuse the parent's per-pattern results.

        Pass ``None`` for the first path of a walk and then each directory's returned info to its
        children (patternmatcher's ``MatchesUsingParentResults``).
        """
        path = _normalise(relpath)
        parents = _parent_prefixes(path) if parent is None else ()
        matched = False
        info: list[bool] = []
        for i, pattern in enumerate(self._patterns):
            hit = bool(parent and parent[i])
            if not hit and pattern.exclusion == matched:
                hit = pattern.match(path) or any(pattern.match(p) for p in parents)
            info.append(hit)
            if hit:
                matched = not pattern.exclusion
        return (matched and path != "."), tuple(info)

    def could_reinclude_below(self, reldir: str) -> bool:
        """Whether an exception (``!``) pattern might re-include something below ``reldir``."""
        key = _normalise(reldir)
        cached = self._below_cache.get(key)
        if cached is None:
            cached = any(p.could_match_below(key) for p in self._exceptions)
            self._below_cache[key] = cached
        return cached

    def can_skip_dir(self, reldir: str) -> bool:
        """Whether a walk may skip ``reldir`` entirely: it is excluded and no exception pattern
        could re-include anything below it."""
        return self.matches(reldir) and not self.could_reinclude_below(reldir)


def _normalise(relpath: str) -> str:
    path = go_clean(relpath)
    return path.lstrip("/") or "."


def _parent_prefixes(path: str) -> Sequence[str]:
    """``a``, ``a/b`` for ``a/b/c``: the directories a parent-match must try."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
