"""Docker/BuildKit ``COPY``/``ADD`` source semantics, as pure functions returning layer entries.

The rules follow BuildKit's Dockerfile frontend (``CopyInfo{FollowSymlinks, CopyDirContentsOnly,
AttemptUnpack: ADD, CreateDestPath, AllowWildcard, AllowEmptyWildcard}``) and fsutil's copier:

- a source is a path in the context; a wildcard (Go ``filepath.Match``) is resolved against the
  context as .dockerignore left it, and a wildcard matching nothing copies nothing (BuildKit's
  ``AllowEmptyWildcard``) while a plain path that does not exist is an error;
- a directory source copies its *contents*; a file goes to ``dest/<name>`` when ``dest`` names a
  directory (trailing ``/``, ``.``, or an existing directory of the base image), else to ``dest``;
- more than one source file needs a ``dest`` ending in ``/`` (Docker's rule and message);
- a relative ``dest`` is relative to ``WORKDIR``;
- ``--chmod`` applies to every copied file and directory; ``--chown`` to every copied entry *and*
  to the directories COPY creates on the way to ``dest`` (fsutil's ``MkdirAll(dest, 0755, chown)``);
  without ``--chown`` context files are owned by 0:0;
- the source path itself is followed when it is a symlink; symlinks inside copied directories are
  copied as symlinks;
- ``ADD`` of a local tar (plain, gzip, bzip2, xz; detected by content, not name) extracts it into
  ``dest`` keeping the archive's modes, and its owners unless ``--chown`` is given (BuildKit
  v0.23+ applies ``--chown`` to the members, not ``--chmod``).

graphbuild's own rules on top (docs/security.md): a source that is absolute, that climbs out with ``..``,
or that must follow a symlink leading out of the context is an error, where BuildKit would quietly
re-root it. Permission bits from the context lose group/other write (``CONTEXT_MODE_MASK``) so a
checkout under umask 002 and one under 022 give the same image.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from graphbuild.dockerfile.dockerignore import (
    DockerIgnore,
    DockerIgnoreError,
    compile_glob,
    go_clean,
    has_glob_meta,
)
from graphbuild.errors import UserError, writing
from graphbuild.oci.layers import CHUNK_SIZE, FileSlice, LayerEntry, prepare_entries

__all__ = [
    "CONTEXT_MODE_MASK",
    "TREE_MODE_MASK",
    "BaseLookup",
    "CopyError",
    "copy_from_tree",
    "copy_inputs",
    "parse_chmod",
    "resolve_copy",
    "resolve_dest",
]

CONTEXT_MODE_MASK = 0o7755  # drop g+w/o+w: they only record the umask of whoever checked out
TREE_MODE_MASK = 0o7777  # a stage filesystem is already what the image says
HEREDOC_MODE = 0o644  # BuildKit's llb.Mkfile mode for a heredoc source
MAX_SYMLINK_HOPS = 255

# In-image path (no leading "/") -> the base image's entry there, or None. Lets COPY keep the
# metadata of directories that exist already (/tmp stays 1777) and follow symlinks (/bin -> usr/bin).
BaseLookup = Callable[[str], LayerEntry | None]
OwnerLookup = Callable[[str], tuple[int, int]]


class CopyError(UserError):
    """A COPY/ADD that cannot be carried out; the caller adds the Dockerfile path and line."""


# --- sources and destination ---------------------------------------------------------------------


def _is_url(src: str) -> bool:
    return "://" in src or src.startswith("git@")


def _context_source(src: str, root: Path) -> str:
    """A context source, cleaned and checked: relative, and not climbing out with ``..``."""
    if _is_url(src):
        raise CopyError(f"{src!r}: URL sources are not handled by local COPY/ADD")
    if src.startswith("/"):
        raise CopyError(
            f"{src!r}: an absolute COPY/ADD source is outside the build context",
            hint=f"sources are relative to the build context ({root}); drop the leading '/'",
        )
    cleaned = go_clean(src)
    if cleaned == ".." or cleaned.startswith("../"):
        raise CopyError(
            f"{src!r} is outside the build context",
            hint=f"the build context is {root}; move the file into it or widen 'context'",
        )
    return "" if cleaned == "." else cleaned


def _tree_source(src: str) -> str:
    """A ``COPY --from`` source: absolute or relative, both from the stage's root."""
    return go_clean("/" + src).lstrip("/")


