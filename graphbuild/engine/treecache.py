"""Results of directory walks and file reads (package discovery, `srcs` globs, what a
Dockerfile reaches), reused while every path they looked at still has the stat stamp it had:
adding, removing or renaming an entry changes its directory's mtime, and rewriting a file its
mtime, ctime, size or inode. A path modified in the last two seconds is not trusted, since a
change within the same clock tick could leave its stamp unchanged (git's "racy" entries).

A directory only passed through on the way to what was read (an ``Identity`` path) is stamped
by what it is, its inode and file type: replacing it (by another directory, or a symlink)
changes them, while entries added beside the way do not (the cache directory a first build
creates at the workspace root, a new package), and no clock tick is involved."""

from __future__ import annotations

import os
import stat
import time
from functools import lru_cache
from pathlib import Path

from .hashing import read_pickle, write_pickle

RACY_NS = 2_000_000_000
MAX_ENTRIES = 50_000  # oldest-written entries go first beyond this


class Identity(str):
    """A path to stamp by its identity (inode and file type, from lstat), not its times: a
    directory on the way to what was read, whose other entries do not matter. Its identity
    is taken when it is named, before what lies beneath is read: a directory replaced while
    the result was being worked out (a rename over it) is then not remembered with it."""

    seen: tuple | None

    def __new__(cls, path: str) -> Identity:  # noqa: PYI034 - typing.Self is 3.11+
        self = super().__new__(cls, path)
        try:
            self.seen = _identity(os.lstat(path))
        except OSError:
            self.seen = None
        return self


class TreeCache:
    def __init__(self, path: Path, max_entries: int = MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self.data: dict = read_pickle(path)
        self.dirty = False

    def get(self, key):
        entry = self.data.get(key)
        if entry is None:
            return None
        paths, result = entry
        try:
            if all((_identity(os.lstat(p)) if s[0] == IDENTITY else _stamp(os.stat(p))) == s
                   for p, s in paths):
                return result
        except OSError:
            pass
        return None

    def put(self, key, paths: list[str], result) -> None:
        """Remember ``result`` for ``key`` unless a path it looked at changed too recently."""
        full = {p for p in paths if not isinstance(p, Identity)}  # a full stamp wins
        now = time.time_ns()
        stamps = []
        try:
            for p in dict.fromkeys(paths):
                if p not in full:
                    now_is = _identity(os.lstat(p))
                    if now_is != getattr(p, "seen", now_is):  # replaced meanwhile
                        self.data.pop(key, None)
                        return
                    stamps.append((str(p), now_is))
                    continue
                s = _stamp(os.stat(p))
                # the last change (mtime, or ctime for a chmod or an mtime set back) must be
                # older than the coarsest clock tick a file system may have
                if now - max(s[0], s[1]) < RACY_NS:
                    self.data.pop(key, None)
                    return  # the first such path decides (a fresh clone has them all)
                stamps.append((p, s))
        except OSError:
            return
        self.data.pop(key, None)  # re-inserted last: the dict's order is the write order
        self.data[key] = (stamps, result)
        self.dirty = True
        if len(self.data) > self.max_entries:
            for old in list(self.data)[: len(self.data) - self.max_entries]:
                del self.data[old]

    def save(self) -> None:
        if self.dirty:
            write_pickle(self.path, self.data)
            self.dirty = False

    def save_quietly(self) -> None:
        """Save, where failing costs only the next run a recomputation (an unwritable home)."""
        try:
            self.save()
        except OSError:
            pass


@lru_cache(maxsize=1)
def user_cache() -> TreeCache | None:
    """The per-user cache (XDG_CACHE_HOME/graphbuild), shared by every workspace: what is
    known before a workspace's own cache directory is (installed rules, WORKSPACE.yaml)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        # few entries: test suites and CI create workspaces by the thousand, and every run
        # reads this file
        return TreeCache(Path(base) / "graphbuild" / "user-cache.pickle", max_entries=256)
    except OSError:
        return None


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino


IDENTITY = "identity"  # first field of an Identity path's stamp (a full stamp's is an int)


def _identity(st: os.stat_result) -> tuple[str, int, int, int]:
    return IDENTITY, st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)
