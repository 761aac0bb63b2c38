"""The cache directory's run lock: ``<cache_dir>/.lock``, an ``flock`` on one file.

Builds (and anything else that writes the store or the caches) hold it shared, so any number run
together; ``cache gc``, ``cache clean`` and ``cache verify --repair`` hold it exclusive, so they
never delete what a live build has just written and not yet recorded (blobs, trees, ``$OUT``).

A holder that finds the lock file replaced (``cache clean`` removes the whole directory, lock file
last) reopens and locks again, so two processes never hold locks on two different files.
Whoever takes the lock exclusive may also reclaim what killed builds left behind
(:func:`reclaim_leftovers`): nothing else is running then.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path

LOCK_NAME = ".lock"


class RunLock:
    """One process's hold on the cache directory's lock; ``release`` (or the process ending)
    lets go."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.path = self.cache_dir / LOCK_NAME
        self._fd: int | None = None
        self.exclusive = False

    def acquire(self, exclusive: bool, *, waiting: str | None = None) -> RunLock:
        """Take the lock; when another process holds it the other way, print ``waiting`` once
        (if given) and wait for it."""
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        told = False
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting and not told:
                    print(f"graphbuild: {waiting}", file=sys.stderr, flush=True)
                    told = True
                fcntl.flock(fd, mode)
            if self._still_current(fd):
                self._fd, self.exclusive = fd, exclusive
                return self
            os.close(fd)  # the file was removed while we waited: lock the new one

    def try_exclusive(self) -> bool:
        """Upgrade-or-take the lock exclusive without waiting; False when anyone else holds it."""
        fd = self._fd if self._fd is not None else self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self._fd is None:
                os.close(fd)
            return False
        if not self._still_current(fd):
            os.close(fd)
            self._fd = None
            return False
        self._fd, self.exclusive = fd, True
        return True

    def share(self) -> None:
        """From exclusive to shared (other builds may start; gc waits until we are done)."""
        if self._fd is not None and self.exclusive:
            fcntl.flock(self._fd, fcntl.LOCK_SH)  # not atomic: a gc may run in between
            self.exclusive = False
            if not self._still_current(self._fd):  # ... a `cache clean`: lock the new file
                self.release()
                self.acquire(False)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __enter__(self):  # -> Self
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _open(self) -> int:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _still_current(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def shared(cache_dir: Path) -> RunLock:
    """The lock a build holds: shared; waits only while gc, clean or a repair runs. A build
    that finds itself alone first reclaims what killed builds left behind."""
    lock = RunLock(cache_dir)
    if lock.try_exclusive():
        reclaim_leftovers(Path(cache_dir))
        lock.share()
        return lock
    return lock.acquire(False, waiting="waiting for `graphbuild cache` (gc, clean or verify "
                                       f"--repair) to finish with {cache_dir}")


def exclusive(cache_dir: Path, what: str) -> RunLock:
    """The lock gc, clean and repairs hold: waits (saying so) until no build is running."""
    return RunLock(cache_dir).acquire(
        True, waiting=f"{what}: waiting for running builds to finish with {cache_dir}")


def leftovers(cache_dir: Path) -> list[Path]:
    """Temp files and directories only a live build may be using: actions' scratch directories,
    the CAS's and the store's partial writes."""
    found: list[Path] = []
    for parent in (cache_dir / "tmp", cache_dir / "cas" / "tmp", cache_dir / "oci" / ".tmp"):
        try:
            found += [parent / name for name in os.listdir(parent)]
        except OSError:
            continue
    return found


def reclaim_leftovers(cache_dir: Path) -> tuple[int, int]:
    """Delete :func:`leftovers`; call only holding the lock exclusive. Returns (count, bytes)."""
    count = freed = 0
    for path in leftovers(cache_dir):
        try:
            if path.is_dir() and not path.is_symlink():
                size = sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
                shutil.rmtree(path, ignore_errors=True)
            else:
                size = path.lstat().st_size
                path.unlink()
        except OSError:
            continue
        count += 1
        freed += size
    return count, freed


_held: dict[Path, RunLock] = {}


def hold(cache_dir: Path) -> None:
    """Hold the shared lock until :func:`release_all` (the end of the command): for commands
    that read the store and may add to it (inspect, export, sbom, load)."""
    key = Path(cache_dir)
    if key not in _held:
        _held[key] = shared(key)


def release_all() -> None:
    while _held:
        _held.popitem()[1].release()
