"""The remote action cache: an OCI registry repository (``remote_cache: oci://host/repo``)
shared by every machine that builds the workspace.

One entry per action key, tagged by the key's hex (a lookup is one GET): an OCI 1.1 artifact
manifest (``artifactType`` ACTION_TYPE, the empty config) whose layers are every blob of the
outcome, so registry garbage collection keeps them while the tag lives, and whose annotations
hold the outcome itself. A command's output tree is one tar layer; an image's manifests,
configs and layers are its layers as they are.

Reading is "build without the bytes": a hit for an image takes its manifests and configs (a
few KB, embedded in the entry, else downloaded; each checked by digest) and records them as
remote-only in the store with their bytes, and its layers without, so a fresh runner's hits
create no file each; the store writes a blob, or fetches a layer, only when something reads
it (``Store.open_blob``). A layer the entry names but the registry lacks makes the entry a
miss, never a false hit. Writing runs beside the build
on its own threads; a cache that cannot be reached or written is one warning, not a failure.

A run with a scope also reads (and, writing, replaces) that scope's pack (``remote_pack``):
the entries of its last run in one blob, so a fresh runner's lookups need no GET each.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import NamedTuple

from ..errors import BuildError, UserError, is_no_space
from ..oci import mediatypes as mt
from ..registry import limits
from ..rule_api import NodeId, Outcome

ACTION_TYPE = "application/vnd.graphbuild.action.v1+json"
TREE_TAR = "application/vnd.graphbuild.tree.v1.tar"
EMPTY = {"mediaType": mt.OCI_EMPTY, "size": 2, "data": "e30=",
         "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
A_OUTCOME = "dev.graphbuild.outcome"
A_NODE = "dev.graphbuild.node"
A_DURATION = "dev.graphbuild.duration"
MODES = ("off", "read", "readwrite")
WRITERS = 4
CHECKERS = 4  # threads checking that a pack's layers are still there, ahead of the lookups
CHECK_WAIT = 5.0  # seconds the scheduler waits for a pack node's checks under way (answers_now)
INLINE_MAX = 16 * 1024  # manifests, configs and attestations up to this size are embedded
INLINE_BUDGET = 512 * 1024  # and at most this much of what is not a manifest or config
STATS_FILE = "remote-cache-stats.json"


class Entry(NamedTuple):
    """An entry's manifest (as parsed) and the outcome it records."""

    doc: dict
    outcome: Outcome
    duration: float


class EntryUnusable(BuildError):
    """An entry that does not parse, or whose blobs are gone: a miss, reported."""


def parse_url(url: str) -> tuple[str, str]:
    """``oci://host[:port]/repo`` -> (registry, repository)."""
    from ..registry.reference import ReferenceError, parse_reference

    try:
        ref = parse_reference(url.removeprefix("oci://"))
    except ReferenceError as exc:
        raise UserError(f"remote_cache {url!r}: {exc}", hint="write oci://host/repo") from None
    return ref.registry, ref.repository


def choose_mode(flag: str | None, env: dict, configured: str | None) -> str:
    """The run's mode: ``--remote-cache``, else GRAPHBUILD_REMOTE_CACHE, else readwrite when a
    remote cache is configured."""
    mode = flag or env.get("GRAPHBUILD_REMOTE_CACHE") or ("readwrite" if configured else "off")
    if mode not in MODES:
        raise UserError(f"remote cache mode {mode!r} is not one of {', '.join(MODES)}",
                        hint="--remote-cache off|read|readwrite (or GRAPHBUILD_REMOTE_CACHE)")
    if mode != "off" and not configured:
        raise UserError(f"--remote-cache {mode}: WORKSPACE.yaml names no remote_cache",
                        hint="add remote_cache: oci://host/repo to WORKSPACE.yaml")
    return mode


