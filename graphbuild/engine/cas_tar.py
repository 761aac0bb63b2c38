"""A command's output tree as one tar blob, for the remote cache: written from the CAS listing
(deterministic: the same tree gives the same bytes anywhere), and read back into the CAS
without touching the file system outside it, so a hostile entry cannot reach a host path."""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from typing import BinaryIO

from ..errors import BuildError
from .cas import CAS

CHUNK = 1 << 20


class BadTreeTar(BuildError):
    """A tar blob that is not a tree graphbuild wrote."""


def write_tree_tar(cas: CAS, digest: str, out: BinaryIO) -> None:
    """Write tree ``digest`` as a tar, entries in listing order, times and owners zeroed."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in cas.listing(digest):
            info = tarfile.TarInfo(entry[0])
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if entry[1] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, entry[2]
                tar.addfile(info)
            elif entry[1] == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry[2], 0o777
                tar.addfile(info)
            else:
                with cas.open_file(entry[3]) as fh:
                    fh.seek(0, io.SEEK_END)
                    info.size, info.mode = fh.tell(), entry[2]
                    fh.seek(0)
                    tar.addfile(info, fh)


def read_tree_tar(cas: CAS, src: BinaryIO) -> str:
    """Store the files of a tree tar in the CAS and return the digest of its listing (the
    caller compares it with the digest it expects)."""
    entries: list = []
    dirs = {""}
    try:
        with tarfile.open(fileobj=src, mode="r|") as tar:
            for member in tar:
                entries.append(_entry(cas, tar, member, dirs))
    except (tarfile.TarError, EOFError, UnicodeError) as exc:
        raise BadTreeTar(f"not a tree archive: {exc}") from None
    return cas.put_listing(entries)


def _entry(cas: CAS, tar: tarfile.TarFile, member: tarfile.TarInfo, dirs: set[str]) -> list:
    name = member.name
    parent = posixpath.dirname(name)
    if (not name or name.startswith("/") or posixpath.normpath(name) != name
            or ".." in name.split("/") or parent not in dirs):
        raise BadTreeTar(f"entry {name!r} is not inside the tree")
    if member.isdir():
        dirs.add(name)
        return [name, "dir", member.mode & 0o755 | 0o700]
    if member.issym():
        return [name, "link", member.linkname]
    if not member.isfile():
        raise BadTreeTar(f"entry {name!r} is neither a file, a directory nor a symlink")
    return [name, "file", 0o755 if member.mode & 0o111 else 0o644, _adopt(cas, tar, member)]


def _adopt(cas: CAS, tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    src = tar.extractfile(member)
    tmp = cas.new_temp()
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    name = "sha256:" + digest.hexdigest()
    cas.adopt(tmp, name)
    return name
