"""A content-addressed store for command outputs: file blobs plus a tree listing per output.

A tree's digest is the digest of its canonical listing, so the same outputs give the same digest
wherever they were produced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ActionFailed, is_no_space, writing
from .hashing import canonical, digest_bytes, digest_file


class CAS:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.root / "blobs" / hexd[:2] / hexd

    def _tmp(self) -> Path:
        d = self.root / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _put_file(self, path: Path) -> str:
        digest = digest_file(path)
        dest = self._blob(digest)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._tmp())
            os.close(fd)
            with _removed_on_failure(tmp):
                shutil.copyfile(path, tmp)
            os.replace(tmp, dest)  # atomic: a reader never sees half a blob
        return digest

    def put_tree(self, directory: Path) -> str:
        """Store every file below ``directory``; return the tree digest."""
        return self.put_listing(self._entries(directory, self._put_file))

    def put_listing(self, entries: list) -> str:
        """Store a tree listing whose file blobs are stored; return the tree digest."""
        listing = canonical({"tree": entries})
        digest = digest_bytes(listing)
        tree = self._blob(digest)
        if not tree.exists():
            tree.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._tmp())
            with _removed_on_failure(tmp), os.fdopen(fd, "wb") as fh:
                fh.write(listing)
            os.replace(tmp, tree)
        return digest

    def tree_digest(self, directory: Path) -> str:
        """The digest ``put_tree`` would give ``directory`` (every file hashed, nothing stored):
        whether a materialised output still holds what was recorded."""
        return digest_bytes(canonical({"tree": self._entries(directory, digest_file)}))

    def new_temp(self) -> Path:
        """An empty temp file on the CAS's file system, for ``adopt``."""
        fd, tmp = tempfile.mkstemp(dir=self._tmp())
        os.close(fd)
        return Path(tmp)

    def adopt(self, tmp: Path, digest: str) -> None:
        """Move a temp file whose content hashes to ``digest`` (checked by the caller) in."""
        dest = self._blob(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)

    def listing(self, digest: str) -> list:
        """The entries of a stored tree; OSError or ValueError when it is missing or bad."""
        import json

        return json.loads(self._blob(digest).read_bytes())["tree"]

    def open_file(self, digest: str):
        return open(self._blob(digest), "rb")

    @staticmethod
    def _entries(directory: Path, file_digest) -> list:
        entries = []
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(directory)
            for name in sorted(dirnames + filenames):
                full = Path(dirpath) / name
                rel = (rel_dir / name).as_posix()
                try:
                    rel.encode()
                except UnicodeEncodeError:
                    raise ActionFailed(f"output name {rel!r} is not UTF-8; tree listings hold "
                                       "UTF-8 names only") from None
                st = full.lstat()
                if stat.S_ISLNK(st.st_mode):
                    entries.append([rel, "link", os.readlink(full)])
                elif stat.S_ISDIR(st.st_mode):
                    entries.append([rel, "dir", stat.S_IMODE(st.st_mode) & 0o755 | 0o700])
                elif not stat.S_ISREG(st.st_mode):  # reading a FIFO would block forever
                    raise ActionFailed(f"output {rel} is not a regular file, directory or "
                                       "symlink (a FIFO, socket or device cannot be stored)")
                else:
                    mode = 0o755 if st.st_mode & 0o111 else 0o644
                    entries.append([rel, "file", mode, file_digest(full)])
        return entries

    def has_tree(self, digest: str) -> bool:
        return self._blob(digest).exists()

    def restore_tree(self, digest: str, dest: Path, problems: list[str] | None = None) -> bool:
        """Materialise a stored tree at ``dest`` (atomically replacing it); False if incomplete
        or damaged. Every byte is hashed as it is copied: a blob that does not match its digest
        is removed (so the node rebuilds) and said in ``problems``."""
        import json

        try:
            listing = self._blob(digest).read_bytes()
            if digest_bytes(listing) != digest:
                raise self._damaged(digest, problems)
            entries = json.loads(listing)["tree"]
        except (OSError, ValueError, KeyError):
            return False
        staging = Path(tempfile.mkdtemp(dir=self._tmp()))
        try:
            for entry in entries:
                target = staging / entry[0]
                if entry[1] == "dir":
                    target.mkdir(parents=True, exist_ok=True)
                elif entry[1] == "link":
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(entry[2], target)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if _copy_hashing(self._blob(entry[3]), target) != entry[3]:
                        raise self._damaged(entry[3], problems)
                    os.chmod(target, entry[2])
        except (OSError, ValueError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if is_no_space(exc):
                raise  # a full disk, not a missing copy: said as such, the copy kept
            return False
        replace_dir(staging, dest)
        return True

    def _damaged(self, digest: str, problems: list[str] | None) -> ValueError:
        self._blob(digest).unlink(missing_ok=True)
        text = f"command output {digest} in {self.root} is corrupt (removed)"
        if problems is not None:
            problems.append(text)
        return ValueError(text)

    def verify_blob(self, digest: str) -> bool:
        """Whether a blob (file or tree listing) hashes to its name."""
        try:
            return digest_file(self._blob(digest)) == digest
        except OSError:
            return False

    def tree_blobs(self, digest: str) -> list[str] | None:
        """The file blobs a tree lists, or None when its listing is missing or unreadable."""
        import json

        try:
            entries = json.loads(self._blob(digest).read_bytes())["tree"]
            return [e[3] for e in entries if e[1] == "file"]
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def all_digests(self) -> set[str]:
        out = set()
        blobs = self.root / "blobs"
        if blobs.is_dir():
            for sub in blobs.iterdir():
                out.update("sha256:" + p.name for p in sub.iterdir())
        return out

    def referenced(self, trees: set[str]) -> set[str]:
        """The trees named plus every blob they list."""
        import json

        keep = set()
        for t in trees:
            try:
                entries = json.loads(self._blob(t).read_bytes())["tree"]
            except (OSError, ValueError, KeyError):
                continue
            keep.add(t)
            keep.update(e[3] for e in entries if e[1] == "file")
        return keep

    def remove(self, digest: str) -> int:
        p = self._blob(digest)
        size = p.stat().st_size
        p.unlink()
        return size


@contextlib.contextmanager
def _removed_on_failure(tmp: str) -> Iterator[None]:
    """A temp file that failed to fill is removed (on a full disk, it holds what is left) and
    named in a full disk's error."""
    try:
        with writing(tmp):
            yield
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _copy_hashing(src: Path, dest: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with writing(dest), open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(1 << 20):
            h.update(chunk)
            fout.write(chunk)
    return "sha256:" + h.hexdigest()


def out_path(cache_dir, node: str) -> str:
    """Where a command node's outputs are materialised: out/<package>/<name>@<platform>."""
    label, _, plat = node.partition("[")
    pkg, _, name = label[2:].partition(":")
    suffix = plat.rstrip("]").replace("/", "-") if plat else "host"
    return f"{cache_dir}/out/{pkg}/{name}@{suffix}" if pkg else f"{cache_dir}/out/{name}@{suffix}"


def replace_dir(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``, replacing what is there without a moment where dest is half made."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(dest.name + f".old{os.getpid()}")
        os.replace(dest, old)
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)
