"""Reproducible, streaming OCI layers: tar → gzip → sha256, in one pass.

The tar is what Go's ``archive/tar`` writes by default (and so what BuildKit and Docker ship):
USTAR headers, with a PAX extended header only for what USTAR cannot hold (long or non-ASCII
names, huge sizes or ids). Headers are encoded here rather than by ``tarfile`` so the bytes cannot
change with the Python version. Everything that varies between machines is pinned: mtime,
uname/gname (empty), device numbers (0), entry order (sorted by path, parents first), missing
parent directories (0755, root), and the gzip header (no name, mtime 0, OS byte 255).

Compressed bytes also depend on the zlib build; two machines with the same zlib give the same
digest.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import struct
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Literal

from graphbuild.errors import writing

__all__ = [
    "CHUNK_SIZE",
    "COMPRESS_LEVEL",
    "FileSlice",
    "LayerEntry",
    "LayerError",
    "LayerResult",
    "clean_image_path",
    "prepare_entries",
    "source_date_epoch",
    "write_layer",
    "write_layer_to_dir",
    "write_layers_parallel",
]

CHUNK_SIZE = 1 << 20  # file reads and compressor feeds; bounds memory per layer
# The gzip (zlib) level of every layer graphbuild writes. Part of the layer bytes: changing it
# changes every image digest (bump the native backend's REVISION). Why this level:
# docs/benchmarks.md, "Images: cold build against buildah".
COMPRESS_LEVEL = 4
EntryKind = Literal["file", "dir", "symlink", "hardlink"]
_KINDS = ("file", "dir", "symlink", "hardlink")
_TYPEFLAGS = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}
_MAX_OCTAL_8 = 0o7777777
_MAX_OCTAL_12 = 0o77777777777
_BLOCK = 512


class LayerError(ValueError):
    """Entries that cannot form a layer, or a source file that changed while being read."""


@dataclass(frozen=True)
class FileSlice:
    """File content stored as ``size`` bytes at ``offset`` of ``path`` (a member of a tar)."""

    path: Path
    offset: int
    size: int


@dataclass(frozen=True)
class LayerEntry:
    """One path in a layer.

    ``path`` is in-image, relative, POSIX (a leading ``/`` or ``./`` is dropped). ``source`` is the
    content of a ``file``: a host path, inline bytes, or a slice of a host file. ``linkname`` is the
    target of a ``symlink`` (verbatim) or of a ``hardlink`` (another entry's path).
    """

    path: str
    kind: EntryKind = "file"
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    source: Path | bytes | FileSlice | None = field(default=None, repr=False)
    linkname: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise LayerError(f"{self.path}: unknown entry kind {self.kind!r}")
        object.__setattr__(self, "path", clean_image_path(self.path))
        if self.kind == "file" and self.source is None:
            raise LayerError(f"{self.path}: a file entry needs a source")
        if self.kind in ("symlink", "hardlink") and not self.linkname:
            raise LayerError(f"{self.path}: a {self.kind} entry needs a linkname")
        if self.uid < 0 or self.gid < 0:
            raise LayerError(f"{self.path}: negative uid/gid")


@dataclass(frozen=True)
class LayerResult:
    """``digest``: sha256 of the gzip blob; ``diff_id``: sha256 of the tar; ``size``: blob bytes."""

    digest: str
    diff_id: str
    size: int


def clean_image_path(path: str) -> str:
    """Normalise an in-image path to ``a/b`` form; reject ``..`` and the root itself."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise LayerError(f"{path!r}: '..' is not allowed in a layer path")
        parts.append(part)
    if not parts:
        raise LayerError(f"{path!r}: a layer entry cannot be the image root")
    return "/".join(parts)


def source_date_epoch(environ: dict[str, str] | None = None) -> int:
    """The mtime to stamp on layer entries: ``$SOURCE_DATE_EPOCH``, else 0."""
    value = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise LayerError(f"SOURCE_DATE_EPOCH must be a non-negative integer, not {value!r}")
    return int(value)


# --- ordering and normalisation ----------------------------------------------------------------


def _sort_key(path: str) -> tuple[bytes, ...]:
    # Component-wise byte order: the order of a sorted directory walk, parents first.
    return tuple(p.encode("utf-8", "surrogateescape") for p in path.split("/"))


def _parents(path: str) -> Iterable[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def _normal_mode(entry: LayerEntry) -> int:
    return 0o777 if entry.kind == "symlink" else entry.mode & 0o7777


def _hardlink_root(entry: LayerEntry, by_path: dict[str, LayerEntry]) -> LayerEntry:
    seen = {entry.path}
    current = entry
    while current.kind == "hardlink":
        target = by_path.get(clean_image_path(current.linkname))
        if target is None or target.path in seen:
            raise LayerError(
                f"{entry.path}: hard link target {current.linkname!r} is not in the layer"
            )
        if target.kind not in ("file", "hardlink"):
            raise LayerError(f"{entry.path}: hard link target {target.path!r} is a {target.kind}")
        seen.add(target.path)
        current = target
    return current


def _relink_hardlinks(by_path: dict[str, LayerEntry]) -> None:
    """Make the first path (in layer order) of each hard-link group carry the content.

    Readers need the target before the link; which name carries the data does not matter.
    """
    groups: dict[str, list[str]] = {}
    for entry in by_path.values():
        if entry.kind == "hardlink":
            root = _hardlink_root(entry, by_path)
            groups.setdefault(root.path, [root.path]).append(entry.path)
    for root_path, members in groups.items():
        root = by_path[root_path]
        first = min(members, key=_sort_key)
        by_path[first] = replace(root, path=first)
        for member in members:
            if member != first:
                by_path[member] = LayerEntry(
                    member, "hardlink", root.mode, root.uid, root.gid, linkname=first
                )


def prepare_entries(entries: Iterable[LayerEntry]) -> list[LayerEntry]:
    """The exact entry list a layer holds: last duplicate wins, missing parents added (0755,
    root), hard links ordered target-first, sorted parents before children."""
    by_path: dict[str, LayerEntry] = {}
    for entry in entries:
        by_path[entry.path] = entry
    for path in list(by_path):
        for parent in _parents(path):
            existing = by_path.get(parent)
            if existing is None:
                by_path[parent] = LayerEntry(parent, "dir", 0o755)
            elif existing.kind != "dir":
                raise LayerError(f"{path}: parent {parent!r} is a {existing.kind}, not a directory")
    _relink_hardlinks(by_path)
    return [by_path[p] for p in sorted(by_path, key=_sort_key)]


# --- tar encoding --------------------------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _ascii_field(text: str, width: int) -> bytes:
    return text.encode("ascii", "replace")[:width].ljust(width, b"\0")


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode("utf-8", "surrogateescape")
    length = len(body) + len(str(len(body)))
    if len(str(length)) > len(str(len(body))):
        length = len(body) + len(str(length))
    return str(length).encode("ascii") + body


def _needs_pax_name(name: str) -> bool:
    return not name.isascii() or len(name) > 100


def _ustar_header(
    name: str, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, link: str
) -> bytes:
    header = b"".join(
        (
            _ascii_field(name, 100),
            _octal(mode, 8),
            _octal(uid, 8),
            _octal(gid, 8),
            _octal(size, 12),
            _octal(mtime, 12),
            b" " * 8,  # checksum placeholder, counted as spaces
            typeflag,
            _ascii_field(link, 100),
            b"ustar\x0000",
            b"\0" * 64,  # uname, gname: empty so no host user names leak in
            _octal(0, 8),
            _octal(0, 8),
            b"\0" * 167,  # prefix (unused: long names go to PAX) and padding
        )
    )
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]


def _pad(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def _entry_header(entry: LayerEntry, size: int, mtime: int) -> bytes:
    """The header block(s) of one entry: a PAX ``x`` header first when USTAR cannot hold it."""
    name = entry.path + "/" if entry.kind == "dir" else entry.path
    link = entry.linkname if entry.kind in ("symlink", "hardlink") else ""
    pax: dict[str, str] = {}
    if _needs_pax_name(name):
        pax["path"] = name
    if link and _needs_pax_name(link):
        pax["linkpath"] = link
    uid, gid = entry.uid, entry.gid
    if uid > _MAX_OCTAL_8:
        pax["uid"], uid = str(uid), 0
    if gid > _MAX_OCTAL_8:
        pax["gid"], gid = str(gid), 0
    if size > _MAX_OCTAL_12:
        pax["size"], size_field = str(size), 0
    else:
        size_field = size
    header = _ustar_header(
        name, _TYPEFLAGS[entry.kind], _normal_mode(entry), uid, gid, size_field, mtime, link
    )
    if not pax:
        return header
    records = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
    head, tail = posixpath.split(name.rstrip("/"))
    pax_name = posixpath.join(head, "PaxHeaders.0", tail)
    pax_header = _ustar_header(pax_name, b"x", 0o644, 0, 0, len(records), mtime, "")
    return pax_header + records + _pad(len(records)) + header


# --- streaming sink ------------------------------------------------------------------------------


class _LayerSink:
    """Feeds tar bytes to sha256 (diff_id) and raw deflate, gzip-framed by hand so the header is
    fixed; the compressed bytes go to sha256 (digest) and the output file."""

    _GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown

    def __init__(self, out: BinaryIO, level: int) -> None:
        self._out = out
        self._tar_hash = hashlib.sha256()
        self._blob_hash = hashlib.sha256()
        self._crc = 0
        self._isize = 0
        self.size = 0
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8)
        xfl = {9: 2, 1: 4}.get(level, 0)  # RFC 1952 "extra flags", as Go's gzip sets them
        self._emit(self._GZIP_HEADER[:8] + bytes((xfl,)) + self._GZIP_HEADER[9:])

    def _emit(self, data: bytes) -> None:
        if data:
            self._blob_hash.update(data)
            self._out.write(data)
            self.size += len(data)

    def write(self, data: bytes) -> None:
        self._tar_hash.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self._isize += len(data)
        self._emit(self._deflate.compress(data))

    def finish(self) -> LayerResult:
        self._emit(self._deflate.flush())
        self._emit(struct.pack("<II", self._crc, self._isize & 0xFFFFFFFF))
        return LayerResult(
            digest="sha256:" + self._blob_hash.hexdigest(),
            diff_id="sha256:" + self._tar_hash.hexdigest(),
            size=self.size,
        )


def _content_size(entry: LayerEntry) -> int:
    source = entry.source
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, FileSlice):
        return source.size
    assert source is not None
    st = os.stat(source)
    if not stat.S_ISREG(st.st_mode):
        raise LayerError(f"{entry.path}: source {source} is not a regular file")
    return st.st_size


