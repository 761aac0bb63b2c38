"""Checking what the store holds: cheap checks on every use, digests whenever bytes are read.

- :class:`VerifyingReader` is what :meth:`Store.open_blob` returns: it hashes what is read, and
  when the last byte has been read, a blob that does not hash to its name is removed from the
  store and :class:`BlobCorrupt` raised (a reader never hands on a corrupt blob as good, and the
  next build, finding it missing, rebuilds or re-pulls it).
- :func:`check_closure` is the no-op check of a cached image: every blob it reaches is present
  with the size its descriptor gives. Which blobs an image reaches is remembered by its digest
  (the manifests are read, and hashed, once), so a no-op stats files and parses nothing.
- :func:`verify_closure` hashes every blob an image reaches, once per process: for images that
  a build reads as an input.
"""

from __future__ import annotations

import hashlib
import os
from typing import IO

from graphbuild.oci import mediatypes as mt
from graphbuild.oci.store import CHUNK, BlobCorrupt, BlobNotFound, check_digest

TAIL_CHECK = 1 << 20  # a reader that stops this close to the end: read the rest to verify


class VerifyingReader:
    """A read-only blob file that hashes as it is read (sequentially; a seek to the start begins
    again, a forward seek reads through, any other seek gives up verifying)."""

    mode = "rb"

    def __init__(self, store, digest: str, f: IO[bytes]) -> None:
        self._store = store
        self._digest = digest
        self._f = f
        self.name = f.name
        self._size = os.fstat(f.fileno()).st_size
        self._hash = hashlib.sha256()
        self._pos = 0
        self._hashing = True
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._hashing:
            self._hash.update(data)
        self._pos += len(data)
        if self._pos >= self._size:
            self._check()
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = {os.SEEK_SET: offset, os.SEEK_CUR: self._pos + offset,
                  os.SEEK_END: self._size + offset}[whence]
        if target == self._pos:
            return target
        if target == 0:
            self._f.seek(0)
            self._hash, self._pos, self._hashing = hashlib.sha256(), 0, True
            return 0
        if target > self._pos and self._hashing:
            while self._pos < min(target, self._size):
                if not self.read(min(CHUNK, target - self._pos)):
                    break
            return self._f.seek(target)
        self._hashing = False  # random access: whoever reads so must check some other way
        self._pos = self._f.seek(target)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def fileno(self) -> int:
        return self._f.fileno()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self, *, verify: bool = True) -> None:
        """Close; a reader that stopped within TAIL_CHECK of the end (a tar's padding, a gzip
        trailer) reads the rest first, so the blob is still verified."""
        try:
            if verify and self._hashing and not self._checked and \
                    0 < self._size - self._pos <= TAIL_CHECK:
                while self.read(CHUNK):
                    pass
        finally:
            self._f.close()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def __enter__(self):  # -> Self
        return self

    def __exit__(self, exc_type, *rest) -> None:
        self.close(verify=exc_type is None)

    def _check(self) -> None:
        if self._checked or not self._hashing:
            return
        self._checked = True
        actual = "sha256:" + self._hash.hexdigest()
        if actual == self._digest:
            self._store.verified.add(self._digest)
            return
        raise corrupt(self._store, self._digest, f"its content hashes to {actual}")


def corrupt(store, digest: str, why: str) -> BlobCorrupt:
    """Remove a corrupt blob (so the next build rebuilds or re-pulls it) and say so."""
    quarantine(store, digest)
    return BlobCorrupt(f"blob {digest} in the store {store.root} is corrupt ({why}); it was "
                       "removed: run the build again to rebuild it")


def quarantine(store, digest: str) -> None:
    if not store.remove_corrupt:  # `cache verify` without --repair only looks
        return
    try:
        store.blob_path(digest).unlink()
    except FileNotFoundError:
        pass
    store.verified.discard(digest)
    store.forget_closures(digest)


def check_blob(store, digest: str, size: int | None = None) -> str | None:
    """What is wrong with a blob, from one stat (missing, or not ``size`` bytes); None if fine.
    A blob this process found absent and recorded as remote-only needs no stat: a remote
    hit's no-op check looks at thousands."""
    record = store.written_record(digest)
    if record is not None and (size is None or int(record["size"]) == size):
        return None
    try:
        actual = os.stat(f"{store._blobs_str}/{check_digest(digest)[7:]}").st_size
    except FileNotFoundError:
        record = store.record_of_absent(digest)  # a remote cache hit's layer: fetched when read
        if record is not None and (size is None or int(record["size"]) == size):
            return None
        return f"blob {digest} is missing"
    if size is not None and actual != size:
        return f"blob {digest} has {actual} bytes, its descriptor says {size}"
    return None


def closure(store, descriptor: dict) -> list[tuple[str, int | None]]:
    """(digest, size) of ``descriptor`` and everything it reaches; the manifests and indexes
    read on the way are verified. Remembered by digest. Raises BlobNotFound / BlobCorrupt."""
    digest = check_digest(descriptor["digest"])
    listing = store.closures.get(digest)
    if listing is None:
        listing = []
        _collect(store, descriptor, set(), listing)
        store.remember_closure(digest, listing)
    return listing


def _collect(store, desc: dict, seen: set[str], out: list) -> None:
    digest = check_digest(desc["digest"])
    if digest in seen:
        return
    seen.add(digest)
    out.append((digest, desc.get("size")))
    media_type = desc.get("mediaType")
    if not (mt.is_index(media_type) or mt.is_manifest(media_type)):
        return
    problem = check_blob(store, digest, desc.get("size"))
    if problem:
        raise BlobNotFound(problem) if "missing" in problem else corrupt(store, digest, problem)
    doc = store.peek_json(digest)  # hashed as read; a remote-only one is not written
    children = doc.get("manifests", []) if mt.is_index(media_type) else \
        [doc["config"], *doc.get("layers", [])]
    for child in children:
        _collect(store, child, seen, out)


def check_closure(store, descriptor: dict) -> list[str]:
    """What is missing or the wrong size in what ``descriptor`` reaches (empty: all present)."""
    try:
        listing = closure(store, descriptor)
    except (BlobNotFound, BlobCorrupt) as exc:
        return [str(exc)]
    except (ValueError, KeyError, TypeError) as exc:  # a manifest that is not one
        return [f"image {descriptor.get('digest')} cannot be read: {exc}"]
    problems = []
    for digest, size in listing:
        problem = check_blob(store, digest, size)
        if problem:
            problems.append(problem)
            if "missing" not in problem:
                quarantine(store, digest)  # the wrong size: so it is written again, not reused
    return problems


def verify_closure(store, descriptor: dict) -> None:
    """Hash every blob ``descriptor`` reaches (once per process); raise BlobCorrupt or
    BlobNotFound for the first bad one, removing it from the store."""
    for digest, size in closure(store, descriptor):
        if digest in store.verified or not store.has_blob(digest) and \
                store.remote_record(digest) is not None:  # checked when it is fetched
            continue
        problem = check_blob(store, digest, size)
        if problem:
            if "missing" in problem:
                store.forget_closures(digest)
                raise BlobNotFound(problem)
            raise corrupt(store, digest, problem)
        with store.open_blob(digest) as f:
            while f.read(CHUNK):
                pass