class RemoteCache:
    """One run's view of the remote cache: thread-safe lookups and background writes."""

    def __init__(self, ws, mode: str, pack_tag: str | None = None) -> None:
        from .remote import Remote

        self.registry, self.repo = parse_url(ws.remote_cache)
        self.client = Remote.of(ws).client(self.registry)
        self.reading, self.writing = mode != "off", mode == "readwrite"
        self.cache_dir: Path = ws.cache_dir
        self.stats: Counter = Counter()
        self._lock = threading.Lock()
        self._present: set[str] = set()  # digests known to be in the cache repository
        self._inflight: dict[str, threading.Event] = {}  # digest -> set when its write ends
        # digest -> what it reaches (manifests, indexes), for those a hit has put in place
        self._children: dict[str, list[dict]] = {}
        self._placed: set[str] = set()  # blobs a hit has put in the store
        self._deferred: set[str] = set()  # blobs a hit has recorded as remote-only
        self._warned: set[str] = set()
        self._writer: ThreadPoolExecutor | None = None
        self._cancelled = threading.Event()  # set on Ctrl-C: writes under way stop
        self._writes: list[Future] = []
        self.pack_tag = pack_tag  # this run's scope's pack (remote_pack), None: no pack
        self._pack: dict[str, tuple[str, dict]] = {}  # node -> (key, entry manifest), as read
        self._pack_started = False
        self._pack_read = threading.Event()
        self._used: dict[str, tuple[str, dict]] = {}  # node -> (key, entry manifest) this run
        self._checks: dict[str, Future] = {}  # digest -> its presence check under way
        self._checks_slow = False  # a check outlasted CHECK_WAIT: answers_now waits no more
        self._local: dict[str, list[str]] = {}  # node -> layers: its pack entry needs no GET
        self._checker: ThreadPoolExecutor | None = None
        self.nodes: set[str] = set()  # the run's graph: a pack keeps only these
        self.retries = limits.RetryBudget()  # the run's: the Engine takes it as its own

    @property
    def where(self) -> str:
        return f"{self.registry}/{self.repo}"

    # -- reading -------------------------------------------------------------------------------
    def lookup(self, key: str, store, cas, node: NodeId | None = None,
               ) -> tuple[Outcome | None, str, float]:
        """The outcome recorded for ``key`` with its content in place (layers remote-only),
        or None; what happened ("remote cache hit", "... miss", or why the entry was not
        used); and how long the action took where it ran."""
        from ..registry.errors import RegistryError

        if not self.reading:
            return None, "remote cache not read", 0.0
        try:
            entry, packed = self._from_pack(node, key, store, cas), True
            if entry is None:
                entry, packed = self._entry(key), False
                if entry is None:
                    self._count("misses")
                    return None, "remote cache miss", 0.0
                self._materialise(entry, store, cas)
        except EntryUnusable as exc:
            self._count("misses")
            self._count("unusable")
            return None, f"remote cache entry unusable ({exc})", 0.0
        except (RegistryError, OSError) as exc:
            if isinstance(exc, OSError) and is_no_space(exc):
                raise  # the local disk is full: not the cache's fault, and said as that
            self._unreachable("read", exc)
            return None, "remote cache unreachable", 0.0
        self._count("hits")
        if packed:
            self._count("pack_hits")
        if node is not None:
            with self._lock:
                self._used[node] = (key, entry.doc)
        return entry.outcome, "remote cache hit", entry.duration

    def _entry(self, key: str) -> Entry | None:
        from ..registry.errors import RegistryError

        try:
            data, _, _ = self.client.get_manifest(self.repo, _tag(key), accept=(mt.OCI_MANIFEST,))
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        self._count("bytes_downloaded", len(data))
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise EntryUnusable(f"the entry does not parse: {exc}") from None
        return _parse_entry(doc)

    def _materialise(self, entry: Entry, store, cas) -> None:
        outcome = entry.outcome
        try:
            if "tree" in outcome.data:
                self._fetch_tree(entry.doc, outcome, cas)
            elif "descriptor" in outcome.data:
                hit = _Hit(store, _inline(entry.doc))
                for root in [outcome.data["descriptor"], *outcome.data.get("referrers", ())]:
                    listing: list = []
                    self._fetch_closure(root, hit, listing, set())
                    # the hit's no-op check then reads no manifest back
                    store.remember_closure(root["digest"], listing)
                store.mark_remote_many(hit.remote, self.registry, self.repo)  # one write
                with self._lock:
                    self._placed.update(hit.placed)
                    self._deferred.update(hit.deferred)
            else:
                raise EntryUnusable("the entry records neither a tree nor an image")
        except (KeyError, TypeError, ValueError) as exc:  # a manifest without its fields
            raise EntryUnusable(f"the entry's content does not parse: {exc!r}") from None

    def _fetch_tree(self, entry: dict, outcome: Outcome, cas) -> None:
        from .cas_tar import BadTreeTar, read_tree_tar

        if cas.has_tree(outcome.digest):
            return
        layer = next((x for x in entry.get("layers", ()) if x.get("mediaType") == TREE_TAR), None)
        if layer is None:
            raise EntryUnusable("the entry has no tree layer")
        path = cas.new_temp()
        try:
            with open(path, "w+b") as tmp:
                self._download(layer["digest"], tmp, layer.get("size"))
                tmp.seek(0)
                got = read_tree_tar(cas, tmp)
        except BadTreeTar as exc:
            raise EntryUnusable(str(exc)) from None
        finally:
            path.unlink(missing_ok=True)
        if got != outcome.digest:
            raise EntryUnusable(f"its tree is {got}, the entry says {outcome.digest}")

    def _fetch_closure(self, desc: dict, hit: _Hit, listing: list, seen: set[str]) -> None:
        """What ``desc`` reaches, checked and recorded as remote-only in the store, written
        only when read: the blobs the entry embeds (manifests, configs, attestations) checked
        by digest and recorded with their bytes; layers checked to be in the registry. A
        manifest or config the entry does not embed is downloaded (checked by digest) and
        written. ``listing`` gets (digest, size) of each, as ``verify.closure`` lists them."""
        digest = desc["digest"]
        if digest in seen:
            return
        seen.add(digest)
        listing.append((digest, desc.get("size")))
        media_type = desc.get("mediaType")
        manifest = mt.is_index(media_type) or mt.is_manifest(media_type)
        with self._lock:  # by an earlier hit of this run (say an index's child)
            done = digest in self._placed or digest in self._deferred
        done = done or digest in hit.placed or digest in hit.deferred
        data = None
        if done:
            pass
        elif hit.embedded(digest) is not None and not hit.has_blob(digest):
            data = hit.defer(desc)
        elif manifest or _is_metadata(desc) or digest in hit.texts:  # a copy there is checked
            data = self._small(digest, hit)
        elif not hit.has_blob(digest):
            self._check_present(digest)
            hit.remote.append((desc, None))
            hit.deferred.add(digest)
        if not manifest:
            return
        children = self._children.get(digest)
        if children is None:
            doc = json.loads(data if data is not None else self._small(digest, hit))
            children = doc.get("manifests", []) if mt.is_index(media_type) else \
                [doc["config"], *doc.get("layers", [])]
        for child in children:
            self._fetch_closure(child, hit, listing, seen)
        with self._lock:
            self._children[digest] = children

    def _small(self, digest: str, hit: _Hit) -> bytes:
        """A manifest, config or embedded attestation: from the store, else from the entry
        (embedded), else downloaded; checked by digest on its way into the store."""
        from ..oci.store import BlobCorrupt

        store = hit.store
        data = hit.embedded(digest)
        if data is None:
            if store.has_blob(digest):
                hit.placed.add(digest)
                return store.read_bytes(digest)
            with tempfile.TemporaryFile() as tmp:
                self._download(digest, tmp, None)
                tmp.seek(0)
                data = tmp.read()
        try:  # checked by digest; a store copy damaged in place is replaced
            store.put_bytes(data, digest, sync=False)
        except BlobCorrupt:
            raise EntryUnusable(f"the entry's copy of {digest} is corrupt" if digest in hit.texts
                                else f"blob {digest} is corrupt") from None
        hit.placed.add(digest)
        return data

    def _download(self, digest: str, dest, size: int | None) -> None:
        from ..registry.errors import DigestMismatchError, RegistryError

        try:
            n = self.client.get_blob(self.repo, digest, dest, size)
        except DigestMismatchError as exc:
            raise EntryUnusable(f"blob {digest} is corrupt: {exc}") from None
        except RegistryError as exc:
            if exc.status == 404:
                raise EntryUnusable(f"blob {digest} is gone from {self.where}") from None
            raise
        self._count("bytes_downloaded", n)
        self._note_present(digest)

    def _check_present(self, digest: str) -> None:
        with self._lock:
            if digest in self._present:
                return
            check = self._checks.get(digest)
        there = check.result() if check is not None else \
            self.client.blob_exists(self.repo, digest)
        if not there:
            raise EntryUnusable(f"blob {digest} is gone from {self.where}")
        self._note_present(digest)

    # -- the scope's pack ----------------------------------------------------------------------
    def start_pack(self, store) -> None:
        """Read this scope's pack in the background (once), then check that the layers its
        entries name are still in the registry, ahead of the lookups that will ask."""
        with self._lock:
            if self._pack_started:
                return
            self._pack_started = True
            if self.pack_tag is None or not self.reading:
                self._pack_read.set()
                return
        threading.Thread(target=self._read_pack, args=(store,), name="gb-cache-pack",
                         daemon=True).start()

    def _read_pack(self, store) -> None:
        from ..registry.errors import RegistryError
        from .remote_pack import PackUnusable, read_pack

        try:
            with limits.scope(cancelled=self._cancelled, retries=self.retries):
                self._pack, size = read_pack(self.client, self.repo, self.pack_tag) or ({}, 0)
            self._count("pack_entries", len(self._pack))
            self._count("bytes_downloaded", size)
            self._check_ahead(store)
        except PackUnusable as exc:
            self._count("pack_unusable")
            print(f"graphbuild: warning: remote cache {self.where}: pack {self.pack_tag} "
                  f"unusable ({exc}); looking entries up one by one", file=sys.stderr)
        except (RegistryError, OSError) as exc:
            self._unreachable("read", exc)
        finally:
            self._pack_read.set()

    def _check_ahead(self, store) -> None:
        digests: set[str] = set()
        for node, (_, doc) in self._pack.items():
            try:
                layers = doc["layers"]
                meta = [x for x in layers if _is_metadata(x)]
                blobs = [x["digest"] for x in layers if not _is_metadata(x) and "data" not in x]
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # said when its node looks it up
            if all(isinstance(x.get("data"), str) for x in meta) and not any(
                    x.get("mediaType") == TREE_TAR for x in layers):  # nothing to download
                self._local[node] = blobs
                digests.update(blobs)
        with self._lock:
            if self._cancelled.is_set():
                return
            self._checker = ThreadPoolExecutor(CHECKERS, thread_name_prefix="gb-cache-check")
            for digest in digests:
                if digest not in self._present and (store is None or not store.has_blob(digest)):
                    self._checks[digest] = self._checker.submit(self._exists, digest)

    def _exists(self, digest: str) -> bool:
        with limits.scope(cancelled=self._cancelled, retries=self.retries):
            return self.client.blob_exists(self.repo, digest)

    def answers_now(self, node: NodeId, key: str) -> bool:
        """Whether the lookup of ``node`` needs no network: the pack holds ``key`` for it with
        everything embedded, and its layers are known to be there (so it can run on the
        scheduler's thread, not handed to another: fewer threads taking turns at the GIL).

        Checks of its layers still under way (they started with the pack) are waited for, up
        to CHECK_WAIT: the lookup would wait for them anyway, and while this thread waits it
        lets the checking threads run; it would otherwise hold the GIL, which they need for
        each request, and hand them a turn only every switch interval."""
        if not self._pack_read.is_set() or self._pack.get(node, ("",))[0] != key:
            return False
        layers = self._local.get(node)
        if layers is None:
            return False
        with self._lock:
            checks = [self._checks.get(d) for d in layers if d not in self._present]
        if any(c is None for c in checks) or self._checks_slow:
            return False
        _, pending = wait(checks, timeout=CHECK_WAIT)
        if pending:  # a slow registry: wait no more on this thread, lookups take their own
            self._checks_slow = True
            return False
        return all(not c.cancelled() and c.exception() is None and c.result() for c in checks)

    def _from_pack(self, node: NodeId | None, key: str, store, cas) -> Entry | None:
        """The pack's entry for ``key`` with its content in place, if the pack holds one for
        ``node`` and it is usable; else None (then the entry is looked up by its tag)."""
        if node is None or self.pack_tag is None:
            return None
        self.start_pack(store)
        self._pack_read.wait()
        found = self._pack.get(node)
        if found is None or found[0] != key:
            return None
        try:
            entry = _parse_entry(found[1])
            self._materialise(entry, store, cas)
        except EntryUnusable:
            self._count("pack_misses")  # perhaps rewritten since: its tag may be good
            return None
        return entry

    def _write_pack(self) -> None:
        """Replace the scope's pack when this run used or wrote entries it lacks."""
        from ..registry.errors import RegistryError
        from .remote_pack import write_pack

        if not (self.writing and self.pack_tag and self._used and self._pack_read.is_set()):
            return
        pack = {n: e for n, e in self._pack.items() if n in self.nodes}
        pack.update((n, e) for n, e in self._used.items() if n in self.nodes)
        if pack == self._pack:
            return
        try:
            with limits.scope(cancelled=self._cancelled, retries=self.retries):
                size = write_pack(self.client, self.repo, self.pack_tag, pack)
            self._count("pack_bytes_uploaded", size)
            self._count("pack_written")
        except (RegistryError, OSError) as exc:
            self._unreachable("write", exc)

    # -- writing -------------------------------------------------------------------------------
    def save(self, key: str, node: NodeId, outcome: Outcome, duration: float, store, cas) -> None:
        """Write an entry for ``key`` beside the build (after the node succeeded)."""
        if not self.writing or not ({"tree", "descriptor"} & outcome.data.keys()):
            return
        with self._lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(WRITERS, thread_name_prefix="gb-cache-write")
            self._writes.append(self._writer.submit(self._write, key, node, outcome, duration,
                                                    store, cas))

    def _write(self, key: str, node: NodeId, outcome: Outcome, duration: float, store,
               cas) -> None:
        from ..registry.errors import RegistryError

        if not self.writing:
            return
        try:
            # a Ctrl-C stops it at once
            with limits.scope(cancelled=self._cancelled, retries=self.retries):
                layers = (self._put_tree(outcome.digest, cas) if "tree" in outcome.data
                          else self._put_closure(outcome, store))
                self._ensure(EMPTY["digest"], EMPTY["size"], lambda: io.BytesIO(b"{}"), None)
                manifest = _entry_manifest(node, outcome, duration, layers)
                self.client.put_manifest(self.repo, _tag(key), manifest, mt.OCI_MANIFEST)
            self._count("entries_written")
            with self._lock:
                self._used[node] = (key, json.loads(manifest))
        except (RegistryError, OSError, BuildError) as exc:
            self._count("write_failures")
            self._unreachable("write", exc)

    def _put_tree(self, digest: str, cas) -> list[dict]:
        from .cas_tar import write_tree_tar

        path = cas.new_temp()
        try:
            with open(path, "wb") as tmp:
                write_tree_tar(cas, digest, tmp)
            return [self._put_file(path, TREE_TAR)]
        finally:
            path.unlink(missing_ok=True)

    def _put_file(self, path: Path, media_type: str) -> dict:
        from .hashing import digest_file

        digest, size = digest_file(path), path.stat().st_size
        self._ensure(digest, size, lambda: open(path, "rb"), None)  # noqa: SIM115 - the upload closes it
        return {"mediaType": media_type, "digest": digest, "size": size}

    def _put_closure(self, outcome: Outcome, store) -> list[dict]:
        layers: dict[str, dict] = {}
        for root in [outcome.data["descriptor"], *outcome.data.get("referrers", ())]:
            for desc in store.walk(root):
                layers.setdefault(desc["digest"], desc)
        out = []
        budget = INLINE_BUDGET
        for digest, desc in layers.items():
            size = store.blob_size(digest)
            self._ensure(digest, size, lambda d=digest: store.open_blob(d),
                         store.remote_record(digest))
            layer = {"mediaType": desc.get("mediaType") or "application/octet-stream",
                     "digest": digest, "size": size}
            # a hit then needs no GET for it (metadata), nor a HEAD (attestations)
            if size <= INLINE_MAX and (_is_metadata(desc) or not _is_layer(desc) and
                                       size <= budget):
                layer["data"] = base64.b64encode(store.read_bytes(digest)).decode()
                budget -= 0 if _is_metadata(desc) else size
            out.append(layer)
        return out

    def _ensure(self, digest: str, size: int, open_fn, record: dict | None) -> None:
        """Make the cache repository hold a blob: found there, mounted, else uploaded; once
        per run (a write of the same blob under way is waited for)."""
        with self._lock:
            if digest in self._present:
                return
            waiting = self._inflight.get(digest)
            if waiting is None:
                self._inflight[digest] = threading.Event()
        if waiting is not None:
            waiting.wait()
            return self._ensure(digest, size, open_fn, record)  # present, or ours to try
        try:
            self._copy(digest, size, open_fn, record)
        finally:
            with self._lock:
                self._inflight.pop(digest).set()

    def _copy(self, digest: str, size: int, open_fn, record: dict | None) -> None:
        if self.client.blob_exists(self.repo, digest):
            self._note_present(digest)
            return
        if (record and record["registry"] == self.registry
                and self.client.mount_blob(self.repo, digest, record["repository"])):
            self._note_present(digest)
            return
        self.client.upload_blob(self.repo, digest, size, open_fn)
        self._count("bytes_uploaded", size)
        self._note_present(digest)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.stats[name] += amount

    def _note_present(self, digest: str) -> None:
        with self._lock:
            self._present.add(digest)

    def _unreachable(self, what: str, exc: Exception) -> None:
        """One warning per kind; a cache that cannot be reached is not asked again this run."""
        from ..registry.errors import AuthenticationError, RegistryError

        self._count(f"{what}_errors")
        status = getattr(exc, "status", None)
        if what == "read" and (status is None or status >= 500 or status in (401, 403)):
            self.reading = False
        if what == "write" and (isinstance(exc, AuthenticationError) or status in (401, 403)
                                or (isinstance(exc, RegistryError) and status is None)):
            self.writing = False
        with self._lock:
            if what in self._warned:
                return
            self._warned.add(what)
        action = "reading from" if what == "read" else "writing to"
        print(f"graphbuild: warning: remote cache {self.where}: {action} it failed: {exc}; "
              f"the build goes on {'without it' if what == 'read' else 'and is not cached there'}",
              file=sys.stderr)

    def finish(self) -> dict:
        """Wait for the writes, record this run's figures for `cache stats`, return them."""
        for future in list(self._writes):
            future.exception()
        if self._writer is not None:
            self._writer.shutdown()
        self._write_pack()
        if self._checker is not None:
            self._checker.shutdown(wait=False, cancel_futures=True)
        figures = {"remote": self.where, **{k: self.stats[k] for k in sorted(self.stats)}}
        from .hashing import write_json

        write_json(self.cache_dir / STATS_FILE, figures)
        return figures

    def describe(self) -> str:
        """One line for the end of a run."""
        from ..cli.cache_cmd import human

        s = self.stats
        packed = f" ({s['pack_hits']} from the pack)" if s["pack_hits"] else ""
        line = (f"remote cache {self.where}: {s['hits']} hits{packed}, {s['misses']} misses, "
                f"{human(s['bytes_downloaded'])} downloaded")
        if self.writing or s["entries_written"] or s["write_failures"]:
            line += (f", {s['entries_written']} entries written "
                     f"({human(s['bytes_uploaded'])} uploaded)")
        if s["pack_written"]:
            line += f", pack updated ({human(s['pack_bytes_uploaded'])})"
        return line + (f", {s['write_failures']} writes failed" if s["write_failures"] else "")

    def cancel(self) -> None:
        self.writing = self.reading = False
        self._cancelled.set()
        with self._lock:
            pools = [p for p in (self._writer, self._checker) if p is not None]
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


