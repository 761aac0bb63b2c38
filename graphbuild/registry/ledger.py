"""The writes of one `run --push`, shared by its registry clients: each (registry, repository,
digest) is written (uploaded, mounted, or PUT as a manifest by digest) once.

A registry storing on a file system rewrites a blob's or manifest's link in the repository on
every write of it, and a manifest PUT that checks its references in that moment is refused
(``MANIFEST_BLOB_UNKNOWN``, ``DIGEST_INVALID``). Within a run, two push nodes (an image's and
a manifest's over it, tagged in one repository) would otherwise write the same content at the
same time. With the ledger, the second waits for the first write and takes its result; it
also learns that the content is there without asking the registry again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from . import limits

Key = tuple[str, str, str]  # (registry, repository, digest)


class _Write:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.owner = threading.get_ident()
        self.declined = False  # the writer wrote nothing after all (a refused mount)
        self.info = None  # what the writer knows of what it wrote (a manifest's ManifestInfo)


class WriteLedger:
    """Thread-safe; one per run, set on the clients the run's push nodes use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes: dict[Key, _Write] = {}

    def __repr__(self) -> str:
        with self._lock:
            return f"WriteLedger({len(self._writes)} writes)"

    def written(self, key: Key) -> bool:
        """Whether this run has written ``key`` (waiting for a write under way on another
        thread)."""
        with self._lock:
            write = self._writes.get(key)
        if write is None:
            return False
        if not write.done.is_set() and write.owner != threading.get_ident():
            limits.wait(write.done)  # Stopped on the caller's deadline or a Ctrl-C
        return write.ok

    def info(self, key: Key):
        """What the writer of ``key`` recorded of it (``_Write.info``), once written."""
        with self._lock:
            write = self._writes.get(key)
        return write.info if write is not None and write.done.is_set() and write.ok else None

    @contextmanager
    def once(self, key: Key) -> Iterator[_Write | None]:
        """Yield a handle when the caller is to write ``key`` (it sets ``handle.declined`` when
        it wrote nothing after all); None when this run has written it already, after waiting
        for a write under way. A failed or declined write is forgotten: the next caller
        writes."""
        while True:
            with self._lock:
                write = self._writes.get(key)
                if write is None or (write.done.is_set() and not write.ok):
                    write = self._writes[key] = _Write()
                    break
            if write.done.is_set():  # written (a failed write was replaced above)
                yield None
                return
            if write.owner == threading.get_ident():  # nested on one thread: write again
                yield _Write()
                return
            limits.wait(write.done)
            if write.ok:
                yield None
                return
        try:
            yield write
            write.ok = not write.declined
        finally:
            write.done.set()