def _copy_exact(sink: _LayerSink, f: BinaryIO, size: int, what: str) -> None:
    remaining = size
    while remaining:
        chunk = f.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            raise LayerError(f"{what} shrank while being read")
        sink.write(chunk)
        remaining -= len(chunk)


def _write_content(sink: _LayerSink, entry: LayerEntry, size: int) -> None:
    source = entry.source
    if isinstance(source, bytes):
        sink.write(source)
    elif isinstance(source, FileSlice):
        with open(source.path, "rb") as f:
            f.seek(source.offset)
            _copy_exact(sink, f, size, f"{source.path} (at {source.offset})")
    else:
        assert source is not None
        with open(source, "rb") as f:
            _copy_exact(sink, f, size, str(source))
            if f.read(1):
                raise LayerError(f"{source} grew while being read")
    sink.write(_pad(size))


def write_layer(
    entries: Iterable[LayerEntry],
    out_file: BinaryIO,
    *,
    mtime: int = 0,
    compress_level: int = COMPRESS_LEVEL,
) -> LayerResult:
    """Write the gzipped tar of ``entries`` to ``out_file``; same entries, same bytes.

    File contents are streamed in CHUNK_SIZE pieces, so memory does not grow with the layer.
    """
    if not 0 <= mtime <= _MAX_OCTAL_12:
        raise LayerError(f"mtime {mtime} is out of range")
    sink = _LayerSink(out_file, compress_level)
    for entry in prepare_entries(entries):
        size = _content_size(entry) if entry.kind == "file" else 0
        sink.write(_entry_header(entry, size, mtime))
        if entry.kind == "file":
            _write_content(sink, entry, size)
    sink.write(b"\0" * (2 * _BLOCK))  # end of archive, as Go's tar.Writer.Close
    return sink.finish()


