"""The content store: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/``).

Blobs are content-addressed and immutable: a writer streams into a temp file inside the store (same
filesystem), the sha256 is checked, then ``os.replace`` moves it into place, so a reader never sees
a partial blob. ``index.json`` names what was built: one entry per label and one per tag, changed
only under an exclusive ``flock`` with read-modify-write and an atomic replace, so concurrent builds
lose no entry. ``skopeo``, ``umoci`` and other OCI tools read the store directly.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from graphbuild.errors import BuildError, writing
from graphbuild.oci import mediatypes as mt
from graphbuild.oci.jsoncanon import canonical_json

CHUNK = 1 << 20
LAYOUT = {"imageLayoutVersion": "1.0.0"}
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# The OCI image-layout grammar for org.opencontainers.image.ref.name.
_REF_NAME_RE = re.compile(
    r"^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$"
)
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
RECORDS = "records.jsonl"  # the journal of remote-only records, in .remote/
# Keys of a descriptor worth recording in index.json (not e.g. a stray "data").
_DESCRIPTOR_KEYS = ("mediaType", "digest", "size", "platform", "artifactType", "urls")


class BlobCorrupt(BuildError):
    """A blob's content does not hash to the digest it was written or named under."""


class BlobNotFound(BuildError):
    """A descriptor names a blob that is not in the store."""


