"""Registry access for one workspace: one client per registry (plain HTTP only for loopback and
hosts marked insecure, mirrors for pulls), tag resolution once per run, and pulls into the store."""

from __future__ import annotations

import sys
import threading

from ..errors import BuildError, UserError
from ..workspace import Workspace

PINS_FILE = "resolved-tags.json"
_REMOTES: dict[str, Remote] = {}
_GUARD = threading.Lock()


class Remote:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._clients: dict[str, object] = {}
        self._resolved: dict[str, str] = {}
        self._lock = threading.Lock()
        self._credentials = None
        # Commands that build nothing (query, graph, affected, run --dry-run) never ask a
        # registry: a tag takes the digest it was last resolved to (or stays a tag).
        self.offline = False
        self.fresh_tags = False  # run --pull: a tag must resolve now; no remembered digest
        self._pins: dict[str, str] | None = None  # tag -> digest reference, across runs

    @classmethod
    def of(cls, ws: Workspace) -> Remote:
        """The run's Remote for this workspace (tags resolve once per run)."""
        with _GUARD:
            key = str(ws.root)
            if key not in _REMOTES:
                _REMOTES[key] = cls(ws)
            return _REMOTES[key]

    def client(self, registry: str):
        from ..registry.client import RegistryClient
        from ..registry.credentials import DockerConfigCredentials

        with self._lock:
            if registry not in self._clients:
                if self._credentials is None:
                    self._credentials = DockerConfigCredentials()
                self._clients[registry] = RegistryClient(
                    registry, insecure=self.ws.insecure(registry), credentials=self._credentials)
            return self._clients[registry]

    def clients_for(self, targets, writes=None) -> dict:
        """registry -> client for every registry the push targets name; ``writes``: the run's
        WriteLedger, so that its push nodes write each (repository, digest) once."""
        clients = {t.registry: self.client(t.registry) for t in targets}
        if writes is not None:
            for client in clients.values():
                client.writes = writes
        return clients

    def pull_source(self, ref):
        """(client, reference) to pull from: the mirror when WORKSPACE.yaml names one."""
        mirror = (self.ws.registries.get(ref.registry) or {}).get("mirror")
        if mirror:
            from ..registry.reference import Reference

            ref = Reference(mirror, ref.repository, ref.tag, ref.digest)
        return self.client(ref.registry), ref

    def resolve(self, text: str) -> str:
        """``text`` pinned by digest: a digest reference as is, a tag looked up once per run."""
        from ..registry.errors import RegistryError
        from ..registry.reference import ReferenceError, parse_reference

        try:
            ref = parse_reference(text)
        except ReferenceError as exc:
            raise UserError(str(exc), hint="write host/repo:tag or host/repo@sha256:...") from None
        if ref.digest:
            return str(ref)
        with self._lock:
            if text in self._resolved:
                return self._resolved[text]
            remembered = None if self.fresh_tags else self._remembered().get(text)
        if self.offline:
            return remembered or text
        client, src = self.pull_source(ref)
        try:
            info = client.head_manifest(src.repository, src.ref)
        except RegistryError as exc:
            if remembered is None:
                raise BuildError(f"cannot resolve {text}: {exc}") from None
            print(f"graphbuild: note: cannot resolve {text} ({exc.detail}); using {remembered}, "
                  "which it resolved to last time (run --pull to insist on the registry)",
                  file=sys.stderr)
            pinned = remembered
        else:
            if info is None:
                raise BuildError(f"cannot resolve {text}: {ref.registry}/{ref.repository} has "
                                 f"no tag {ref.ref}")
            pinned = str(ref.with_digest(info.digest))
            if pinned != remembered:
                print(f"graphbuild: resolved {text} to {pinned} (pin it to skip this lookup)",
                      file=sys.stderr)
                self._remember(text, pinned)
        with self._lock:
            self._resolved[text] = pinned
        return pinned

    def _remembered(self) -> dict[str, str]:
        """Tags resolved by earlier runs (``<cache_dir>/resolved-tags.json``)."""
        if self._pins is None:
            import json

            try:
                pins = json.loads((self.ws.cache_dir / PINS_FILE).read_text())
            except (OSError, ValueError):
                pins = {}
            self._pins = pins if isinstance(pins, dict) else {}
        return self._pins

    def _remember(self, text: str, pinned: str) -> None:
        import json
        import os

        with self._lock:
            pins = {**self._remembered(), text: pinned}
            self._pins = pins
            path = self.ws.cache_dir / PINS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(pins, indent=1, sort_keys=True))
            os.replace(tmp, path)

    def pull(self, pinned: str, platform, store):
        """Fetch one platform of ``pinned`` into the store; returns the image descriptor."""
        from ..registry.reference import parse_reference
        from ..registry.transfer import pull_image

        client, src = self.pull_source(parse_reference(pinned))
        return pull_image(client, src, platform, _Sink(store)).descriptor


