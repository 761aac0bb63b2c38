"""Content digests, canonical JSON, and the stat cache that lets a no-op build hash nothing."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import pickle
import stat
from pathlib import Path

from ..errors import writing

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


# Never follow a symlink, never wait on a FIFO's writer: inputs are opened only as regular files.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(
    os, "O_CLOEXEC", 0)


def digest_regular(path: str, st: os.stat_result) -> str:
    """The content digest of the regular file ``path`` whose lstat is ``st``. The file is opened
    without following a symlink or blocking, and must still be that regular file: a FIFO, device
    or symlink swapped in since the lstat is an error, never read."""
    fd = os.open(path, _OPEN_FLAGS)
    with open(fd, "rb", closefd=True) as fh:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise OSError(f"{path}: changed while it was being read")
        h = hashlib.sha256()
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def special_kind(mode: int) -> str | None:
    """What a non-regular, non-directory, non-symlink file is ("fifo", "socket", ...)."""
    for test, name in ((stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "char-device"), (stat.S_ISBLK, "block-device")):
        if test(mode):
            return name
    return None


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
    try:
        with writing(path), open(tmp, "wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not keep the half it wrote
        raise
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    """``write_pickle`` for a small JSON document people may read (sorted, indented)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class StatCache:
    """(path) -> (size, mtime_ns, ctime_ns, inode, digest), kept in one pickle file.

    A file whose stat matches is not read again (doit's mtime-then-size-then-content ladder).
    Paths are taken as they are (lstat): a symlink is its target's text, never the content it
    leads to, which may be outside the workspace, a FIFO or /dev/zero (whoever follows a link
    lists its target as an input of its own); a FIFO, socket or device is its type and mode,
    never opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, tuple] = read_pickle(path)
        self.dirty = False
        self._by_file: dict[tuple, str] = {}  # one read per file, however many links lead to it
        self._this_run: dict[str, str] = {}  # one stat per path per run, however many nodes

    def digest_many(self, root: Path | str, rels) -> dict[str, str]:
        """The digest of each ``root/rel`` (content plus the exec bit for a file, the target's
        text for a symlink, the type and mode for a special file); raises OSError when one is
        missing or is a directory. One
        loop with its lookups bound: a no-op build runs it for every input file, and its cost
        is mostly the stat."""
        out: dict[str, str] = {}
        this_run, entries, lstat = self._this_run, self.entries, os.lstat
        for rel in rels:
            done = this_run.get(rel)
            if done is None:
                path = f"{root}/{rel}"
                st = lstat(path)
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
        mode = st.st_mode
        if stat.S_ISREG(mode):
            file_key = (st.st_dev, *stamp)
            content = self._by_file.get(file_key) or digest_regular(path, st)
            self._by_file[file_key] = content
            digest = content + ("+x" if mode & 0o111 else "")
        elif stat.S_ISLNK(mode):
            digest = "link:" + os.readlink(path)
        elif stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{path}: a directory is not an input file")
        else:
            digest = f"{special_kind(mode)}:{stat.S_IMODE(mode):o}:{st.st_rdev}"
        self.entries[rel] = (*stamp, digest)
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.dirty:
            write_pickle(self.path, self.entries)
            self.dirty = False
