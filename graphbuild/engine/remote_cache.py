"""The remote action cache: an OCI registry repository (``remote_cache: oci://host/repo``)
shared by every machine that builds the workspace.

One entry per action key, tagged by the key's hex (a lookup is one GET): an OCI 1.1 artifact
manifest (``artifactType`` ACTION_TYPE, the empty config) whose layers are every blob of the
outcome, so registry garbage collection keeps them while the tag lives, and whose annotations
hold the outcome itself. A command's output tree is one tar layer; an image's manifests,
configs and layers are its layers as they are.

Reading is "build without the bytes": a hit for an image fetches its manifests and configs
(a few KB, each checked by digest) and records its layers as remote-only in the store, which
fetches one only when something reads it (``Store.open_blob``). A layer the entry names but
the registry lacks makes the entry a miss, never a false hit. Writing runs beside the build
on its own threads; a cache that cannot be reached or written is one warning, not a failure.
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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import BuildError, UserError
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
INLINE_MAX = 16 * 1024  # manifests and configs up to this size are embedded in the entry
STATS_FILE = "remote-cache-stats.json"


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

    def __init__(self, ws, mode: str) -> None:
        from .remote import Remote

        self.registry, self.repo = parse_url(ws.remote_cache)
        self.client = Remote.of(ws).client(self.registry)
        self.reading, self.writing = mode != "off", mode == "readwrite"
        self.cache_dir: Path = ws.cache_dir
        self.stats: Counter = Counter()
        self._lock = threading.Lock()
        self._present: set[str] = set()  # digests known to be in the cache repository
        self._inflight: dict[str, threading.Event] = {}  # digest -> set when its write ends
        self._materialised: set[str] = set()  # digests whose closure a hit has put in place
        self._warned: set[str] = set()
        self._writer: ThreadPoolExecutor | None = None
        self._cancelled = threading.Event()  # set on Ctrl-C: writes under way stop
        self._writes: list[Future] = []

    @property
    def where(self) -> str:
        return f"{self.registry}/{self.repo}"

    # -- reading -------------------------------------------------------------------------------
    def lookup(self, key: str, store, cas) -> tuple[Outcome | None, str, float]:
        """The outcome recorded for ``key`` with its content in place (layers remote-only),
        or None; what happened ("remote cache hit", "... miss", or why the entry was not
        used); and how long the action took where it ran."""
        from ..registry.errors import RegistryError

        if not self.reading:
            return None, "remote cache not read", 0.0
        try:
            entry = self._entry(key)
            if entry is None:
                self._count("misses")
                return None, "remote cache miss", 0.0
            self._materialise(entry, store, cas)
        except EntryUnusable as exc:
            self._count("misses")
            self._count("unusable")
            return None, f"remote cache entry unusable ({exc})", 0.0
        except (RegistryError, OSError) as exc:
            self._unreachable("read", exc)
            return None, "remote cache unreachable", 0.0
        self._count("hits")
        return entry["outcome"], "remote cache hit", entry["duration"]

    def _entry(self, key: str) -> dict | None:
        from ..registry.errors import RegistryError

        try:
            data, _, _ = self.client.get_manifest(self.repo, _tag(key), accept=(mt.OCI_MANIFEST,))
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        self._count("bytes_downloaded", len(data))
        try:
            entry = json.loads(data)
            outcome = json.loads(entry["annotations"][A_OUTCOME])
            if entry.get("artifactType") != ACTION_TYPE or not isinstance(outcome["data"], dict):
                raise ValueError("not a graphbuild action entry")
            entry["outcome"] = Outcome(outcome["digest"], outcome["data"])
            entry["duration"] = float(entry["annotations"].get(A_DURATION, 0) or 0)
        except (ValueError, KeyError, TypeError) as exc:
            raise EntryUnusable(f"the entry does not parse: {exc}") from None
        return entry

    def _materialise(self, entry: dict, store, cas) -> None:
        outcome: Outcome = entry["outcome"]
        try:
            if "tree" in outcome.data:
                self._fetch_tree(entry, outcome, cas)
            elif "descriptor" in outcome.data:
                inline = _inline(entry)
                for root in [outcome.data["descriptor"], *outcome.data.get("referrers", ())]:
                    self._fetch_closure(root, store, inline)
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

    def _fetch_closure(self, desc: dict, store, inline: dict[str, bytes]) -> None:
        """Manifests and configs into the store (checked by digest); layers checked to be
        there and recorded as remote-only."""
        digest = desc["digest"]
        media_type = desc.get("mediaType")
        with self._lock:
            if digest in self._materialised:  # by an earlier hit of this run (an index's child)
                return
        if mt.is_index(media_type) or mt.is_manifest(media_type):
            doc = json.loads(self._small(digest, store, inline))
            children = doc.get("manifests", []) if mt.is_index(media_type) else doc.get("layers", [])
            if mt.is_manifest(media_type):
                self._small(doc["config"]["digest"], store, inline)
            for child in children:
                self._fetch_closure(child, store, inline)
        elif not store.has_blob(digest):
            self._check_present(digest)
            store.mark_remote(desc, self.registry, self.repo)
        with self._lock:
            self._materialised.add(digest)

    def _small(self, digest: str, store, inline: dict[str, bytes]) -> bytes:
        """A manifest or config: from the store, else from the entry (embedded), else
        downloaded; checked by digest on its way into the store."""
        from ..oci.store import BlobCorrupt

        data = inline.get(digest)
        if data is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise EntryUnusable(f"the entry's copy of {digest} is corrupt")
        if data is not None and store.has_blob(digest):
            return data  # the store's copy is checked where it is read
        if store.has_blob(digest):
            return store.read_bytes(digest)
        if data is None:
            with tempfile.TemporaryFile() as tmp:
                self._download(digest, tmp, None)
                tmp.seek(0)
                data = tmp.read()
        try:
            store.put_bytes(data, digest, sync=False)
        except BlobCorrupt as exc:
            raise EntryUnusable(f"blob {digest} is corrupt: {exc}") from None
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
        if not self.client.blob_exists(self.repo, digest):
            raise EntryUnusable(f"blob {digest} is gone from {self.where}")
        self._note_present(digest)

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
            with limits.scope(cancelled=self._cancelled):  # a Ctrl-C stops it at once
                layers = (self._put_tree(outcome.digest, cas) if "tree" in outcome.data
                          else self._put_closure(outcome, store))
                self._ensure(EMPTY["digest"], EMPTY["size"], lambda: io.BytesIO(b"{}"), None)
                manifest = _entry_manifest(node, outcome, duration, layers)
                self.client.put_manifest(self.repo, _tag(key), manifest, mt.OCI_MANIFEST)
            self._count("entries_written")
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
        for digest, desc in layers.items():
            size = store.blob_size(digest)
            self._ensure(digest, size, lambda d=digest: store.open_blob(d),
                         store.remote_record(digest))
            layer = {"mediaType": desc.get("mediaType") or "application/octet-stream",
                     "digest": digest, "size": size}
            if size <= INLINE_MAX and _is_metadata(desc):  # a hit then needs no other GET
                layer["data"] = base64.b64encode(store.read_bytes(digest)).decode()
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
        figures = {"remote": self.where, **{k: self.stats[k] for k in sorted(self.stats)}}
        path = self.cache_dir / STATS_FILE
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(figures, indent=2) + "\n")
        os.replace(tmp, path)
        return figures

    def describe(self) -> str:
        """One line for the end of a run."""
        from ..cli.cache_cmd import human

        s = self.stats
        line = (f"remote cache {self.where}: {s['hits']} hits, {s['misses']} misses, "
                f"{human(s['bytes_downloaded'])} downloaded")
        if self.writing or s["entries_written"] or s["write_failures"]:
            line += (f", {s['entries_written']} entries written "
                     f"({human(s['bytes_uploaded'])} uploaded)")
        return line + (f", {s['write_failures']} writes failed" if s["write_failures"] else "")

    def cancel(self) -> None:
        self.writing = self.reading = False
        self._cancelled.set()
        if self._writer is not None:
            self._writer.shutdown(wait=False, cancel_futures=True)


def _inline(entry: dict) -> dict[str, bytes]:
    """The blobs an entry embeds (``data`` of its layer descriptors), unchecked: their digests
    are checked on the way into the store."""
    out = {}
    for layer in entry.get("layers", ()):
        if isinstance(layer, dict) and isinstance(layer.get("data"), str):
            try:
                out[layer["digest"]] = base64.b64decode(layer["data"], validate=True)
            except (ValueError, KeyError):
                continue  # then downloaded instead
    return out


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


def fetcher(ws):
    """``Store.fetch_remote`` for this workspace: download a remote-only blob (checked by
    digest) into the store."""
    def fetch(record: dict, digest: str) -> None:
        from ..registry.errors import RegistryError
        from .remote import Remote

        client = Remote.of(ws).client(record["registry"])
        store = fetch.store
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

    return fetch


def open_store(ws):
    """The workspace's store, able to fetch its remote-only blobs."""
    from ..oci.store import Store

    store = Store(ws.cache_dir / "oci")
    fetch = fetcher(ws)
    fetch.store = store
    store.fetch_remote = fetch
    return store


def download_all(store, summary) -> int:
    """``--download all``: fetch every remote-only blob the run's outputs reach; the count."""
    fetched = 0
    for res in summary.results.values():
        data = res.outcome.data if res.outcome else {}
        for root in [data.get("descriptor"), *data.get("referrers", ())] if data else ():
            if not root:
                continue
            for desc in store.walk(root):
                if store.remote_record(desc["digest"]) is not None:
                    store.local_blob_path(desc["digest"])
                    fetched += 1
    return fetched
