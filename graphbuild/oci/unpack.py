"""Unpacking image layers into a directory (for COPY --from an image or stage).

Layers come from base images, which may be hostile: every operation stays inside ``dest``.
Entry names are re-rooted (``/x`` and ``../x`` are ``x``), and every path is resolved inside the
root by ``rootpath`` (symlinks planted by any layer lead nowhere outside it), so whiteouts,
directories, files and hardlinks only ever touch the image's own tree. OCI whiteouts apply to
lower layers only, as the image spec says: entries of the same layer are kept.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError
from . import mediatypes as mt
from . import rootpath as rp

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class UnpackError(BuildError):
    """A layer that cannot be unpacked (corrupt, or a path no filesystem can hold)."""


def _open_layer(store, layer: dict) -> tarfile.TarFile:
    mode = "r:gz" if layer["mediaType"] in mt.GZIP_LAYER_TYPES else "r:"
    if layer["mediaType"] not in mt.GZIP_LAYER_TYPES | mt.TAR_LAYER_TYPES:
        mode = "r:*"
    return tarfile.open(fileobj=store.open_blob(layer["digest"]), mode=mode)


def _safe(name: str) -> str:
    """An entry name re-rooted: no leading ``/``, no ``.``, ``..`` never above the root."""
    return "/".join(rp.clean(name))


def _whiteout_target(base: str) -> str | None:
    """The name ``.wh.<name>`` hides; None for ``.wh.``, ``.wh..`` and ``.wh...``."""
    name = base[len(WHITEOUT):]
    return None if name in ("", ".", "..") else name


def unpack_layers(store, layers: list[dict], dest: Path) -> None:
    """Apply ``layers`` in order onto ``dest`` (a directory of ours, kept 0700: the layers'
    setuid files must not be reachable by other users of the host)."""
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    with rp.Root(dest) as root:
        for layer in layers:
            _apply_layer(store, layer, root)


# ValueError: a NUL in a name or link target (PAX records can carry one)
_READ_ERRORS = (OSError, ValueError, tarfile.TarError, EOFError, zlib.error)


def _members(store, layer: dict) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """(tar, member) of each entry of ``layer``, in order; a corrupt layer is a UnpackError."""
    member = None
    try:
        with _open_layer(store, layer) as tar:
            for member in tar:
                yield tar, member
    except _READ_ERRORS as exc:
        raise _layer_error(layer, member, exc) from None


def _layer_error(layer: dict, member: tarfile.TarInfo | None, exc: Exception) -> UnpackError:
    where = f" at {member.name!r}" if member is not None else ""
    what = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return UnpackError(f"cannot unpack layer {layer['digest']}{where}: {what}")


def _apply_layer(store, layer: dict, root: rp.Root) -> None:
    applied = _Applied()
    for tar, member in _members(store, layer):
        try:
            _apply(tar, member, root, applied)
        except _READ_ERRORS as exc:
            raise _layer_error(layer, member, exc) from None


@dataclass
class _Applied:
    """Resolved paths a layer has written so far, and their parents: its own whiteouts
    must spare them."""

    paths: set[str] = field(default_factory=set)
    parents: set[str] = field(default_factory=set)

    def add(self, path: str) -> None:
        self.paths.add(path)
        parent = path.rpartition("/")[0]
        while parent and parent not in self.parents:
            self.parents.add(parent)
            parent = parent.rpartition("/")[0]


def _apply(tar: tarfile.TarFile, member: tarfile.TarInfo, root: rp.Root,
           applied: _Applied) -> None:
    parts = rp.clean(member.name)
    if not parts:
        return  # the root itself: its metadata is not the layer's to set
    parent, base = parts[:-1], parts[-1]
    if base == OPAQUE or base.startswith(WHITEOUT):
        _whiteout(root, parent, base, applied)
        return
    with root.directory(parent, create=True) as (fd, resolved):
        applied.add(rp.join(resolved, base))
        if member.isdir():
            _make_dir(fd, base, member.mode)
        elif member.issym():
            rp.remove(fd, base)
            os.symlink(member.linkname, base, dir_fd=fd)
        elif member.islnk():
            rp.remove(fd, base)
            _hardlink(root, member.linkname, fd, base)
        elif member.isfile():
            rp.remove(fd, base)
            _write_file(tar, member, fd, base)
        else:
            rp.remove(fd, base)  # devices and FIFOs are not unpacked: COPY cannot copy them


def _whiteout(root: rp.Root, parent: list[str], base: str, applied: _Applied) -> None:
    name = None  # an opaque whiteout: everything in ``parent``
    if base != OPAQUE:
        name = _whiteout_target(base)
        if name is None:
            return
    try:
        with root.directory(parent) as (fd, resolved):
            if name is None:
                _clear(fd, resolved, applied)
                return
            path = rp.join(resolved, name)
            if path in applied.parents and _is_dir(fd, name):
                with rp.subdir(fd, name) as sub:
                    _clear(sub, path, applied)
            elif path not in applied.paths:
                rp.remove(fd, name)
    except (FileNotFoundError, NotADirectoryError):
        pass  # nothing there to hide


def _clear(fd: int, resolved: str, applied: _Applied) -> None:
    """Empty a directory (an opaque whiteout), sparing what this layer wrote."""
    for name in os.listdir(fd):
        path = rp.join(resolved, name)
        if path in applied.paths:
            continue
        if path in applied.parents and _is_dir(fd, name):
            with rp.subdir(fd, name) as sub:
                _clear(sub, path, applied)
        else:
            rp.remove(fd, name)


def _is_dir(fd: int, name: str) -> bool:
    st = rp.lstat(fd, name)
    return st is not None and stat.S_ISDIR(st.st_mode)


def _make_dir(fd: int, name: str, mode: int) -> None:
    """A directory, replacing whatever else is there (a symlink included, as containerd does);
    owner rwx kept so later layers and COPY can reach inside."""
    if not _is_dir(fd, name):
        rp.remove(fd, name)
        os.mkdir(name, 0o700, dir_fd=fd)
    with rp.subdir(fd, name) as sub:
        os.fchmod(sub, (mode & 0o7777) | 0o700)


def _hardlink(root: rp.Root, linkname: str, fd: int, base: str) -> None:
    """Link to another entry of the image, found inside the root; a target that is missing
    or a directory is skipped (nothing outside the image can be linked or copied in)."""
    parts = rp.clean(linkname)
    if not parts:
        return
    try:
        with root.directory(parts[:-1]) as (src_fd, _):
            st = rp.lstat(src_fd, parts[-1])
            if st is None or stat.S_ISDIR(st.st_mode):
                return
            os.link(parts[-1], base, src_dir_fd=src_fd, dst_dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int, base: str) -> None:
    with tar.extractfile(member) as src, os.fdopen(rp.create_file(fd, base), "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
        os.fchmod(out.fileno(), member.mode & 0o7777)


def read_file(store, layers: list[dict], path: str) -> bytes | None:
    """The content of ``path`` in the image made of ``layers`` (last layer wins), or None."""
    want = _safe(path)
    found = None
    for layer in layers:
        for tar, member in _members(store, layer):
            name = _safe(member.name)
            if name == want and member.isfile():
                try:
                    found = tar.extractfile(member).read()
                except _READ_ERRORS as exc:
                    raise _layer_error(layer, member, exc) from None
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
        for _, member in _members(store, layer):
            rel = _safe(member.name)
            if not rel:
                continue
            parent, _, base = rel.rpartition("/")
            if base == OPAQUE:
                drop_prefix(index, parent, keep_self=True)
                continue
            if base.startswith(WHITEOUT):
                name = _whiteout_target(base)
                if name:
                    drop_prefix(index, rp.join(parent, name))
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