class _Hit:
    """What one hit puts in place: the blobs it wrote or found in the store, and the ones it
    records as remote-only ((descriptor, the entry's base64 text of it or None), recorded in
    one go at its end)."""

    def __init__(self, store, texts: dict[str, str]) -> None:
        self.store, self.texts = store, texts
        self._bytes: dict[str, bytes | None] = {}
        self._local = store.holds_blobs()  # else no stat per blob (a fresh runner's store)
        self.placed: set[str] = set()
        self.deferred: set[str] = set()
        self.remote: list[tuple[dict, str | None]] = []

    def has_blob(self, digest: str) -> bool:
        return self._local and self.store.has_blob(digest)

    def embedded(self, digest: str) -> bytes | None:
        """The bytes the entry embeds for ``digest`` (None: none, or text that does not
        decode: then the blob is downloaded instead), unchecked."""
        if digest not in self._bytes:
            text = self.texts.get(digest)
            try:
                self._bytes[digest] = None if text is None else \
                    base64.b64decode(text, validate=True)
            except ValueError:
                self._bytes[digest] = None
        return self._bytes[digest]

    def defer(self, desc: dict) -> bytes | None:
        """An embedded blob the store lacks, checked by digest, recorded as remote-only with
        its bytes (it is put in the store when read); None when the entry does not embed it."""
        digest = desc["digest"]
        data = self.embedded(digest)
        if data is None:
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise EntryUnusable(f"the entry's copy of {digest} is corrupt")
        if len(data) != desc.get("size"):  # the size is recorded, and trusted, from here on
            raise EntryUnusable(f"the entry gives {digest} a size of {desc.get('size')}, "
                                f"its bytes are {len(data)}")
        self.remote.append((desc, self.texts[digest]))  # recorded as the entry has it
        self.deferred.add(digest)
        return data