def resolve_dest(dest: str, workdir: str = "/") -> tuple[str, bool]:
    """(in-image path without leading ``/``, whether it names a directory by its spelling)."""
    if dest in ("", "."):
        dest = "./"  # BuildKit: "." and "" are the working directory, as a directory
    is_dir = dest.endswith(("/", "/."))
    if not dest.startswith("/"):
        dest = "/" + workdir.strip("/") + "/" + dest
    path = go_clean(dest).lstrip("/")
    return path, is_dir or not path


@dataclass(frozen=True)
class Chmod:
    """``--chmod``: octal bits (``755``) or, as BuildKit also takes, symbolic clauses
    (``u+x,g=r``, ``go-w,a+X``) applied to each source's own mode, as chmod(1) does."""

    octal: int | None
    clauses: tuple[tuple[str, str], ...] = ()  # (who, operations): "go", "-w"

    def apply(self, mode: int, is_dir: bool) -> int:
        if self.octal is not None:
            return self.octal
        for who, ops in self.clauses:
            mode = _apply_clause(mode, who or "a", ops, is_dir)
        return mode


_CLAUSE_RE = re.compile(r"([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)")
_OP_RE = re.compile(r"([-+=])([ugo]|[rwxXst]*)")
_SHIFT = {"u": 6, "g": 3, "o": 0}
_SPECIAL = {"u": 0o4000, "g": 0o2000, "o": 0}


def _apply_clause(mode: int, who: str, ops: str, is_dir: bool) -> int:
    targets = "ugo" if "a" in who else who
    for op, perms in _OP_RE.findall(ops):
        bits = 0
        if perms in _SHIFT:  # copy another class's bits
            rwx = (mode >> _SHIFT[perms]) & 7
            bits = sum(rwx << _SHIFT[t] for t in targets)
        else:
            rwx = (4 if "r" in perms else 0) | (2 if "w" in perms else 0) | (
                1 if "x" in perms or ("X" in perms and (is_dir or mode & 0o111)) else 0)
            bits = sum(rwx << _SHIFT[t] for t in targets)
            bits |= sum(_SPECIAL[t] for t in targets) if "s" in perms else 0
            bits |= 0o1000 if "t" in perms and "o" in targets else 0
        if op == "+":
            mode |= bits
        elif op == "-":
            mode &= ~bits
        else:
            clear = sum((7 << _SHIFT[t]) | _SPECIAL[t] for t in targets)
            mode = (mode & ~clear) | bits
    return mode & 0o7777


