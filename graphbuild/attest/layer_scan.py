"""What one image layer holds, for the SBOM: every file it adds with its digests, the package
databases it writes, and the Go build info of the binaries it adds.

A layer's scan depends on its bytes alone, so it is remembered by the layer's digest: a base
image's layers are read once, whatever number of images are built on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..oci import mediatypes as mt
from .gobuildinfo import read_buildinfo

CHUNK = 1 << 20
SCAN_VERSION = 1
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# Package databases, read whole (they are small).
_DB_FILES = ("var/lib/dpkg/status", "lib/apk/db/installed", "etc/os-release",
             "usr/lib/os-release")
_GO_MAX = 512 << 20  # binaries larger than this are not searched for build info


@dataclass
class LayerScan:
    files: list[list] = field(default_factory=list)  # [path, size, sha1, sha256]
    removed: list[str] = field(default_factory=list)  # whiteouts: a path, or "dir/" for opaque
    texts: dict[str, str] = field(default_factory=dict)  # package databases and METADATA
    go: dict[str, dict] = field(default_factory=dict)  # binary path -> GoBuildInfo as a dict


def scan_layer(store, layer: dict, memo_dir: Path | None = None) -> LayerScan:
    """The scan of one layer, from ``memo_dir`` when it was made before."""
    memo = memo_dir / f"{layer['digest'].split(':', 1)[1]}.v{SCAN_VERSION}.json" \
        if memo_dir else None
    if memo is not None and memo.exists():
        try:
            return LayerScan(**json.loads(memo.read_text()))
        except (ValueError, TypeError):
            pass  # a damaged memo is made again
    scan = _scan(store, layer)
    if memo is not None:
        _remember(memo, scan)
    return scan


def _remember(memo: Path, scan: LayerScan) -> None:
    """Write the memo atomically (several nodes may scan one layer at once); a memo that
    cannot be written is only a lost shortcut."""
    import tempfile

    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=memo.parent, prefix=".scan-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(asdict(scan), sort_keys=True))
        os.replace(tmp, memo)
    except OSError:
        pass


def _open(store, layer: dict) -> tarfile.TarFile:
    media = layer["mediaType"]
    mode = "r|gz" if media in mt.GZIP_LAYER_TYPES else "r|" if media in mt.TAR_LAYER_TYPES else "r|*"
    return tarfile.open(fileobj=store.open_blob(layer["digest"]), mode=mode)


def _clean(name: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return None if not parts or ".." in parts else "/".join(parts)


def _scan(store, layer: dict) -> LayerScan:
    scan = LayerScan()
    by_path: dict[str, list] = {}
    with _open(store, layer) as tar:
        for member in tar:
            path = _clean(member.name)
            if path is None:
                continue
            base = posixpath.basename(path)
            if base.startswith(WHITEOUT):
                parent = posixpath.dirname(path)
                scan.removed.append(f"{parent}/" if base == OPAQUE else
                                    posixpath.join(parent, base[len(WHITEOUT):]))
            elif member.isreg():
                row = _read_file(tar, member, path, scan)
                by_path[path] = row
                scan.files.append(row)
            elif member.islnk():
                target = by_path.get(_clean(member.linkname) or "")
                if target is not None:
                    scan.files.append([path, *target[1:]])
    scan.files.sort()
    return scan


def _read_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, scan: LayerScan) -> list:
    sha1, sha256 = hashlib.sha1(usedforsecurity=False), hashlib.sha256()
    keep = _wanted_text(path) or (member.mode & 0o111 and member.size <= _GO_MAX)
    chunks: list[bytes] = []
    f = tar.extractfile(member)
    while chunk := f.read(CHUNK):
        sha1.update(chunk)
        sha256.update(chunk)
        if keep:
            if not chunks and not _wanted_text(path) and not chunk.startswith(b"\x7fELF"):
                keep = False
            else:
                chunks.append(chunk)
    if keep:
        data = b"".join(chunks)
        if _wanted_text(path):
            scan.texts[path] = data.decode("utf-8", "replace")
        elif (info := read_buildinfo(data)) is not None:
            scan.go[path] = asdict(info)
    return [path, member.size, sha1.hexdigest(), sha256.hexdigest()]


def _wanted_text(path: str) -> bool:
    return (path in _DB_FILES or path.startswith("var/lib/dpkg/status.d/")
            or (path.endswith(".dist-info/METADATA") and "site-packages/" in path
                or path.endswith(".dist-info/METADATA") and "dist-packages/" in path))
