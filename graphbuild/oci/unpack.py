"""Unpacking image layers into a directory (for COPY --from an image or stage, and user lookup).

Entries are sanitised (no absolute paths, no `..`, no links leading out) and OCI whiteouts applied.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from . import mediatypes as mt

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def _open_layer(store, layer: dict) -> tarfile.TarFile:
    mode = "r:gz" if layer["mediaType"] in mt.GZIP_LAYER_TYPES else "r:"
    if layer["mediaType"] not in mt.GZIP_LAYER_TYPES | mt.TAR_LAYER_TYPES:
        mode = "r:*"
    return tarfile.open(fileobj=store.open_blob(layer["digest"]), mode=mode)


def _safe(name: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def unpack_layers(store, layers: list[dict], dest: Path) -> None:
    """Apply ``layers`` in order onto ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        with _open_layer(store, layer) as tar:
            for member in tar:
                _apply(tar, member, dest)


def _apply(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    rel = _safe(member.name)
    if not rel:
        return
    parent, _, base = rel.rpartition("/")
    if base == OPAQUE:
        d = dest / parent
        if d.is_dir():
            for child in d.iterdir():
                _remove(child)
        return
    if base.startswith(WHITEOUT):
        _remove(dest / parent / base[len(WHITEOUT):])
        return
    target = dest / rel
    if os.path.realpath(target.parent).startswith(os.path.realpath(dest)) is False:
        return  # a symlinked parent would lead outside
    target.parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        if target.exists() and not target.is_dir():
            _remove(target)
        target.mkdir(exist_ok=True)
        os.chmod(target, (member.mode & 0o7777) | 0o700)
        return
    _remove(target)
    if member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        src = _safe(member.linkname)
        if src and (dest / src).is_file():
            shutil.copyfile(dest / src, target)
    elif member.isfile():
        with tar.extractfile(member) as fh, open(target, "wb") as out:
            shutil.copyfileobj(fh, out, 1 << 20)
        os.chmod(target, member.mode & 0o7777)


def read_file(store, layers: list[dict], path: str) -> bytes | None:
    """The content of ``path`` in the image made of ``layers`` (last layer wins), or None."""
    want = _safe(path)
    found = None
    for layer in layers:
        with _open_layer(store, layer) as tar:
            for member in tar:
                name = _safe(member.name)
                if name == want and member.isfile():
                    found = tar.extractfile(member).read()
                elif name and name.rpartition("/")[2] == WHITEOUT + want.rpartition("/")[2] \
                        and name.rpartition("/")[0] == want.rpartition("/")[0]:
                    found = None
    return found


def index_layers(store, layers: list[dict], index: dict | None = None) -> dict:
    """path -> LayerEntry (metadata only) of the filesystem ``layers`` make, whiteouts applied.

    COPY uses it to keep existing directories' metadata and follow the image's symlinks.
    """
    from .layers import LayerEntry

    index = {} if index is None else index
    kinds = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}
    for layer in layers:
        with _open_layer(store, layer) as tar:
            for member in tar:
                rel = _safe(member.name)
                if not rel:
                    continue
                parent, _, base = rel.rpartition("/")
                if base == OPAQUE or base.startswith(WHITEOUT):
                    gone = parent if base == OPAQUE else "/".join(
                        p for p in (parent, base[len(WHITEOUT):]) if p)
                    drop_prefix(index, gone, keep_self=base == OPAQUE)
                    continue
                kind = kinds.get(member.type, "file")
                # metadata only: COPY never reads a base entry's content (b"" stands in for it)
                index[rel] = LayerEntry(path=rel, kind=kind, mode=member.mode & 0o7777,
                                        uid=member.uid, gid=member.gid, linkname=member.linkname,
                                        source=b"" if kind == "file" else None)
    return index


def drop_prefix(index: dict, path: str, keep_self: bool = False) -> None:
    """Remove ``path`` (unless keep_self) and everything below it."""
    prefix = path + "/" if path else ""
    for key in [k for k in index if k.startswith(prefix) or (k == path and not keep_self)]:
        del index[key]