def parse_chmod(chmod: str) -> Chmod:
    """``--chmod`` as BuildKit reads it: octal permission bits (``755``, ``0644``, ``4755``) or
    symbolic clauses (``u+x,g=r``)."""
    text = chmod.strip()
    if text and all(c in "01234567" for c in text) and int(text, 8) <= 0o7777:
        return Chmod(int(text, 8))
    clauses = []
    for part in text.split(","):
        m = _CLAUSE_RE.fullmatch(part)
        if not m:
            raise CopyError(f"invalid --chmod value {chmod!r}",
                            hint="use octal bits such as 0755, or symbolic clauses such as "
                                 "u+x,g=r")
        clauses.append((m.group(1), m.group(2)))
    return Chmod(None, tuple(clauses))


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _name_key(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


# --- a source filesystem: the context (checked) or a stage tree (scoped) ------------------------


@dataclass
class _Found:
    name: str  # as written or matched, before symlinks: its basename names the copy
    rel: str  # resolved path below the root
    st: os.stat_result  # lstat of ``rel``
    links: tuple[str, ...] = ()  # symlinks followed to get there


class _Tree:
    """Paths below ``root``. A context (``scoped=False``) rejects symlinks leading out and hides
    what .dockerignore excludes; a stage tree (``scoped=True``) resolves symlinks as a chroot
    would, as BuildKit does for ``COPY --from``."""

    def __init__(self, root: Path, *, scoped: bool, ignore: DockerIgnore | None,
                 walked: list[str] | None = None) -> None:
        self.root = Path(root)
        self.walked = walked  # directories listed, for callers that cache the answer
        self.scoped = scoped
        self.ignore = ignore if ignore else None
        self.what = "the source stage" if scoped else "the build context"
        self._roots: set[str] | None = None  # see _real_roots
        self._visible_below: dict[str, bool] = {}

    def host(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def _real_roots(self) -> set[str]:
        """The root as given and as resolved: what an absolute symlink target may start with.
        Resolved on first need (a realpath stats every directory up to /): analysis makes a
        tree per COPY and platform, and few contexts hold absolute symlinks."""
        if self._roots is None:
            self._roots = {os.path.normpath(os.path.abspath(self.root)),
                           os.path.realpath(self.root)}
        return self._roots

    def listdir(self, rel: str) -> list[str]:
        if self.walked is not None:
            self.walked.append(str(self.host(rel)))
        return sorted(os.listdir(self.host(rel)), key=_name_key)

    # symlinks

    def _absolute_target(self, target: str, link: str, display: str) -> list[str]:
        if self.scoped:
            return target.split("/")
        target = os.path.normpath(target)
        for root in self._real_roots():
            if target == root or target.startswith(root.rstrip("/") + "/"):
                return target[len(root) :].split("/")
        raise CopyError(
            f"{display!r}: symlink {link!r} points to {target!r}, outside the build context"
        )

    def resolve(
        self, rel: str, *, follow_last: bool, display: str, links: list[str] | None = None
    ) -> str:
        """Resolve symlinks in ``rel`` (the last component only if ``follow_last``)."""
        todo = deque(p for p in rel.split("/") if p)
        done: list[str] = []
        hops = 0
        while todo:
            name = todo.popleft()
            if name == ".":
                continue
            if name == "..":
                if done:
                    done.pop()
                elif not self.scoped:
                    raise CopyError(
                        f"{display!r}: a symlink on its path leads out of the build context"
                    )
                continue
            candidate = _join(*done, name)
            st = _lstat(self.host(candidate)) if (todo or follow_last) else None
            if st is None or not stat.S_ISLNK(st.st_mode):
                done.append(name)
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise CopyError(f"{display!r}: too many levels of symbolic links")
            if links is not None:
                links.append(candidate)
            target = os.readlink(self.host(candidate))
            if target.startswith("/"):
                done = []
                parts = self._absolute_target(target, candidate, display)
            else:
                parts = target.split("/")
            todo.extendleft(reversed([p for p in parts if p]))
        return "/".join(done)

    # .dockerignore

    def visible(self, rel: str, st: os.stat_result) -> bool:
        """Whether the context holds ``rel``: not excluded, or a directory kept for re-included
        content below it (BuildKit sends such parents)."""
        if self.ignore is None or not rel or not self.ignore.matches(rel):
            return True
        return stat.S_ISDIR(st.st_mode) and self._has_visible_below(rel)

    def _has_visible_below(self, rel: str) -> bool:
        assert self.ignore is not None
        if not self.ignore.could_reinclude_below(rel):
            return False
        cached = self._visible_below.get(rel)
        if cached is None:
            cached = False
            for name in self.listdir(rel):
                child = _join(rel, name)
                st = _lstat(self.host(child))
                if st is not None and self.visible(child, st):
                    cached = True
                    break
            self._visible_below[rel] = cached
        return cached

    # finding sources

    def find(self, src: str, *, follow: bool, display: str) -> list[_Found]:
        parts = src.split("/") if src else []
        first_glob = next((i for i, p in enumerate(parts) if has_glob_meta(p)), None)
        if first_glob is None:
            return [self._found(src, follow=follow, display=display)]
        base = "/".join(parts[:first_glob])
        pattern = "/".join(parts[first_glob:])
        base_found = self._found(base, follow=True, display=display)
        if not stat.S_ISDIR(base_found.st.st_mode):
            raise CopyError(f"{display!r}: {base!r} is not a directory in {self.what}")
        try:
            regex = compile_glob(pattern)
        except DockerIgnoreError as exc:
            raise CopyError(f"{display!r}: {exc.message}") from None
        # "*", "?" never match "/", a class at most one: deeper paths cannot match.
        max_depth = pattern.count("/") + 1 + pattern.count("[")
        matches: list[str] = []
        self._glob(base_found.rel, "", regex, max_depth, matches)
        return [
            self._found(
                _join(base_found.rel, m), follow=follow, display=display, name=_join(base, m)
            )
            for m in matches
        ]

    def _found(self, src: str, *, follow: bool, display: str, name: str | None = None) -> _Found:
        links: list[str] = []
        rel = self.resolve(src, follow_last=follow, display=display, links=links)
        st = _lstat(self.host(rel))
        if st is None or not self.visible(rel, st):
            excluded = st is not None
            note = " (excluded by .dockerignore)" if excluded else ""
            raise CopyError(f"{display!r}: not found in {self.what}{note}")
        return _Found(src if name is None else name, rel, st, tuple(links))

    def _glob(
        self, top: str, sub: str, regex: re.Pattern[str], max_depth: int, out: list[str]
    ) -> None:
        """fsutil's resolveWildcards: a walk (symlinks not followed) matching paths below
        ``top`` against the pattern; a matching directory is not searched further."""
        depth = sub.count("/") + 1 if sub else 0
        for name in self.listdir(_join(top, sub)):
            child = _join(sub, name)
            st = _lstat(self.host(_join(top, child)))
            if st is None or not self.visible(_join(top, child), st):
                continue
            if regex.fullmatch(child):
                out.append(child)
            elif stat.S_ISDIR(st.st_mode) and depth + 1 < max_depth:
                self._glob(top, child, regex, max_depth, out)

    # walking a directory source

    def walk(self, top: str, exclude: DockerIgnore | None = None
             ) -> list[tuple[str, os.stat_result]]:
        """Everything the tree holds below ``top``, pre-order, sorted: (path below top, lstat).

        ``exclude``: COPY --exclude patterns, matched against paths below ``top`` (BuildKit
        matches them below each source directory, never against the source itself)."""
        out: list[tuple[str, os.stat_result]] = []
        info = self.ignore.match_in_walk(top, None)[1] if (self.ignore and top) else None
        self._walk(top, "", (info, None), exclude or None, out)
        return out

    def _walk(self, top: str, sub: str, infos: tuple, exclude: DockerIgnore | None,
              out: list[tuple[str, os.stat_result]]) -> None:
        for name in self.listdir(_join(top, sub)):
            child = _join(sub, name)
            rel = _join(top, child)
            st = _lstat(self.host(rel))
            if st is None:
                continue  # vanished while walking
            is_dir = stat.S_ISDIR(st.st_mode)
            # .dockerignore by the context path, --exclude by the path below the source
            hidden, child_infos = False, [None, None]
            for i, (matcher, path) in enumerate(((self.ignore, rel), (exclude, child))):
                if matcher is None:
                    continue
                excluded, child_infos[i] = matcher.match_in_walk(path, infos[i])
                if excluded and not (is_dir and matcher.could_reinclude_below(path)):
                    break  # pruned: nothing below can come back
                hidden = hidden or excluded
            else:
                mark = len(out)
                out.append((child, st))
                if is_dir:
                    self._walk(top, child, tuple(child_infos), exclude, out)
                if hidden and len(out) == mark + 1:
                    out.pop()  # an excluded directory is kept only for re-included content


def _is_fifo_or_device(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _special_file_error(rel: str, st: os.stat_result) -> CopyError:
    """A FIFO or device node met by COPY: never opened (reading it could block or never end)."""
    kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "device node"
    return CopyError(
        f"{rel!r} is a {kind}: the native backend copies regular files, directories and "
        "symlinks only",
        hint=f"exclude it in .dockerignore (or COPY --exclude), or build with backend: buildah, "
             f"which copies a {kind} as one",
    )


# --- building the entries ------------------------------------------------------------------------


@dataclass
class _Options:
    chmod: Chmod | None
    chown: tuple[int, int] | None
    owner_of: OwnerLookup
    mode_mask: int
    is_add: bool
    scratch_dir: Path | None
    base: BaseLookup | None
    exclude: DockerIgnore | None = None
    link: bool = False  # COPY --link: created directories are 0755 whatever --chmod says


@dataclass
class _Emitter:
    tree: _Tree
    opts: _Options
    entries: dict[str, LayerEntry] = field(default_factory=dict)

    def dir_entry(self, path: str, owner: tuple[int, int]) -> LayerEntry:
        """A directory on the way: the base image's own (metadata kept), else created 0755
        (``--chmod``'s mode when given: BuildKit v0.21+)."""
        existing = self.opts.base(path) if self.opts.base else None
        if existing is None:
            chmod = None if self.opts.link else self.opts.chmod
            mode = 0o755 if chmod is None else chmod.apply(0o755, True)
            return LayerEntry(path, "dir", mode, *owner)
        if existing.kind != "dir":
            raise CopyError(f"cannot copy into /{path}: it is a {existing.kind} in the image")
        return replace(existing, path=path)

    def ensure_dir(self, path: str, owner: tuple[int, int] | None = None) -> None:
        if path and path not in self.entries:
            self.entries[path] = self.dir_entry(path, owner or self.created_owner)

    @property
    def created_owner(self) -> tuple[int, int]:
        return self.opts.chown or (0, 0)

    def owner(self, rel: str) -> tuple[int, int]:
        return self.opts.chown or self.opts.owner_of(rel)

    def mode(self, st: os.stat_result) -> int:
        own = stat.S_IMODE(st.st_mode) & self.opts.mode_mask
        if self.opts.chmod is not None:
            return self.opts.chmod.apply(own, stat.S_ISDIR(st.st_mode))
        return own

    def copy_one(self, target: str, rel: str, st: os.stat_result) -> None:
        """One non-directory (or a directory met inside a walk) from the tree."""
        host = self.tree.host(rel)
        if stat.S_ISDIR(st.st_mode):
            entry = LayerEntry(target, "dir", self.mode(st), *self.owner(rel))
        elif stat.S_ISREG(st.st_mode):
            entry = LayerEntry(target, "file", self.mode(st), *self.owner(rel), source=host)
        elif stat.S_ISLNK(st.st_mode):  # dangling or looping ones too: it is never followed
            link = os.readlink(host)
            entry = LayerEntry(target, "symlink", 0o777, *self.owner(rel), linkname=link)
        elif stat.S_ISSOCK(st.st_mode):
            return  # a tar cannot hold one: buildah and Docker's archive skip sockets too
        else:
            raise _special_file_error(rel, st)
        self.entries[target] = entry

    def copy_dir_contents(self, target: str, rel: str) -> None:
        self.ensure_dir(target)
        for sub, st in self.tree.walk(rel, self.opts.exclude):
            self.copy_one(_join(target, sub), _join(rel, sub), st)

    def finish(self) -> list[LayerEntry]:
        for path in list(self.entries):
            parts = path.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                existing = self.entries.get(parent)
                if existing is None:
                    self.entries[parent] = self.dir_entry(parent, self.created_owner)
                elif existing.kind != "dir":
                    raise CopyError(f"cannot copy /{path}: /{parent} is not a directory")
        return prepare_entries(self.entries.values())


def _resolve_in_image(path: str, base: BaseLookup | None) -> str:
    """Follow the base image's symlinks along ``path`` (as BuildKit resolves the destination)."""
    if base is None:
        return path
    todo = deque(p for p in path.split("/") if p)
    done: list[str] = []
    hops = 0
    while todo:
        name = todo.popleft()
        if name == "." or (name == ".." and not done):
            continue
        if name == "..":
            done.pop()
            continue
        existing = base(_join(*done, name))
        if existing is None or existing.kind != "symlink":
            done.append(name)
            continue
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            raise CopyError(f"/{path}: too many levels of symbolic links in the image")
        if existing.linkname.startswith("/"):
            done = []
        todo.extendleft(reversed([p for p in existing.linkname.split("/") if p]))
    return "/".join(done)


# --- ADD of a local archive ----------------------------------------------------------------------

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError)


def _compression(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(6)
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def _open_decompressed(path: Path, kind: str | None) -> BinaryIO:
    if kind is None:
        return open(path, "rb")
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bzip2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    raise CopyError(
        f"{path.name}: {kind}-compressed archives are not supported by ADD here",
        hint="decompress it first, or use a gzip, bzip2 or xz archive",
    )


def _is_tar(path: Path, kind: str | None) -> bool:
    """BuildKit's isArchivePath: the (decompressed) stream starts with a valid tar header."""
    try:
        with _open_decompressed(path, kind) as f:
            block = f.read(512)
    except _DECOMPRESS_ERRORS:
        return False
    if len(block) < 512 or not block.strip(b"\0"):
        return False  # empty, short, or an end-of-archive marker: Go's reader fails too
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _decompressed_tar(path: Path, kind: str, scratch_dir: Path | None) -> Path:
    """A plain-tar copy of a compressed archive, so members become O(1) file slices. Named by
    the archive's digest, so repeated builds reuse it."""
    scratch = scratch_dir or Path(tempfile.gettempdir()) / "graphbuild-add"
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / f"add-{_sha256_file(path)}.tar"
    if out.exists():
        return out
    fd, tmp = tempfile.mkstemp(dir=scratch, prefix=".add-", suffix=".tmp")
    try:
        with writing(tmp), _open_decompressed(path, kind) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK_SIZE)
        os.replace(tmp, out)
    except _DECOMPRESS_ERRORS as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CopyError(f"{path.name}: cannot decompress archive: {exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _member_path(name: str, archive: str) -> str:
    """Docker's untar: clean, keep absolute names under dest, refuse ``..`` breakouts."""
    cleaned = go_clean(name)
    if cleaned == ".." or cleaned.startswith("../"):
        raise CopyError(
            f"{archive}: archive entry {name!r} would be extracted outside the destination"
        )
    return "" if cleaned in (".", "/") else cleaned.lstrip("/")


def _member_entry(
    em: _Emitter, dest: str, member: tarfile.TarInfo, tar: Path, archive: str
) -> LayerEntry | None:
    name = _member_path(member.name, archive)
    if not name:
        return None  # the archive's "./": dest exists already
    target = _join(dest, name)
    owner = em.opts.chown or (member.uid, member.gid)  # --chown applies (BuildKit v0.23+)
    meta = (member.mode & 0o7777, *owner)
    if member.isreg():
        if member.issparse():
            raise CopyError(f"{archive}: sparse archive entry {member.name!r} is not supported")
        return LayerEntry(
            target, "file", *meta, source=FileSlice(tar, member.offset_data, member.size)
        )
    if member.isdir():
        return LayerEntry(target, "dir", *meta)
    if member.issym():
        if not member.linkname.startswith("/"):
            resolved = go_clean(posixpath.join(posixpath.dirname(name), member.linkname))
            if resolved == ".." or resolved.startswith("../"):
                raise CopyError(
                    f"{archive}: symlink {member.name!r} -> {member.linkname!r} leads out of the destination"
                )
        return LayerEntry(target, "symlink", *meta, linkname=member.linkname)
    if member.islnk():
        link = _join(dest, _member_path(member.linkname, archive))
        if em.entries.get(link) is None or em.entries[link].kind not in ("file", "hardlink"):
            raise CopyError(
                f"{archive}: hard link {member.name!r} -> {member.linkname!r} has no target"
            )
        return LayerEntry(target, "hardlink", *meta, linkname=link)
    raise CopyError(f"{archive}: entry {member.name!r} is a device or FIFO; ADD cannot extract it")


def _add_archive(em: _Emitter, dest: str, host: Path, display: str) -> bool:
    """Extract ``host`` into ``dest`` if it is a tar archive; False to copy it as a file."""
    kind = _compression(host)
    if not _is_tar(host, kind):
        return False
    tar = host if kind is None else _decompressed_tar(host, kind, em.opts.scratch_dir)
    em.ensure_dir(dest)  # BuildKit: MkdirAll(dest, 0755, chown)
    try:
        with tarfile.open(tar, "r:", encoding="utf-8", errors="surrogateescape") as tf:
            for member in tf:
                entry = _member_entry(em, dest, member, tar, display)
                if entry is None:
                    continue
                for parent in list(_parents_below(dest, entry.path)):
                    em.ensure_dir(parent, owner=(0, 0))  # untar creates them as root, 0755
                em.entries[entry.path] = entry
    except tarfile.TarError as exc:
        raise CopyError(f"{display}: cannot read archive: {exc}") from None
    return True


def _parents_below(dest: str, path: str) -> Iterator[str]:
    parts = path.split("/")
    start = len(dest.split("/")) + 1 if dest else 1
    for i in range(start, len(parts)):
        yield "/".join(parts[:i])


# --- the public functions ------------------------------------------------------------------------


def check_many_into_one(count: int, dest: str, is_add: bool = False) -> None:
    """Docker's rule: several sources (as the build counts them) need a directory destination,
    spelled with a trailing slash."""
    if count > 1 and not resolve_dest(dest)[1]:
        cmd = "ADD" if is_add else "COPY"
        raise CopyError(
            f"When using {cmd} with more than one source file, the destination must be a "
            "directory and end with a /",
            hint=f"write the destination as {dest.rstrip('/')}/",
        )


def _excluder(patterns: Sequence[str]) -> DockerIgnore | None:
    """COPY --exclude patterns: .dockerignore's syntax and matching (patternmatcher)."""
    return DockerIgnore(patterns) if patterns else None


def _copy(
    tree: _Tree,
    found: list[_Found],
    dest: str,
    workdir: str,
    opts: _Options,
    inline: Sequence[tuple[str, bytes]],
    parents: Sequence[str] | None = None,
) -> list[LayerEntry]:
    """``parents``: for ``--parents``, the part of each found source's path to drop (what comes
    before a ``/./`` pivot); the rest of its path is kept under ``dest``."""
    dest_rel, dest_is_dir = resolve_dest(dest, workdir)
    check_many_into_one(len(found) + len(inline), dest, opts.is_add)
    target_dir = _resolve_in_image(dest_rel, opts.base)
    existing = opts.base(target_dir) if (opts.base and target_dir) else None
    into_dir = dest_is_dir or not target_dir or (existing is not None and existing.kind == "dir")
    em = _Emitter(tree, opts)
    for i, item in enumerate(found):
        if parents is not None:  # --parents: the source's path is kept below dest
            kept = go_clean(item.name).removeprefix(parents[i]).lstrip("/")
            _copy_kept(em, _join(target_dir, kept), item)
            continue
        if stat.S_ISDIR(item.st.st_mode):
            em.copy_dir_contents(target_dir, item.rel)
            continue
        is_file = stat.S_ISREG(item.st.st_mode)
        if opts.is_add and is_file and _add_archive(em, target_dir, tree.host(item.rel), item.name):
            continue
        name = posixpath.basename(item.name)
        em.copy_one(_join(target_dir, name) if into_dir else target_dir, item.rel, item.st)
    for name, data in inline:
        target = _join(target_dir, posixpath.basename(name)) if into_dir else target_dir
        mode = HEREDOC_MODE if opts.chmod is None else opts.chmod.apply(HEREDOC_MODE, False)
        em.entries[target] = LayerEntry(target, "file", mode, *em.created_owner, source=data)
    return em.finish()


def _copy_kept(em: _Emitter, target: str, item: _Found) -> None:
    if stat.S_ISDIR(item.st.st_mode):
        em.copy_dir_contents(target, item.rel)
    else:
        em.copy_one(target, item.rel, item.st)


def resolve_copy(
    context_root: Path,
    sources: Sequence[str],
    dest: str,
    *,
    workdir: str = "/",
    ignore: DockerIgnore | None = None,
    chmod: str | None = None,
    chown: tuple[int, int] | None = None,
    is_add: bool = False,
    follow_symlinks_inside: bool = True,
    inline: Sequence[tuple[str, bytes]] = (),
    base: BaseLookup | None = None,
    scratch_dir: Path | None = None,
    mode_mask: int = CONTEXT_MODE_MASK,
    exclude: Sequence[str] = (),
    link: bool = False,
    parents: bool = False,
) -> list[LayerEntry]:
    """The layer entries of ``COPY``/``ADD sources... dest`` from the build context.

    ``follow_symlinks_inside``: follow a source that is itself a symlink (BuildKit's
    ``FollowSymlinks``, always on for Dockerfiles); it must stay inside the context.
    ``inline``: heredoc sources as (name, content). ``base``: look-up of the base image's entries,
    to keep existing directories' metadata and follow its symlinks; None means an empty image.
    ``scratch_dir``: where ADD decompresses archives. ``exclude``: ``--exclude`` patterns.
    Raises CopyError.
    """
    tree = _Tree(context_root, scoped=False, ignore=ignore)
    found: list[_Found] = []
    dropped: list[str] = []  # --parents: what each found path loses (before a /./ pivot)
    for src in sources:
        cleaned = _context_source(src, tree.root)
        items = tree.find(cleaned, follow=follow_symlinks_inside, display=src)
        found.extend(items)
        pivot = go_clean(src.split("/./", 1)[0]) if "/./" in src else ""
        dropped.extend([pivot if pivot != "." else ""] * len(items))
    opts = _Options(
        chmod=parse_chmod(chmod) if chmod is not None else None,
        chown=chown,
        owner_of=lambda _rel: (0, 0),
        mode_mask=mode_mask,
        is_add=is_add,
        scratch_dir=scratch_dir,
        base=base,
        exclude=_excluder(exclude),
        link=link,
    )
    return _copy(tree, found, dest, workdir, opts, inline, dropped if parents else None)


def copy_from_tree(
    root: Path,
    sources: Sequence[str],
    dest: str,
    *,
    workdir: str = "/",
    chmod: str | None = None,
    chown: tuple[int, int] | None = None,
    owner_of: OwnerLookup | None = None,
    follow_symlinks_inside: bool = True,
    base: BaseLookup | None = None,
    mode_mask: int = TREE_MODE_MASK,
    exclude: Sequence[str] = (),
    link: bool = False,
    parents: bool = False,
) -> list[LayerEntry]:
    """``COPY --from``: the same rules over an unpacked stage or context filesystem at ``root``.

    Sources are taken from the root of that filesystem (absolute or not) and its symlinks
    resolve inside it. Without ``--chown`` BuildKit keeps the source's owners: the host owners of
    an unpacked tree are not the image's, so pass ``owner_of(rel) -> (uid, gid)``; the default
    is 0:0.
    """
    tree = _Tree(root, scoped=True, ignore=None)
    found: list[_Found] = []
    dropped: list[str] = []  # --parents: what each found path loses (before a /./ pivot)
    for src in sources:
        items = tree.find(_tree_source(src), follow=follow_symlinks_inside, display=src)
        found.extend(items)
        dropped.extend([_tree_source(src.split("/./", 1)[0]) if "/./" in src else ""]
                       * len(items))
    opts = _Options(
        chmod=parse_chmod(chmod) if chmod is not None else None,
        chown=chown,
        owner_of=owner_of or (lambda _rel: (0, 0)),
        mode_mask=mode_mask,
        is_add=False,
        scratch_dir=None,
        base=base,
        exclude=_excluder(exclude),
        link=link,
    )
    return _copy(tree, found, dest, workdir, opts, (), dropped if parents else None)


def copy_inputs(
    context_root: Path, sources: Sequence[str], ignore: DockerIgnore | None,
    walked: list[str] | None = None, exclude: Sequence[str] = (),
    specials: list[tuple[str, str]] | None = None,
) -> list[Path]:
    """Every context file a ``COPY``/``ADD`` of ``sources`` reads, sorted: regular files and
    symlinks (including symlinks followed on the way to a source), never directories.

    This is what the instruction can reach after .dockerignore, for cache keys. URL sources
    (``ADD <url>``, which other backends fetch) reach no context file and are skipped. Raises
    CopyError for the same bad sources as ``resolve_copy``. A FIFO or device node reached
    appends the (message, hint) native COPY would fail with to ``specials`` (other backends
    copy them).
    """
    tree = _Tree(context_root, scoped=False, ignore=ignore, walked=walked)
    excluder = _excluder(exclude)
    paths: set[Path] = set()
    for src in sources:
        if _is_url(src):
            continue
        for item in tree.find(_context_source(src, tree.root), follow=True, display=src):
            paths.update(tree.host(link) for link in item.links)
            found = [(item.rel, item.st)] if not stat.S_ISDIR(item.st.st_mode) else [
                (_join(item.rel, sub), st) for sub, st in tree.walk(item.rel, excluder)]
            for rel, st in found:
                if stat.S_ISDIR(st.st_mode):
                    continue
                paths.add(tree.host(rel))
                if specials is not None and _is_fifo_or_device(st.st_mode):
                    err = _special_file_error(rel, st)
                    specials.append((err.message, err.hint or ""))
    if walked is not None:  # a named file vanishing or appearing changes its directory
        walked.extend({str(p.parent) for p in paths} | {str(tree.root)})
    return sorted(paths, key=lambda p: _name_key(str(p)))
