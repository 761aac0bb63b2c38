"""Paths inside an image's root directory, resolved as ``openat2(RESOLVE_IN_ROOT)`` does.

A hostile layer may hold symlinks to anywhere (``l -> /etc``, ``a -> ../../..``). Every lookup
here starts from a descriptor of the root and opens one component at a time relative to its
parent's descriptor, with ``O_NOFOLLOW``: a symlink met on the way is read and its target resolved
again inside the root (an absolute target starts over at the root, ``..`` never climbs above
it, as containerd's and BuildKit's ``fs.RootPath``). Operations then act on the last component
through its parent's descriptor, never following it. No host path below the root is ever handed
to the kernel, so whatever the layers planted, and whenever, nothing outside the root is reached.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_SYMLINKS = 40  # Linux's MAXSYMLINKS: more hops on one lookup is ELOOP
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def clean(path: str) -> list[str]:
    """The components of ``path`` taken from the root: ``.`` dropped, ``..`` never above it.

    ``/etc/x``, ``../../etc/x`` and ``a/../../etc/x`` all give ``["etc", "x"]``."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return parts


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


class Root:
    """An open root directory. Use as a context manager; every descriptor it hands out is
    a directory inside the root, reached without following a symlink out of it."""

    def __init__(self, path: Path | str) -> None:
        self.fd = os.open(path, _DIR_FLAGS)

    def __enter__(self) -> Root:  # noqa: PYI034 - not subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    @contextmanager
    def directory(self, parts: list[str], *, create: bool = False) -> Iterator[tuple[int, str]]:
        """(descriptor, resolved path below the root) of the directory ``parts`` names, symlinks
        on the way resolved inside the root. Missing directories are made 0755 when ``create``,
        else FileNotFoundError; a non-directory on the way is NotADirectoryError."""
        fd, resolved = self._walk(parts, create)
        try:
            yield fd, resolved
        finally:
            os.close(fd)

    def _walk(self, parts: list[str], create: bool) -> tuple[int, str]:
        todo = deque(parts)
        fds, names = [os.dup(self.fd)], []  # the resolved path so far, one descriptor a step
        hops = 0
        try:
            while todo:
                name = todo.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if names:
                        os.close(fds.pop())
                        names.pop()
                    continue
                try:
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
                    names.append(name)
                    continue
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(name, 0o755, dir_fd=fds[-1])
                    todo.appendleft(name)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                target = _link_target(fds[-1], name, join(*names, name))
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links",
                                  join(*parts))
                if target.startswith("/"):
                    for fd in fds[1:]:
                        os.close(fd)
                    del fds[1:], names[:]
                todo.extendleft(reversed(target.split("/")))
            return fds.pop(), "/".join(names)
        finally:
            for fd in fds:
                os.close(fd)


def _link_target(dir_fd: int, name: str, path: str) -> str:
    """The target of symlink ``name``; NotADirectoryError if it is something else."""
    if not stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
    return os.readlink(name, dir_fd=dir_fd)


# -- acting on the last component, through its parent's descriptor ----------------------------

def lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_dir(dir_fd: int, name: str) -> int:
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


@contextmanager
def subdir(dir_fd: int, name: str) -> Iterator[int]:
    """The descriptor of directory ``name`` below ``dir_fd`` (a symlink is not followed)."""
    fd = open_dir(dir_fd, name)
    try:
        yield fd
    finally:
        os.close(fd)


def create_file(dir_fd: int, name: str) -> int:
    """A new file's descriptor for writing (``name`` must not exist; a symlink is not followed)."""
    return os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)


def remove(dir_fd: int, name: str) -> None:
    """``rm -rf name``: symlinks are removed, never followed. Absent is fine."""
    st = lstat(dir_fd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        _remove_tree(dir_fd, name)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _remove_tree(parent_fd: int, name: str) -> None:
    # Iterative (a hostile tree may be deeper than Python's recursion limit); one open
    # descriptor per level being removed.
    frames: list[tuple[int, str, int, list[str]]] = []
    fd = open_dir(parent_fd, name)
    frames.append((parent_fd, name, fd, _unlink_non_dirs(fd)))
    try:
        while frames:
            parent, dname, fd, subdirs = frames[-1]
            if subdirs:
                sub = subdirs.pop()
                sub_fd = open_dir(fd, sub)
                frames.append((fd, sub, sub_fd, _unlink_non_dirs(sub_fd)))
                continue
            frames.pop()
            os.close(fd)
            os.rmdir(dname, dir_fd=parent)
    finally:
        for _, _, fd, _ in frames:
            os.close(fd)


def _unlink_non_dirs(dir_fd: int) -> list[str]:
    """Unlink every non-directory in ``dir_fd``; return the names of its subdirectories."""
    subdirs = []
    for name in os.listdir(dir_fd):
        st = lstat(dir_fd, name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            subdirs.append(name)
        elif st is not None:
            os.unlink(name, dir_fd=dir_fd)
    return subdirs
