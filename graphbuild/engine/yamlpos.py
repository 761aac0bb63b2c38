"""YAML loading that keeps each value's line and rejects duplicate keys (PyYAML keeps the last)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from ..errors import UserError


@dataclass
class Pos:
    """A value with the 1-based line where it starts."""

    value: Any
    line: int


def _loader_class():
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DuplicateKey(UserError):
    """A key given twice in one mapping; ``keys`` is the path of keys down to it (the first is the
    top-level key, e.g. the target name in a BUILD.yaml)."""

    def __init__(self, message: str, keys: tuple[str, ...], **kw) -> None:
        super().__init__(message, **kw)
        self.keys = keys


def _construct(node, path: str, loader, trail: tuple[str, ...] = ()) -> Pos:
    """Turn a composed node into plain Python values wrapped in Pos at every level."""
    import yaml

    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Pos] = {}
        key_lines: dict[str, int] = {}
        for knode, vnode in node.value:
            key = _scalar(knode, path, loader)
            if not isinstance(key, str):
                raise UserError(f"keys must be strings, not {key!r}", path=path,
                                line=knode.start_mark.line + 1, hint="quote the key")
            if key in out:
                raise DuplicateKey(
                    f"duplicate key '{key}' (first at line {key_lines[key]})", (*trail, key),
                    path=path, line=knode.start_mark.line + 1,
                    hint="YAML would silently keep only the last one: rename or merge them")
            key_lines[key] = knode.start_mark.line + 1
            val = _construct(vnode, path, loader, (*trail, key))
            val.line = key_lines[key]  # an attribute's line is the line of its key
            out[key] = val
        return Pos(out, line)
    if isinstance(node, yaml.SequenceNode):
        return Pos([_construct(n, path, loader, trail) for n in node.value], line)
    return Pos(_scalar(node, path, loader), line)


def _scalar(node, path: str, loader) -> Any:
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise UserError("a key must be a plain value", path=path, line=node.start_mark.line + 1,
                        hint="keys are names; write the value after the ':'")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # an unknown tag, a merge key, !!int x
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"invalid YAML value {node.value!r}: {problem}", path=path,
                        line=node.start_mark.line + 1,
                        hint="write plain values: YAML tags (!!...) and merge keys (<<) are not "
                        "supported") from None


def read_text(file, path: str) -> str:
    """A YAML file's (or Dockerfile's) text; bytes that are not UTF-8 are a UserError at their
    line. Only a regular file is read: a FIFO or a device (a symlink to /dev/zero) would block
    or never end."""
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError("not a regular file", path=path,
                            hint="BUILD files and Dockerfiles must be regular files")
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", path=path,
                        line=data[:exc.start].count(b"\n") + 1,
                        hint="save the file as UTF-8") from None


def load(text: str, path: str) -> Pos | None:
    """Parse YAML text into Pos-wrapped values; a syntax error is a UserError with its line."""
    import yaml

    try:
        node = yaml.compose(text, Loader=_loader_class())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or "syntax error"
        if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
            problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise UserError(f"invalid YAML: {problem}", path=path, line=line,
                        hint=_hint(text, line)) from None
    except yaml.YAMLError as exc:
        raise UserError(f"invalid YAML: {exc}", path=path,
                        hint="check the file's encoding and syntax") from None
    if node is None:
        return None
    loader = _loader_class()("")
    try:
        return _construct(node, path, loader)
    finally:
        loader.dispose()


def _hint(text: str, line: int | None) -> str:
    src = text.splitlines()[line - 1] if line and line <= len(text.splitlines()) else ""
    if "[:" in src or ", :" in src or "{:" in src:
        return "quote labels that start with ':' inside [...] lists, e.g. [\":bin\"]"
    return "check indentation and quoting near this line"


def plain(pos: Pos) -> Any:
    """Strip Pos wrappers recursively."""
    v = pos.value
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v