class InvalidDigest(BuildError, ValueError):
    """A digest that is not ``sha256:<64 hex>`` (``sha256:../../x``): a failed build, one
    message, and never a path."""


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:<64 lowercase hex>``; raise ValueError otherwise.

    Checked before any path is built from it, so a digest can never escape ``blobs/sha256``.
    """
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidDigest(f"not a sha256 digest: {digest!r}")
    return digest


def check_ref_name(name: str) -> str:
    """Return ``name`` if it is a valid ``org.opencontainers.image.ref.name``; else ValueError."""
    if not isinstance(name, str) or not _REF_NAME_RE.match(name):
        raise ValueError(f"not a valid image reference name: {name!r}")
    return name


def make_descriptor(media_type: str, digest: str, size: int, **extra: Any) -> dict:
    """A content descriptor dict; ``extra`` adds e.g. ``platform`` or ``annotations``."""
    return {"mediaType": media_type, "digest": check_digest(digest), "size": size, **extra}


class BlobWriter:
    """A file-like sink that hashes as it writes; used through :meth:`Store.blob_writer`.

    After the ``with`` block ends cleanly, ``digest`` and ``size`` describe the committed blob.
    """

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._file = fileobj
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest = ""

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class Store:
    """An OCI image layout rooted at ``root`` (normally ``<cache_dir>/oci``).

    Constructing a Store touches nothing; the layout files are created on the first write.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / "sha256"
        self._blobs_str = str(self._blobs)
        self._root_str = str(self.root)
        self._ready = False
        self._made: set[Path | str] = set()  # directories made by this Store
        self._records: dict[str, dict] = {}  # remote-only records, as read and written
        self._journal: tuple[int | None, int] | None = None  # (inode, bytes) of it read
        self._lock = threading.Lock()  # the remote-only records; the closures read once
        self._written: dict[str, dict] = {}  # the remote-only records this Store wrote
        self._journal_file: IO[bytes] | None = None  # appending to them
        # Fetches a remote-only blob into the store: ``fetch_remote(record, digest)``. Set by
        # whoever can reach the remote cache (engine.remote_cache.open_store); None elsewhere.
        self.fetch_remote: Callable[[dict, str], None] | None = None
        self.verified: set[str] = set()  # digests hashed (or written) by this process
        self.remove_corrupt = True  # a blob found corrupt is removed (so it is rebuilt)
        self._closures: dict[str, list] | None = None
        self._closures_dirty = False

    # -- layout --------------------------------------------------------------------------------

    def ensure_layout(self) -> None:
        """Create (or repair) the layout files once per Store; when they exist this costs two
        stats."""
        if self._ready:
            return
        if not (self.root / "index.json").is_file() or not (self.root / "oci-layout").is_file():
            self._blobs.mkdir(parents=True, exist_ok=True)
            self._create_once(self.root / "oci-layout", canonical_json(LAYOUT))
            self._create_once(self.root / "index.json", canonical_json(_empty_index()))
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._ready = True

    def _create_once(self, path: Path, data: bytes) -> None:
        # os.link never clobbers: a concurrent process may already have written (and filled)
        # index.json, and a plain replace would wipe its entries.
        tmp = self._write_temp(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def _write_temp(self, data: bytes) -> Path:
        fd, name = tempfile.mkstemp(dir=self.tmp_dir(), prefix="meta-")
        try:
            with writing(name), os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(name)  # a full disk must not keep the half it wrote
            raise
        os.chmod(name, 0o644)
        return Path(name)

    def tmp_dir(self) -> Path:
        """A directory for in-progress writes, on the store's filesystem so renames are atomic."""
        path = self.root / ".tmp"
        if path not in self._made:  # once per Store: the run lock keeps gc from removing it
            path.mkdir(parents=True, exist_ok=True)
            self._made.add(path)
        return path

    # -- reading blobs -------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (whether or not it exists)."""
        return self._blobs / check_digest(digest).split(":", 1)[1]

    def has_blob(self, digest: str) -> bool:
        # strings, not Paths: a no-op build asks this once per cached image node
        return os.path.isfile(f"{self._blobs_str}/{check_digest(digest)[7:]}")

    def holds_blobs(self) -> bool:
        """False when the store has no blob at all (``has_blob`` is False for any digest)."""
        return os.path.isdir(self._blobs_str)

    def open_blob(self, digest: str) -> IO[bytes]:
        """Open a blob for binary reading (fetching it first when it is remote-only), hashed
        as it is read: reading its last byte raises BlobCorrupt (and removes it) when it does
        not hash to ``digest``. BlobNotFound when absent."""
        from graphbuild.oci.verify import VerifyingReader

        try:
            f = open(self.blob_path(digest), "rb")  # noqa: SIM115 - the reader closes it
        except FileNotFoundError:
            if not self._fetch(digest):
                raise BlobNotFound(f"blob {digest} is not in the store {self.root}") from None
            f = open(self.blob_path(digest), "rb")  # noqa: SIM115 - the reader closes it
        return VerifyingReader(self, digest, f)  # type: ignore[return-value]

    def local_blob_path(self, digest: str) -> Path:
        """``blob_path`` of a blob that is there, fetched first when it is remote-only."""
        path = self.blob_path(digest)
        if not path.is_file() and not self._fetch(digest):
            raise BlobNotFound(f"blob {digest} is not in the store {self.root}")
        return path

    # -- checking (graphbuild.oci.verify) ------------------------------------------------------

    def check_blob(self, digest: str, size: int | None = None) -> str | None:
        """What is wrong with a blob from one stat (missing, wrong size), or None."""
        from graphbuild.oci.verify import check_blob

        return check_blob(self, digest, size)

    def check_closure(self, descriptor: dict) -> list[str]:
        """What is missing or the wrong size in everything ``descriptor`` reaches (the no-op
        check of a cached image); empty when all is there."""
        from graphbuild.oci.verify import check_closure

        return check_closure(self, descriptor)

    def verify_closure(self, descriptor: dict) -> None:
        """Hash everything ``descriptor`` reaches (once per process); BlobCorrupt or
        BlobNotFound for the first bad blob, which is removed."""
        from graphbuild.oci.verify import verify_closure

        verify_closure(self, descriptor)

    @property
    def closures(self) -> dict[str, list]:
        """image digest -> [(digest, size)] of all it reaches, kept in ``.closures.pickle``."""
        if self._closures is None:
            from graphbuild.engine.hashing import read_pickle

            with self._lock:  # builds on two threads: one dict, or an entry is lost
                if self._closures is None:
                    self._closures = read_pickle(self.root / ".closures.pickle")
        return self._closures

    def remember_closure(self, digest: str, listing: list) -> None:
        self.closures[digest] = listing
        self._closures_dirty = True

    def forget_closures(self, digest: str) -> None:
        """Forget every remembered closure that holds ``digest`` (a blob found bad)."""
        for key, listing in list(self.closures.items()):
            if key == digest or any(d == digest for d, _ in listing):
                self.closures.pop(key, None)
                self._closures_dirty = True

    def save(self) -> None:
        """Keep what this process learned for the next (call at the end of a build)."""
        self._close_journal()
        if self._closures_dirty and self.root.is_dir():
            from graphbuild.engine.hashing import write_pickle

            write_pickle(self.root / ".closures.pickle", self.closures)
            self._closures_dirty = False

    def blob_size(self, digest: str) -> int:
        """The size of a blob, stored or remote-only; raise BlobNotFound when absent."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            record = self.remote_record(digest)
            if record is None:
                raise BlobNotFound(f"blob {digest} is not in the store {self.root}") from None
            return int(record["size"])

    # -- remote-only blobs ---------------------------------------------------------------------
    # A remote cache hit writes no blob: the store keeps a record (registry, repository, size,
    # media type; for a manifest, config or attestation its bytes, already checked by digest)
    # of where each blob is, and puts it in place on the first read (one with bytes needs no
    # network; a layer is fetched). Other OCI tools reading the layout find those blobs only
    # once read, or after `run --download all`.
    # ``has_blob`` stays False for them. The records are lines of one append-only journal,
    # ``.remote/records.jsonl``: a hit appends its records in one write, so a fresh runner's
    # hundreds of hits create no file each. Appends (O_APPEND, one write each) do not
    # interleave between concurrent builds; a line torn by a crash does not parse and is
    # skipped, which makes its blobs missing: the next use reports them and rebuilds.
    # ``cache gc`` (alone, under the exclusive lock) rewrites the journal with what it keeps.
    # ``.remote/<hex>`` files, one record each, are what earlier versions wrote: still read.

    def mark_remote_many(self, items: list[tuple[dict, bytes | str | None]], registry: str,
                         repository: str) -> None:
        """Record blobs the caller found absent from the store as remote-only in
        ``registry``/``repository``: (descriptor, its bytes, or their base64 text, or None)
        each; bytes given must hash to the descriptor's digest (checked again when the blob is
        put in place). A blob recorded already at the same place (with its bytes, when these
        come with them) is left; one recorded elsewhere gets the new record, which the cache
        just checked (a later line wins). One journal line, one write."""
        blobs = []
        records = self._remote_records()
        for desc, data in items:
            digest = check_digest(desc["digest"])
            known = records.get(digest)
            if known is not None and (known["registry"], known["repository"]) == (
                    registry, repository) and ("data" in known or data is None):
                continue
            text = base64.b64encode(data).decode() if isinstance(data, bytes) else data
            blobs.append([digest, int(desc["size"]), desc.get("mediaType", ""), text])
        if not blobs:
            return
        # a leading newline ends a line torn by a crash or a full disk, so this one parses
        line = b"\n" + json.dumps({"registry": registry, "repository": repository,
                                   "blobs": blobs}, separators=(",", ":")).encode() + b"\n"
        self._append_record_line(line)
        with self._lock:  # only once written: a record the journal lacks is not taken as one
            for blob in blobs:
                self._records[blob[0]] = self._written[blob[0]] = _record(registry, repository,
                                                                          blob)

    def _append_record_line(self, line: bytes) -> None:
        """One write to the journal, kept open (appending) until ``save``. No fsync: a record
        lost to a power loss makes its blob missing, which a later use reports and rebuilds."""
        folder = f"{self._root_str}/.remote"
        path = f"{folder}/{RECORDS}"
        with self._lock, writing(path):
            if self._journal_file is None:
                if folder not in self._made:
                    os.makedirs(folder, exist_ok=True)
                    self._made.add(folder)
                self._journal_file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in save
            if self._journal_file.write(line) != len(line):  # a full disk: the cut line
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)  # does not parse

    def remote_record(self, digest: str) -> dict | None:
        """Where a remote-only blob is (None when it is in the store, or nowhere)."""
        if self.has_blob(digest):  # fetched since, or put there by a build
            return None
        return self.record_of_absent(digest)

    def written_record(self, digest: str) -> dict | None:
        """The remote-only record this Store wrote for ``digest`` (the blob was absent then)
        and has not fetched since: a no-op check takes the blob as there, with no stat."""
        return self._written.get(digest)

    def record_of_absent(self, digest: str) -> dict | None:
        """``remote_record`` of a blob the caller has just found absent from the store."""
        record = self._remote_records().get(digest)
        if record is None:  # perhaps recorded by another build since the journal was read
            record = self._refresh_records().get(digest) or self._read_record(digest)
        return record

    def _remote_records(self) -> dict[str, dict]:
        """digest -> record, as the journal held when last read (read once per Store)."""
        if self._journal is None:
            self._journal = (None, 0)
            return self._refresh_records()
        return self._records

    def _refresh_records(self) -> dict[str, dict]:
        """Read what was appended to the journal since it was last read (by another build
        meanwhile): all of it again when it was replaced (``cache gc``)."""
        path = f"{self._root_str}/.remote/{RECORDS}"
        with self._lock:
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    inode, offset = self._journal or (None, 0)
                    if inode != st.st_ino:
                        self._records, offset = {}, 0
                    if st.st_size > offset:
                        f.seek(offset)
                        chunk = f.read()
                        end = chunk.rfind(b"\n") + 1  # a line still being appended: later
                        for line in chunk[:end].splitlines():
                            _add_record(self._records, line)
                        offset += end
                    self._journal = (st.st_ino, offset)
            except FileNotFoundError:
                pass
            return self._records

    def _read_record(self, digest: str) -> dict | None:
        """An earlier version's ``.remote/<hex>`` file."""
        try:
            record = json.loads((self.root / ".remote" / check_digest(digest)[7:]).read_bytes())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and "size" in record else None

    def remote_digests(self) -> set[str]:
        """The blobs recorded as remote-only and not in the store."""
        folder = self.root / ".remote"
        if not folder.is_dir():
            return set()
        found = {"sha256:" + p.name for p in folder.iterdir() if _HEX_RE.fullmatch(p.name)}
        found.update(self._refresh_records())
        return {d for d in found if not self.has_blob(d)}

    def _fetch(self, digest: str) -> bool:
        """Fetch a remote-only blob into the store; False when it is not remote-only. True
        when it is there now: another thread (reading it too) may have just put it there."""
        record = self.remote_record(digest)
        if record is None:
            return self.has_blob(digest)
        if not self._put_recorded(record, digest):
            if self.fetch_remote is None:
                raise BlobNotFound(f"blob {digest} is only in the remote cache "
                                   f"{record['registry']}/{record['repository']}, and this "
                                   "command cannot reach it")
            self.fetch_remote(record, digest)
        (self.root / ".remote" / digest[7:]).unlink(missing_ok=True)  # an earlier version's
        self._written.pop(digest, None)  # in the store now: checked there
        return True

    def _put_recorded(self, record: dict, digest: str) -> bool:
        """Put a blob whose record holds its bytes in place (checked by digest); False when
        it holds none, or bytes that are not the blob's (then it is downloaded instead)."""
        data = _recorded_bytes(record, digest)
        if data is None:
            return False
        self.put_bytes(data, digest, sync=False)
        return True

    def _close_journal(self) -> None:
        with self._lock:
            if self._journal_file is not None:
                self._journal_file.close()
                self._journal_file = None

    def _rewrite_records(self, keep: set[str], dry_run: bool) -> int:
        """``gc``: keep only the records of ``keep`` (and of blobs not in the store); the
        number dropped. Earlier versions' ``.remote/<hex>`` files are folded in."""
        folder = self.root / ".remote"
        records = dict(self._refresh_records())
        legacy = [p for p in folder.iterdir() if _HEX_RE.fullmatch(p.name)] \
            if folder.is_dir() else []
        for p in legacy:
            record = self._read_record("sha256:" + p.name)
            if record is not None:
                records.setdefault("sha256:" + p.name, record)
        kept = {d: r for d, r in records.items() if d in keep and not self.has_blob(d)}
        dropped = len(records) - len(kept)
        if dry_run or (not dropped and not legacy):
            return dropped
        data = b"".join(json.dumps({"registry": r["registry"], "repository": r["repository"],
                                    "blobs": [[d, r["size"], r.get("mediaType", ""),
                                               r.get("data")]]},
                                   separators=(",", ":")).encode() + b"\n"
                        for d, r in kept.items())
        tmp = self._write_temp(data)
        self._close_journal()  # appends go to the new file
        os.replace(tmp, folder / RECORDS)
        for p in legacy:
            p.unlink(missing_ok=True)
        self._records, self._journal = kept, None
        return dropped

    def peek_json(self, digest: str) -> Any:
        """A manifest or index, parsed, writing nothing where it can: from the store (hashed
        as read), else from its remote-only record's bytes (checked by digest), else as
        ``read_json`` (which fetches it)."""
        if not self.has_blob(digest):
            doc = self._recorded_doc(digest)
            if doc is not None:
                return doc
        return self.read_json(digest)

    def _recorded_doc(self, digest: str) -> Any:
        """A remote-only blob parsed from its record's bytes, checked by digest; None when no
        record holds them."""
        record = self.remote_record(digest)
        data = _recorded_bytes(record, digest) if record is not None else None
        return None if data is None else json.loads(data)

    def read_bytes(self, digest: str) -> bytes:
        with self.open_blob(digest) as f:
            return f.read()

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read_bytes(digest))

    def verify_blob(self, digest: str) -> bool:
        """True if the blob exists and its content hashes to ``digest`` (it only looks)."""
        try:
            with open(self.blob_path(digest), "rb") as f:
                actual, _ = _hash_stream(f)
        except FileNotFoundError:
            return False
        return actual == digest

    # -- writing blobs -------------------------------------------------------------------------

    def add_file(
        self, tmp_path: Path | str, expected_digest: str | None = None, *, verified: bool = False
    ) -> tuple[str, int]:
        """Move a finished file (from :meth:`tmp_dir`) into the store, checking its sha256.

        On a mismatch with ``expected_digest`` the file is deleted and BlobCorrupt raised.

        ``verified=True`` is only for graphbuild's own writers that hashed exactly the bytes they
        wrote to ``tmp_path``, in this process (``oci.layers.write_layer_to_dir``): the file is
        not read again and ``expected_digest`` (required) is taken as its digest. Content that
        comes from anywhere else (a registry, an archive, another process) is always re-hashed.
        """
        tmp_path = Path(tmp_path)
        if verified:
            if expected_digest is None:
                raise ValueError("add_file(verified=True) needs the digest the writer computed")
            digest, size = check_digest(expected_digest), tmp_path.stat().st_size
        else:
            with open(tmp_path, "rb") as f:
                digest, size = _hash_stream(f)
        self._install(tmp_path, digest, expected_digest)
        return digest, size

    @contextlib.contextmanager
    def blob_writer(self, expected_digest: str | None = None, *,
                    sync: bool = True) -> Iterator[BlobWriter]:
        """Stream a blob in: ``with store.blob_writer() as w: w.write(...)``.

        Committed on a clean exit (``w.digest``, ``w.size`` are then set); on an exception the
        temp file is deleted and nothing enters the store. ``sync=False`` skips the fsync: for
        content that can be fetched again (a remote cache hit), where a blob torn by a power
        loss is caught by the size and digest checks on use.
        """
        if expected_digest is not None:
            check_digest(expected_digest)
        self.ensure_layout()
        fd, name = tempfile.mkstemp(dir=self.tmp_dir(), prefix="blob-")
        tmp = Path(name)
        try:
            with writing(tmp), os.fdopen(fd, "wb") as f:
                writer = BlobWriter(f)
                yield writer
                f.flush()
                if sync:
                    os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        writer.digest = "sha256:" + writer.hexdigest()
        self._install(tmp, writer.digest, expected_digest)

    def put_bytes(self, data: bytes, expected_digest: str | None = None, *,
                  sync: bool = True) -> tuple[str, int]:
        """Store ``data``; a blob already present is not rewritten unless it differs (damaged:
        a rebuild must not record an image over it). ``sync``: as for ``blob_writer``."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expected_digest is not None and check_digest(expected_digest) != digest:
            raise BlobCorrupt(f"content hashes to {digest}, expected {expected_digest}")
        if not self._holds(digest, data):
            self.ensure_layout()
            tmp = f"{self.tmp_dir()}/{digest[7:23]}.{os.getpid()}.{threading.get_ident()}"
            _write_file(tmp, data, 0o444, sync)  # read-only: blobs are immutable
            os.replace(tmp, f"{self._blobs_str}/{digest[7:]}")
            self.verified.add(digest)
        return digest, len(data)

    def _holds(self, digest: str, data: bytes) -> bool:
        """Whether the store's blob ``digest`` holds ``data``: the bytes are at hand, so a
        comparison (no hashing, no fsync) tells a good copy from one damaged in place."""
        if digest in self.verified:
            return self.has_blob(digest)
        try:
            with open(f"{self._blobs_str}/{digest[7:]}", "rb") as f:
                held = f.read(len(data) + 1)
        except OSError:
            return False
        if held != data:
            return False
        self.verified.add(digest)
        return True

    def put_json(self, obj: Any, media_type: str) -> dict:
        """Store ``obj`` as canonical JSON; return its descriptor ``{mediaType, digest, size}``."""
        digest, size = self.put_bytes(canonical_json(obj))
        return make_descriptor(media_type, digest, size)

    def _install(self, tmp: Path, digest: str, expected: str | None) -> None:
        if expected is not None and expected != digest:
            tmp.unlink(missing_ok=True)
            raise BlobCorrupt(f"content hashes to {digest}, expected {expected}")
        self.ensure_layout()
        os.chmod(tmp, 0o444)  # blobs are immutable; make accidental edits fail loudly
        # Replacing an existing blob is harmless (same bytes) and keeps concurrent writers simple.
        os.replace(tmp, self.blob_path(digest))
        self.verified.add(digest)

    # -- index.json ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.ensure_layout()
        with open(self.root / ".lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read_index(self) -> dict:
        path = self.root / "index.json"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return _empty_index()
        try:
            index = json.loads(raw)
        except ValueError:
            index = None
        if _index_ok(index):
            return index
        # A crash or a full disk left it unreadable: keep it for a post-mortem, start afresh
        # (the run names its outputs again; the blobs are untouched).
        aside = path.with_name(f"index.json.broken-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        with contextlib.suppress(OSError):
            if path.read_bytes() == raw:  # not replaced meanwhile by a writer
                os.replace(path, aside)
                print(f"graphbuild: warning: {path} was unreadable; set aside as {aside.name}, "
                      "and the store's entries are written again", file=sys.stderr)
        return _empty_index()

    def _write_index(self, index: dict) -> None:
        tmp = self._write_temp(canonical_json(index))
        os.replace(tmp, self.root / "index.json")

    def entries(self) -> list[dict]:
        """The descriptors listed in ``index.json``."""
        return list(self._read_index().get("manifests", []))

    def set_refs(
        self, label: str, descriptor: dict, tags: list[str], extra_annotations: dict | None = None
    ) -> None:
        """Point ``label`` and each of ``tags`` at ``descriptor``, replacing the label's entries.

        A tag names one thing: another label's entry with the same ref.name is removed.
        """
        tags = sorted({check_ref_name(t) for t in tags})
        fresh = _index_entries(label, descriptor, tags, extra_annotations or {})
        with self._locked():
            index = self._read_index()
            kept = [e for e in index.get("manifests", []) if not _superseded(e, label, tags)]
            index["manifests"] = sorted(kept + fresh, key=_entry_key)
            self._write_index(index)

    def set_refs_many(self, items: list[tuple[str, dict, list[str]]]) -> None:
        """``set_refs`` for many (label, descriptor, tags) under one lock and one write: a build
        names thousands of nodes, and rewriting index.json for each one is quadratic."""
        items = [(label, desc, sorted({check_ref_name(t) for t in tags}))
                 for label, desc, tags in items]
        # The same result as applying the items one by one, in linear time: an entry goes when
        # a later item names its label or its tag.
        last_label = {label: i for i, (label, _, _) in enumerate(items)}
        last_tag = {tag: i for i, (_, _, tags) in enumerate(items) for tag in tags}
        fresh = []
        for i, (label, desc, tags) in enumerate(items):
            if last_label[label] == i:
                fresh += [e for e in _index_entries(label, desc, tags, {})
                          if last_tag.get(e["annotations"].get(mt.REF_NAME), i) == i]
        with self._locked():
            index = self._read_index()
            kept = [e for e in index.get("manifests", [])
                    if e.get("annotations", {}).get(mt.LABEL) not in last_label
                    and e.get("annotations", {}).get(mt.REF_NAME) not in last_tag]
            index["manifests"] = sorted(kept + fresh, key=_entry_key)
            self._write_index(index)

    def drop_entries(self, entries: list[dict]) -> None:
        """Remove these entries from index.json (ones found broken by `cache verify --repair`)."""
        with self._locked():
            index = self._read_index()
            index["manifests"] = [e for e in index.get("manifests", []) if e not in entries]
            self._write_index(index)

    def lookup(self, name: str) -> dict | None:
        """The descriptor a tag (ref.name) or a label names, or None. A tag wins over a label."""
        by_label = None
        for entry in self.entries():
            ann = entry.get("annotations", {})
            if ann.get(mt.REF_NAME) == name:
                return entry
            if ann.get(mt.LABEL) == name and mt.REF_NAME not in ann:
                by_label = entry
        return by_label

    # -- graph ---------------------------------------------------------------------------------

    def walk(self, descriptor: dict) -> Iterator[dict]:
        """Yield ``descriptor`` and everything it references (index → manifests → config, layers),
        each digest once. Raise BlobNotFound when an index or manifest to descend into is missing.
        """
        yield from self._walk(descriptor, set(), strict=True)

    def missing_blobs(self, descriptor: dict) -> list[str]:
        """Digests reachable from ``descriptor`` that are not in the store (in walk order)."""
        return [
            d["digest"]
            for d in self._walk(descriptor, set(), strict=False)
            if not self.has_blob(d["digest"])
        ]

    def _walk(self, desc: dict, seen: set[str], strict: bool) -> Iterator[dict]:
        digest = check_digest(desc["digest"])
        if digest in seen:
            return
        seen.add(digest)
        yield desc
        media_type = desc.get("mediaType")
        if not (mt.is_index(media_type) or mt.is_manifest(media_type)):
            return
        doc = self._manifest_doc(digest, media_type, strict)
        if doc is None:
            return
        for child in _children(doc, media_type):
            yield from self._walk(child, seen, strict)

    def _manifest_doc(self, digest: str, media_type: str, strict: bool) -> Any:
        """A manifest or index as parsed, nothing written (``peek_json``); not ``strict``
        (``gc`` only looks), never fetched, and None when neither the store nor a record holds
        it; ``strict``, BlobNotFound then."""
        if not strict:  # in the store, else from its record's bytes: never fetched
            return self.read_json(digest) if self.has_blob(digest) else self._recorded_doc(digest)
        try:
            return self.peek_json(digest)
        except BlobNotFound:
            raise BlobNotFound(f"{media_type} {digest} is not in the store {self.root}") from None

    # -- maintenance ---------------------------------------------------------------------------

    def gc(
        self,
        dry_run: bool = False,
        *,
        extra_roots: Iterable[dict] = (),
        tmp_max_age: float = 3600.0,
    ) -> tuple[int, int]:
        """Delete blobs reachable neither from ``index.json`` nor from ``extra_roots`` (e.g. the
        descriptors the action cache records), and temp files older than ``tmp_max_age`` seconds;
        return ``(removed_count, freed_bytes)``.

        Holds the index lock, so no tag moves meanwhile; a build still writing blobs it has not
        yet recorded must not run concurrently (its fresh blobs are not yet reachable).
        """
        with self._locked():
            reachable: set[str] = set()
            for root in [*self.entries(), *extra_roots]:
                reachable.update(d["digest"] for d in self._walk(root, set(), strict=False))
            victims = [p for p in self._blobs.iterdir() if "sha256:" + p.name not in reachable]
            cutoff = time.time() - tmp_max_age
            victims += [p for p in self.tmp_dir().iterdir() if _mtime(p) < cutoff]
            removed, freed = _remove(victims, dry_run)
            return removed + self._rewrite_records(reachable, dry_run), freed

    def stats(self) -> dict:
        """``{"blobs": count, "bytes": total size, "entries": index.json entries}``."""
        sizes = [p.stat().st_size for p in self._blobs.iterdir()] if self._blobs.is_dir() else []
        return {"blobs": len(sizes), "bytes": sum(sizes), "entries": len(self.entries()),
                "remote_only": len(self.remote_digests())}


def _index_ok(index: object) -> bool:
    """An image index whose entries are descriptors (what every reader of it assumes)."""
    if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
        return False
    return all(isinstance(e, dict) and isinstance(e.get("digest"), str)
               and isinstance(e.get("annotations", {}), dict) for e in index.get("manifests", []))


def _empty_index() -> dict:
    return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}


def _hash_stream(f: IO[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while chunk := f.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def _children(doc: dict, media_type: str) -> list[dict]:
    if mt.is_index(media_type):
        return list(doc.get("manifests", []))
    return [doc["config"], *doc.get("layers", [])]


def _index_entries(label: str, desc: dict, tags: list[str], extra: dict) -> list[dict]:
    base = {k: desc[k] for k in _DESCRIPTOR_KEYS if k in desc}
    check_digest(base["digest"])
    annotations = {**desc.get("annotations", {}), **extra, mt.LABEL: label}
    annotations.pop(mt.REF_NAME, None)
    out = [{**base, "annotations": annotations}]
    out += [{**base, "annotations": {**annotations, mt.REF_NAME: tag}} for tag in tags]
    return out


def _superseded(entry: dict, label: str, tags: list[str]) -> bool:
    ann = entry.get("annotations", {})
    return ann.get(mt.LABEL) == label or ann.get(mt.REF_NAME) in tags


def _entry_key(entry: dict) -> tuple[str, str, str]:
    ann = entry.get("annotations", {})
    return ann.get(mt.LABEL, ""), ann.get(mt.REF_NAME, ""), entry.get("digest", "")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone already: nothing to remove


def _remove(paths: list[Path], dry_run: bool) -> tuple[int, int]:
    count = freed = 0
    for path in paths:
        try:
            size = _disk_size(path)
            if dry_run:
                pass
            elif path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        count += 1
        freed += size
    return count, freed


def _disk_size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
    return path.lstat().st_size


def _write_file(path: str, data: bytes, mode: int, sync: bool) -> None:
    """Write a small file in one go (a remote cache hit writes hundreds: no buffered file
    object, no chmod afterwards); a half-written one is removed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:  # left by a crashed process that had this pid and thread id
        os.unlink(path)
        fd = os.open(path, flags, mode)
    try:
        with writing(path):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    os.close(fd)



def _add_record(records: dict[str, dict], line: bytes) -> None:
    """One journal line's records into ``records`` (a line that does not parse, or a blob
    entry that does not, is skipped)."""
    try:
        doc = json.loads(line)
        registry, repository, blobs = doc["registry"], doc["repository"], doc["blobs"]
    except (ValueError, KeyError, TypeError):
        return
    if not isinstance(blobs, list):
        return
    for blob in blobs:
        try:
            records[check_digest(blob[0])] = _record(registry, repository, blob)
        except (ValueError, IndexError, TypeError, KeyError):
            continue


def _record(registry: str, repository: str, blob: list) -> dict:
    """A record as readers use it, from a journal line's [digest, size, media type, bytes in
    base64 or None]."""
    record = {"registry": registry, "repository": repository, "size": int(blob[1]),
              "mediaType": blob[2]}
    if blob[3] is not None:
        record["data"] = blob[3]
    return record


def _recorded_bytes(record: dict, digest: str) -> bytes | None:
    """The bytes a remote-only record holds, if they hash to ``digest``; else None."""
    text = record.get("data")
    if not isinstance(text, str):
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return data if "sha256:" + hashlib.sha256(data).hexdigest() == digest else None