def write_layer_to_dir(
    entries: Iterable[LayerEntry],
    tmp_dir: str | Path,
    *,
    mtime: int = 0,
    compress_level: int = COMPRESS_LEVEL,
) -> tuple[LayerResult, Path]:
    """Write a layer to a new temp file in ``tmp_dir`` (for a store to rename into place)."""
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=".layer-", suffix=".tmp")
    path = Path(name)
    try:
        with writing(path), os.fdopen(fd, "wb") as f:
            result = write_layer(entries, f, mtime=mtime, compress_level=compress_level)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return result, path


def write_layers_parallel(
    jobs: Sequence[Iterable[LayerEntry]],
    tmp_dir: str | Path,
    max_workers: int | None = None,
    *,
    mtime: int = 0,
    compress_level: int = COMPRESS_LEVEL,
) -> list[tuple[LayerResult, Path]]:
    """Write several layers at once, results in ``jobs`` order.

    Threads suffice: zlib and hashlib release the GIL on large buffers. If any layer fails, the
    temp files of the others are removed and the first error is raised.
    """
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="layer") as pool:
        futures = [
            pool.submit(
                write_layer_to_dir, job, tmp_dir, mtime=mtime, compress_level=compress_level
            )
            for job in jobs
        ]
        errors = [f.exception() for f in futures]
    first_error = next((e for e in errors if e is not None), None)
    if first_error is None:
        return [f.result() for f in futures]
    for future, error in zip(futures, errors):
        if error is None:
            future.result()[1].unlink(missing_ok=True)
    raise first_error
