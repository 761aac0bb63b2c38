"""Results of directory walks (package discovery, `srcs` globs), reused while every directory
walked still has the modification time it had: adding, removing or renaming an entry changes
its directory's mtime. A directory modified in the last two seconds is not trusted, since a
change within the same clock tick could leave its mtime unchanged (git's "racy" entries)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .hashing import read_pickle, write_pickle

RACY_NS = 2_000_000_000
MAX_ENTRIES = 50_000  # oldest-written entries go first beyond this


class TreeCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict = read_pickle(path)
        self.dirty = False

    def get(self, key):
        entry = self.data.get(key)
        if entry is None:
            return None
        dirs, result = entry
        try:
            if all(os.stat(d).st_mtime_ns == m for d, m in dirs):
                return result
        except OSError:
            pass
        return None

    def put(self, key, dirs: list[str], result) -> None:
        """Remember ``result`` for ``key`` unless a directory walked changed too recently."""
        try:
            stamps = [(d, os.stat(d).st_mtime_ns) for d in dirs]
        except OSError:
            return
        now = time.time_ns()
        if any(now - m < RACY_NS for _, m in stamps):
            self.data.pop(key, None)
            return
        self.data.pop(key, None)  # re-inserted last: the dict's order is the write order
        self.data[key] = (stamps, result)
        self.dirty = True
        if len(self.data) > MAX_ENTRIES:
            for old in list(self.data)[: len(self.data) - MAX_ENTRIES]:
                del self.data[old]

    def save(self) -> None:
        if self.dirty:
            write_pickle(self.path, self.data)
            self.dirty = False