class BlobLedger:
    """One `run --push`'s record, shared by its push nodes, of who pushes each blob of each
    registry and where it landed, so that a blob crosses the network once per registry and
    reaches every other repository by a cross-repository mount.

    A push node ``claim``s, in one step under the lock, every blob it needs: those nobody has
    claimed become its own, the others it waits for (``Claim.where``, while its own blobs go
    ahead) and then mounts from where they landed. Its claims are released as their blobs land
    (``Claim.landed``) and, whatever happens, when it ends (``Claim.release``): a claim
    released without a location (its node failed) wakes the waiters, who then upload the blob
    themselves, and the next claimer owns it anew. A node claims before it waits and only waits
    for claims older than its own, held by nodes already running, so the waits cannot form a
    cycle.
    """

    def __init__(self) -> None:
        from ..registry.ledger import WriteLedger

        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}  # (registry, digest) -> its entry
        self.writes = WriteLedger()  # each (registry, repository, digest) written once

    def claim(self, blobs, cancelled: threading.Event | None = None) -> Claim:
        """Claim ``(registry, digest)`` pairs: the unclaimed ones (or those whose claimer failed)
        become this claim's, the others are waited for (until ``cancelled`` is set)."""
        mine: dict[tuple[str, str], _Entry] = {}
        theirs: dict[tuple[str, str], _Entry] = {}
        with self._lock:
            for key in dict.fromkeys(blobs):
                entry = self._entries.get(key)
                if entry is None or entry.failed:
                    entry = self._entries[key] = _Entry()
                    mine[key] = entry
                else:
                    theirs[key] = entry
        return Claim(mine, theirs, cancelled)


class _Entry:
    """One blob of one registry: released (``done``) with the repository it landed in, or
    with none when its claimer failed; ``added`` when this run put it there (it was not found
    there), so other repositories are unlikely to have it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.repository: str | None = None
        self.added = False

    @property
    def failed(self) -> bool:
        return self.done.is_set() and self.repository is None


class Claim:
    """What one push node owns in the ledger, and what it waits for: the
    ``transfer.PendingBlobs`` of its ``publish``."""

    def __init__(self, mine: dict, theirs: dict,
                 cancelled: threading.Event | None = None) -> None:
        self._mine, self._theirs, self._cancelled = mine, theirs, cancelled

    @property
    def owned(self) -> set[tuple[str, str]]:
        return set(self._mine)

    def pending(self, registry: str, digest: str) -> bool:
        """Another node claimed the blob first: wait for it (``where``) rather than push it."""
        return (registry, digest) in self._theirs

    def where(self, registry: str, digest: str) -> tuple[tuple[str, ...], bool]:
        """Wait until a blob claimed by another node has landed or its claimer failed: where
        it is (``registry/repository``; none when its claimer failed, and the blob is to be
        uploaded) and whether that node put it there (uploaded or mounted, not found)."""
        entry = self._theirs[(registry, digest)]
        while not entry.done.wait(0.2):
            if self._cancelled is not None and self._cancelled.is_set():
                raise BuildError("interrupted")
        if entry.repository is None:
            return (), False
        return (f"{registry}/{entry.repository}",), entry.added

    def landed(self, registry: str, repository: str, digest: str, added: bool = False) -> None:
        """The blob is in ``repository`` (``added``: put there by this run, not found there):
        wake whoever waits for it (if it is this claim's)."""
        entry = self._mine.get((registry, digest))
        if entry is not None and not entry.done.is_set():
            entry.repository, entry.added = repository, added
            entry.done.set()

    def release(self) -> None:
        """Release every claim not landed yet as failed: its waiters upload it themselves."""
        for entry in self._mine.values():
            entry.done.set()


class _Sink:
    """The store, as the BlobSink the pull expects."""

    def __init__(self, store) -> None:
        self.store = store

    def has_blob(self, digest: str) -> bool:
        return self.store.has_blob(digest)

    def read_bytes(self, digest: str) -> bytes:
        return self.store.read_bytes(digest)

    def add_file(self, tmp_path, expected_digest: str) -> None:
        self.store.add_file(tmp_path, expected_digest)

    def put_bytes(self, data: bytes, expected_digest: str) -> None:
        self.store.put_bytes(data, expected_digest)

    def tmp_dir(self):
        return self.store.tmp_dir()
