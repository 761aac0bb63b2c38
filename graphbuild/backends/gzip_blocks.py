"""Gzip a large tar on every core, the way pigz does, with output that depends only on the input.

The input is cut into fixed 1 MiB blocks; each is deflated on its own thread (zlib releases the
GIL) with the 32 KiB before it as preset dictionary, ending in a sync flush (the last one in a
final block), so the concatenation is one ordinary deflate stream any gunzip reads, and nearly as
small as a single-threaded one. Block size, level and header are fixed, never the thread count:
the same tar gives the same bytes on any machine with the same zlib. Memory stays bounded: at
most a few blocks per worker are in flight.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = 1 << 20
WINDOW = 1 << 15
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"  # no name, mtime 0; then XFL and OS 255

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


@dataclass
class Gzipped:
    tar_digest: str  # sha256 of the input (a layer's diff_id)
    digest: str  # sha256 of the gzip output (the blob)
    size: int


def _executor() -> ThreadPoolExecutor:
    """One pool for the process: concurrent imports share the cores instead of multiplying."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                       thread_name_prefix="gzip")
        return _pool


def _deflate(data: bytes, zdict: bytes, last: bool, level: int) -> bytes:
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY,
                             zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8)
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def gzip_stream(src: BinaryIO, out: BinaryIO, level: int = 6) -> Gzipped:
    """Gzip ``src`` into ``out``; the digests of both sides and the output size."""
    pool = _executor()
    depth = 2 * (os.cpu_count() or 1)
    tar_hash, gz_hash = hashlib.sha256(), hashlib.sha256()
    size = 0
    crc = 0
    isize = 0

    def emit(data: bytes) -> None:
        nonlocal size
        gz_hash.update(data)
        out.write(data)
        size += len(data)

    xfl = {9: 2, 1: 4}.get(level, 0)
    emit(HEADER + bytes((xfl, 255)))
    pending: deque = deque()
    prev = b""
    block = src.read(BLOCK)
    while True:
        following = src.read(BLOCK) if block else b""
        last = not following
        tar_hash.update(block)
        crc = zlib.crc32(block, crc)
        isize += len(block)
        pending.append(pool.submit(_deflate, block, prev[-WINDOW:], last, level))
        while len(pending) > depth or (last and pending):
            emit(pending.popleft().result())
        if last:
            break
        prev, block = block, following
    emit(struct.pack("<II", crc, isize & 0xFFFFFFFF))
    return Gzipped("sha256:" + tar_hash.hexdigest(), "sha256:" + gz_hash.hexdigest(), size)
