"""Source globs (``*``, ``?``, ``[...]``, ``**``) matched against paths, without pathlib.

`srcs` globbing runs on every build, so it lists only the directories a pattern can reach and
matches strings; hidden files and directories match only a pattern part that starts with '.',
as with Python's glob.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

MAGIC = re.compile(r"[*?\[]")


@lru_cache(maxsize=4096)
def regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            out, i = out + "[" + body.replace("\\", "\\\\") + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _split(pattern: str) -> tuple[str, str]:
    """(literal directory prefix, the rest) of a pattern."""
    parts = pattern.split("/")
    literal = []
    for part in parts[:-1]:
        if MAGIC.search(part):
            break
        literal.append(part)
    return "/".join(literal), "/".join(parts[len(literal):])


def _hidden_ok(rest: str, rel: str) -> bool:
    """A hidden path part matches only a pattern part that starts with '.'."""
    if "/." not in "/" + rel:
        return True
    return rest.startswith(".") or "/." in rest


def _files_under(top: str, recursive: bool, walked: list[str]):
    """Relative paths of the files below ``top`` (one level unless recursive); the directories
    listed are appended to ``walked``."""
    if not recursive:
        try:
            with os.scandir(top) as it:
                names = [e.name for e in it if e.is_file()]
        except OSError:
            return []
        walked.append(top)
        return names
    out = []
    for dirpath, _dirnames, filenames in os.walk(top):
        walked.append(dirpath)
        rel = dirpath[len(top) + 1:]
        out.extend(f"{rel}/{f}" if rel else f for f in filenames)
    return out


def match_files(root: str, patterns: list[str], walked: list[str] | None = None,
                unmatched: list[str] | None = None) -> list[str]:
    """Files under ``root`` (a directory path) that match any pattern; sorted, relative.
    The directories listed are appended to ``walked`` (so the answer can be cached), and the
    patterns that match no file to ``unmatched``."""
    walked = [] if walked is None else walked
    found: set[str] = set()
    for pattern in patterns:
        prefix, rest = _split(pattern)
        top = f"{root}/{prefix}" if prefix else root
        hit = False
        if not MAGIC.search(rest):
            if os.path.isfile(f"{top}/{rest}"):
                found.add(pattern)
                hit = True
            walked.append(top)  # a literal name appearing or vanishing changes its directory
        else:
            rx = regex(rest)
            for rel in _files_under(top, "/" in rest or "**" in rest, walked):
                if rx.match(rel) and _hidden_ok(rest, rel):
                    found.add(f"{prefix}/{rel}" if prefix else rel)
                    hit = True
        if not hit and unmatched is not None:
            unmatched.append(pattern)
    return sorted(found)


def link_targets(ws_root: str, root: str, rels: list[str]) -> list[str]:
    """Workspace-relative regular files that the symlinks among ``root/rel`` lead to, inside
    the workspace. An input symlink is hashed as its text: a command reading through it lists
    its target too, so editing the target reruns the command."""
    prefix = ws_root.rstrip("/") + "/"
    out: list[str] = []
    for rel in rels:
        path = f"{root}/{rel}"
        if not os.path.islink(path):
            continue
        real = os.path.realpath(path)
        if real.startswith(prefix) and os.path.isfile(real) and not os.path.islink(real):
            out.append(real[len(prefix):])
    return out