def _parse_entry(doc) -> Entry:
    try:
        outcome = json.loads(doc["annotations"][A_OUTCOME])
        if doc.get("artifactType") != ACTION_TYPE or not isinstance(outcome["data"], dict):
            raise ValueError("not a graphbuild action entry")
        return Entry(doc, Outcome(outcome["digest"], outcome["data"]),
                     float(doc["annotations"].get(A_DURATION, 0) or 0))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EntryUnusable(f"the entry does not parse: {exc}") from None


def _inline(entry: dict) -> dict[str, str]:
    """digest -> the base64 text of each blob an entry embeds (``data`` of its layer
    descriptors), unchecked: decoded when used, and its digest checked before use."""
    return {layer["digest"]: layer["data"] for layer in entry.get("layers", ())
            if isinstance(layer, dict) and isinstance(layer.get("data"), str)
            and isinstance(layer.get("digest"), str)}


def _is_layer(desc: dict) -> bool:
    media_type = desc.get("mediaType") or ""
    return ".layer." in media_type or ".rootfs." in media_type


def _is_metadata(desc: dict) -> bool:
    media_type = desc.get("mediaType")
    return (mt.is_index(media_type) or mt.is_manifest(media_type)
            or media_type in mt.CONFIG_TYPES or media_type == mt.OCI_EMPTY)


