"""Registry access for one workspace: one client per registry (plain HTTP only for loopback and
hosts marked insecure, mirrors for pulls), tag resolution once per run, and pulls into the store."""

from __future__ import annotations

import sys
import threading

from .errors import BuildError, UserError
from .workspace import Workspace

_REMOTES: dict[str, Remote] = {}
_GUARD = threading.Lock()


class Remote:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._clients: dict[str, object] = {}
        self._resolved: dict[str, str] = {}
        self._lock = threading.Lock()
        self._credentials = None

    @classmethod
    def of(cls, ws: Workspace) -> Remote:
        """The run's Remote for this workspace (tags resolve once per run)."""
        with _GUARD:
            key = str(ws.root)
            if key not in _REMOTES:
                _REMOTES[key] = cls(ws)
            return _REMOTES[key]

    def client(self, registry: str):
        from .registry.client import RegistryClient
        from .registry.credentials import DockerConfigCredentials

        with self._lock:
            if registry not in self._clients:
                if self._credentials is None:
                    self._credentials = DockerConfigCredentials()
                self._clients[registry] = RegistryClient(
                    registry, insecure=self.ws.insecure(registry), credentials=self._credentials)
            return self._clients[registry]

    def clients_for(self, targets) -> dict:
        """registry -> client for every registry the push targets name."""
        return {t.registry: self.client(t.registry) for t in targets}

    def pull_source(self, ref):
        """(client, reference) to pull from: the mirror when WORKSPACE.yaml names one."""
        mirror = (self.ws.registries.get(ref.registry) or {}).get("mirror")
        if mirror:
            from .registry.reference import Reference

            ref = Reference(mirror, ref.repository, ref.tag, ref.digest)
        return self.client(ref.registry), ref

    def resolve(self, text: str) -> str:
        """``text`` pinned by digest: a digest reference as is, a tag looked up once per run."""
        from .registry.errors import RegistryError
        from .registry.reference import ReferenceError, parse_reference

        try:
            ref = parse_reference(text)
        except ReferenceError as exc:
            raise UserError(str(exc), hint="write host/repo:tag or host/repo@sha256:...") from None
        if ref.digest:
            return str(ref)
        with self._lock:
            if text in self._resolved:
                return self._resolved[text]
        client, src = self.pull_source(ref)
        try:
            info = client.head_manifest(src.repository, src.ref)
        except RegistryError as exc:
            raise BuildError(f"cannot resolve {text}: {exc}") from None
        if info is None:
            raise BuildError(f"cannot resolve {text}: {ref.registry}/{ref.repository} has no "
                             f"tag {ref.ref}")
        pinned = str(ref.with_digest(info.digest))
        print(f"graphbuild: resolved {text} to {pinned} (pin it to skip this lookup)",
              file=sys.stderr)
        with self._lock:
            self._resolved[text] = pinned
        return pinned

    def pull(self, pinned: str, platform, store):
        """Fetch one platform of ``pinned`` into the store; returns the image descriptor."""
        from .registry.reference import parse_reference
        from .registry.transfer import pull_image

        client, src = self.pull_source(parse_reference(pinned))
        return pull_image(client, src, platform, _Sink(store)).descriptor


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
