"""Content digests, canonical JSON, and the stat cache that lets a no-op build hash nothing."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import pickle
from pathlib import Path

CHUNK = 1 << 20


def canonical(obj) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, so equal data always hashes equal."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_json(obj) -> str:
    return digest_bytes(canonical(obj))


def digest_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def read_pickle(path: Path) -> dict:
    """A dict kept in a pickle file; a missing, truncated or foreign file is an empty cache."""
    try:
        with open(path, "rb") as fh, gc_paused():
            data = pickle.load(fh)
    except Exception:  # noqa: BLE001 - unpickling garbage raises almost anything
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection while a large, long-lived structure is made (a cache read,
    the analysis), and none of its objects scanned by later collections (gc.freeze). Each
    collection would otherwise walk every object made so far: a third of a large no-op build's
    CPU time. Objects still die by reference count as usual."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


def write_pickle(path: Path, data) -> None:
    """Write a pickle atomically (temp file + rename): a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


class StatCache:
    """(path) -> (size, mtime_ns, ctime_ns, inode, digest), kept in one pickle file.

    A file whose stat matches is not read again (doit's mtime-then-size-then-content ladder).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, tuple] = read_pickle(path)
        self.dirty = False
        self._by_file: dict[tuple, str] = {}  # one read per file, however many links lead to it
        self._this_run: dict[str, str] = {}  # one stat per path per run, however many nodes

    def digest_many(self, root: Path | str, rels) -> dict[str, str]:
        """The digest of each ``root/rel`` (content, plus the exec bit and a symlink's target,
        which change what COPY and commands produce); raises OSError when one is missing. One
        loop with its lookups bound: a no-op build runs it for every input file, and its cost
        is mostly the stat."""
        out: dict[str, str] = {}
        this_run, entries, stat = self._this_run, self.entries, os.stat
        for rel in rels:
            done = this_run.get(rel)
            if done is None:
                path = f"{root}/{rel}"
                st = stat(path)
                hit = entries.get(rel)
                if (hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns
                        and hit[2] == st.st_ctime_ns and hit[3] == st.st_ino):
                    done = hit[4]
                else:
                    done = self._read(path, rel, st)
                this_run[rel] = done
            out[rel] = done
        return out

    def _read(self, path: str, rel: str, st: os.stat_result) -> str:
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        file_key = (st.st_dev, *stamp)
        content = self._by_file.get(file_key) or digest_file(path)
        self._by_file[file_key] = content
        digest = content + ("+x" if st.st_mode & 0o111 else "")
        if os.path.islink(path):
            digest += "+link:" + os.readlink(path)
        self.entries[rel] = (*stamp, digest)
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.dirty:
            write_pickle(self.path, self.entries)
            self.dirty = False