def _tag(key: str) -> str:
    return key.split(":", 1)[-1]


def _entry_manifest(node: NodeId, outcome: Outcome, duration: float, layers: list[dict]) -> bytes:
    from ..oci.jsoncanon import canonical_json

    data = {k: v for k, v in outcome.data.items() if not k.startswith("_")}
    return canonical_json({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": ACTION_TYPE,
        "config": EMPTY, "layers": layers,
        "annotations": {A_OUTCOME: json.dumps({"digest": outcome.digest, "data": data},
                                              sort_keys=True),
                        A_NODE: node, A_DURATION: f"{duration:.3f}"},
    })


def _fetch(ws, store, record: dict, digest: str) -> None:
    """``Store.fetch_remote``: download a remote-only blob into the store (checked by digest
    on the way in)."""
    from ..registry.errors import RegistryError
    from .remote import Remote

    client = Remote.of(ws).client(record["registry"])
    fd, name = tempfile.mkstemp(dir=store.tmp_dir(), prefix="fetch-")
    try:
        with os.fdopen(fd, "w+b") as out:
            client.get_blob(record["repository"], digest, out, int(record["size"]))
        store.add_file(name, digest)
    except RegistryError as exc:
        raise BuildError(f"cannot fetch {digest} from the remote cache "
                         f"{record['registry']}/{record['repository']}: {exc}") from None
    finally:
        Path(name).unlink(missing_ok=True)


def open_store(ws):
    """The workspace's store, able to fetch its remote-only blobs."""
    from functools import partial

    from ..oci.store import Store

    store = Store(ws.cache_dir / "oci")
    store.fetch_remote = partial(_fetch, ws, store)
    return store


def download_all(store, summary) -> int:
    """``--download all``: fetch every remote-only blob the run's outputs reach; the count."""
    fetched = 0
    for res in summary.results.values():
        data = res.outcome.data if res.outcome else {}
        for root in filter(None, [data.get("descriptor"), *data.get("referrers", ())]):
            for desc in store.walk(root):
                if store.remote_record(desc["digest"]) is not None:
                    store.local_blob_path(desc["digest"])
                    fetched += 1
    return fetched
