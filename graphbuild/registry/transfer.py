"""Pulling one platform of an image into a local store, and the transactional push.

``publish`` moves no tag until everything every tag needs is in the registry and every index
has been checked: phase 1 uploads blobs (once per registry: HEAD first, then a cross-repository
mount, then an upload; a blob another push of the run has just added is mounted first, and HEADed
only if that is refused; every blob and repository in parallel), image manifests and indexes by
digest; phase 2 verifies each index against the registry and the image configs; phase 3 moves
the tags, in parallel. ``move_tags`` is phase 3 alone, for `run --push`, whose push nodes run
phases 1 and 2 for one output each. The stores on both sides are protocols, so any content store
that can list, read and add blobs by digest will do.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from graphbuild import platforms
from graphbuild.errors import BuildError

from . import limits
from .client import RegistryClient
from .digests import (
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    invalid_reference,
    is_digest,
)
from .errors import DigestMismatchError, RegistryError
from .reference import Reference, parse_reference

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

Descriptor = Mapping[str, Any]
EventFn = Callable[[str, str, str], None]
DEFAULT_WORKERS = 8
# Layers a registry may not serve (Windows base layers): referenced by URL, never copied.
FOREIGN_LAYER_MARKERS = ("foreign", "nondistributable")


class BlobSink(Protocol):
    """Where pulled content goes. ``add_file`` moves a verified temp file (from ``tmp_dir``,
    so the move is a rename on one file system) into the store."""

    def has_blob(self, digest: str) -> bool: ...
    def read_bytes(self, digest: str) -> bytes: ...
    def add_file(self, tmp_path: Path, expected_digest: str) -> None: ...
    def put_bytes(self, data: bytes, expected_digest: str) -> None: ...
    def tmp_dir(self) -> Path: ...


class BlobSource(Protocol):
    """Where pushed content comes from."""

    def open_blob(self, digest: str) -> BinaryIO: ...
    def read_bytes(self, digest: str) -> bytes: ...
    def blob_size(self, digest: str) -> int: ...


class PublishError(BuildError):
    """A push failed; the message says which tags, if any, were moved."""

    def __init__(self, message: str, *, tagged: Iterable[str] = (),
                 causes: Iterable[BaseException] = ()) -> None:
        super().__init__(message)
        self.tagged = list(tagged)
        self.causes = list(causes)


# -- pull ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PulledImage:
    reference: Reference  # pinned to the digest that was resolved (index or manifest)
    descriptor: dict[str, Any]  # the platform's image manifest, with its platform
    manifest: bytes
    config: bytes
    index_digest: str | None
    blobs_fetched: int
    bytes_fetched: int


def pull_image(client: RegistryClient, ref: Reference | str,
               platform: platforms.Platform | str, sink: BlobSink, *,
               max_workers: int = 4) -> PulledImage:
    """Fetch one platform of an image (manifest, config, layers) into ``sink``.

    An index is resolved to the entry matching ``platform`` (arm64's v8 equals no variant).
    Every blob is verified against its digest and size; nothing the sink has is fetched.
    """
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    plat = platforms.parse(platform) if isinstance(platform, str) else platform
    fetcher = _Fetcher(client, ref.repository, sink)
    root_data, root_type, root_digest = fetcher.manifest(ref.ref, None)
    pinned = ref.with_digest(root_digest)
    index_digest = None
    if root_type in INDEX_TYPES:
        index_digest = root_digest
        entry = _select_platform(_parse_checked(root_data, root_digest, ref), plat, pinned)
        data, media_type, digest = fetcher.manifest(entry["digest"], entry)
        descriptor = {**entry}
    else:
        data, media_type, digest = root_data, root_type, root_digest
        descriptor = {"mediaType": media_type, "digest": digest, "size": len(data)}
    manifest = _parse_checked(data, digest, ref)
    if "config" not in manifest:
        raise RegistryError(ref.registry, ref.repository, f"pull {ref.ref}",
                            f"{digest} ({media_type}) is not an image manifest")
    config = fetcher.small_blob(manifest["config"])
    if index_digest is None:
        _check_config_platform(json.loads(config), plat, pinned)
        descriptor["platform"] = platforms.from_oci(json.loads(config)).oci()
    fetcher.layers(manifest.get("layers") or [], max_workers)
    return PulledImage(pinned, descriptor, data, config, index_digest,
                       fetcher.fetched, fetcher.bytes_fetched)


def _parse_checked(data: bytes, digest: str, ref: Reference) -> Any:
    """A pulled manifest or index, parsed; one naming a malformed digest is refused here,
    before any of its digests becomes a path in the store."""
    parsed = json.loads(data)
    bad = invalid_reference(parsed)
    if bad is not None:
        raise RegistryError(ref.registry, ref.repository, f"pull {ref.ref}",
                            f"{digest} names an invalid digest {bad!r}")
    return parsed


class _Fetcher:
    """Fetches into the sink whatever it lacks, counting what crossed the network."""

    def __init__(self, client: RegistryClient, repo: str, sink: BlobSink) -> None:
        self.client, self.repo, self.sink = client, repo, sink
        self.fetched = 0
        self.bytes_fetched = 0
        self._lock = threading.Lock()  # layers arrive on several threads

    def _count(self, size: int) -> None:
        with self._lock:
            self.fetched += 1
            self.bytes_fetched += size

    def manifest(self, ref: str, descriptor: Descriptor | None) -> tuple[bytes, str, str]:
        local = ref if is_digest(ref) else self._tag_digest(ref)
        if local and self.sink.has_blob(local):
            data = self.sink.read_bytes(local)
            _check_bytes(data, local, descriptor, self.client.registry, self.repo)
            return data, _manifest_type(data, descriptor), local
        data, media_type, digest = self.client.get_manifest(self.repo, ref)
        _check_bytes(data, digest, descriptor, self.client.registry, self.repo)
        self.sink.put_bytes(data, digest)
        self._count(len(data))
        return data, media_type or _manifest_type(data, descriptor), digest

    def _tag_digest(self, tag: str) -> str | None:
        """What the tag names now (a HEAD: no body crosses the network)."""
        found = self.client.head_manifest(self.repo, tag)
        return found.digest if found else None

    def small_blob(self, descriptor: Descriptor) -> bytes:
        digest = descriptor["digest"]
        if self.sink.has_blob(digest):
            return self.sink.read_bytes(digest)
        return self._store(descriptor, keep=True)

    def layers(self, layers: list[Descriptor], max_workers: int) -> None:
        wanted: dict[str, Descriptor] = {}
        for layer in layers:
            if any(m in layer.get("mediaType", "") for m in FOREIGN_LAYER_MARKERS):
                log.debug("not fetching foreign layer %s", layer["digest"])
                continue
            if not self.sink.has_blob(layer["digest"]):
                wanted.setdefault(layer["digest"], layer)
        _run_all([lambda d=d: self._store(d) for d in wanted.values()], max_workers)

    def _store(self, descriptor: Descriptor, *, keep: bool = False) -> bytes:
        """Download into the sink's temp dir (verified), then hand the file to the sink.
        Returns the content when ``keep`` (configs are small and needed at once)."""
        digest, size = descriptor["digest"], int(descriptor["size"])
        fd, name = tempfile.mkstemp(prefix="pull-", dir=self.sink.tmp_dir())
        path = Path(name)
        try:
            with os.fdopen(fd, "w+b") as handle:
                self.client.get_blob(self.repo, digest, handle, size)
            data = path.read_bytes() if keep else b""
            self.sink.add_file(path, digest)
        finally:
            path.unlink(missing_ok=True)  # gone already unless something failed
        self._count(size)
        return data


def _check_bytes(data: bytes, digest: str, descriptor: Descriptor | None, registry: str,
                 repo: str) -> None:
    if digest.startswith("sha256:") and digest_of(data) != digest:
        raise DigestMismatchError(registry, repo, f"read manifest {digest}",
                                  f"its content hashes to {digest_of(data)}")
    if descriptor is not None and int(descriptor.get("size", len(data))) != len(data):
        raise DigestMismatchError(registry, repo, f"read manifest {digest}",
                                  f"{len(data)} bytes, the index says {descriptor['size']}")


def _manifest_type(data: bytes, descriptor: Descriptor | None) -> str:
    if descriptor and descriptor.get("mediaType"):
        return str(descriptor["mediaType"])
    parsed = json.loads(data)
    if parsed.get("mediaType"):
        return str(parsed["mediaType"])
    return OCI_INDEX if "manifests" in parsed else OCI_MANIFEST


def _select_platform(index: Mapping[str, Any], plat: platforms.Platform,
                     ref: Reference) -> Descriptor:
    entries = [m for m in index.get("manifests") or [] if m.get("platform")]
    for entry in entries:
        if platforms.from_oci(entry["platform"]).same_as(plat):
            return entry
    offered = sorted({str(platforms.from_oci(e["platform"])) for e in entries}) or ["none"]
    raise RegistryError(ref.registry, ref.repository, f"pull {ref.ref}",
                        f"no image for {plat} in the index (it has {', '.join(offered)})")


def _check_config_platform(config: Mapping[str, Any], plat: platforms.Platform,
                           ref: Reference) -> None:
    got = platforms.from_oci(config)
    # A config may omit the variant (32-bit ARM images often do): os and arch must agree.
    if (got.os, got.arch) != (plat.os, plat.arch) or (got.variant and not got.same_as(plat)):
        raise RegistryError(ref.registry, ref.repository, f"pull {ref.ref}",
                            f"the image is for {got}, not {plat}")


# -- publish ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PushTarget:
    """One repository: the manifests and indexes to upload, and the tags to move.

    ``forced`` lists ``(index digest, child digest)`` entries whose platform may differ from
    the child's image config (``force: true`` in a manifest's ``platform_annotations``).
    """

    registry: str
    repository: str
    roots: tuple[Descriptor, ...]
    tags: Mapping[str, str] = field(default_factory=dict)  # tag -> digest of one of the roots
    forced: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def to(cls, reference: Reference | str, roots: Iterable[Descriptor],
           tags: Mapping[str, str] | None = None,
           forced: Iterable[tuple[str, str]] = ()) -> PushTarget:
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        return cls(ref.registry, ref.repository, tuple(roots), dict(tags or {}),
                   frozenset(forced))

    def ref(self, tag: str) -> str:
        return f"{self.registry}/{self.repository}:{tag}"


@dataclass(frozen=True)
class PushPlan:
    targets: tuple[PushTarget, ...]
    # Where blobs are known to be already (digest -> "registry/repository" names), such as the
    # repository a base image was pulled from: mount sources when no pushed repository has them.
    known_locations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Digests of known_locations to mount without a HEAD first: blobs this run has just put
    # into their registry (uploaded or mounted, not found there), which the plan's repositories
    # are then unlikely to have. A refused mount falls back to the HEAD (and the upload).
    mount_first: frozenset[str] = frozenset()

    def mount_sources(self, registry: str, digest: str) -> list[str]:
        prefix = f"{registry}/"
        return [name[len(prefix):] for name in self.known_locations.get(digest, ())
                if name.startswith(prefix)]


@dataclass
class PushResult:
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    bytes_uploaded: int = 0
    manifests_uploaded: int = 0
    manifests_present: int = 0
    tags_moved: list[str] = field(default_factory=list)
    tags_unchanged: list[str] = field(default_factory=list)
    # (registry, repository, digest) of every blob and manifest this push put into a repository
    # that did not have it (mounted, uploaded, PUT)
    added: set[tuple[str, str, str]] = field(default_factory=set)

    def merge(self, other: PushResult) -> None:
        for name in ("blobs_uploaded", "blobs_mounted", "blobs_present", "bytes_uploaded",
                     "manifests_uploaded", "manifests_present"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.added |= other.added


@dataclass(frozen=True)
class _Manifest:
    digest: str
    media_type: str
    data: bytes
    parsed: Mapping[str, Any]
    level: int  # 0 for image manifests, 1 + the deepest child for indexes

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or "manifests" in self.parsed

    def children(self) -> list[Descriptor]:
        if self.is_index:
            return list(self.parsed.get("manifests") or [])
        return [self.parsed["config"], *(self.parsed.get("layers") or [])]


@dataclass
class _Graph:
    """What one target needs: its manifests (by digest) and its blobs (digest -> size)."""

    manifests: dict[str, _Manifest] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)


BlobFn = Callable[[str, str, str, bool], None]


class PendingBlobs(Protocol):
    """Blobs that another push of the same run is putting into a registry right now (the
    ledger of `run --push`)."""

    def pending(self, registry: str, digest: str) -> bool: ...

    def where(self, registry: str, digest: str) -> tuple[tuple[str, ...], bool]:
        """Wait until the blob has landed: where (``registry/repository`` names, none if that
        push failed) and whether that push put it there (uploaded or mounted, not found)."""
        ...


def publish(plan: PushPlan, source: BlobSource, clients: Mapping[str, RegistryClient],
            on_event: EventFn | None = None, *, max_workers: int = DEFAULT_WORKERS,
            on_blob: BlobFn | None = None, pending: PendingBlobs | None = None) -> PushResult:
    """Push every target of ``plan``; move tags only once everything is uploaded and checked.

    ``on_blob(registry, repository, digest, added)`` is called (on the calling thread) as soon
    as a blob is known to be in a repository: found there (``added`` False), mounted or
    uploaded (True). A blob ``pending`` says another push is putting in the registry is waited
    for (on a worker, while the other blobs go ahead) and then mounted from where it landed:
    without a HEAD first when that push added it (``PushPlan.mount_first``).

    Raises PublishError: before phase 3 its message says nothing was tagged; during phase 3 it
    lists the tags that were moved and those that were not.
    """
    graphs = [_walk(target, source) for target in plan.targets]
    _check_plan(plan, clients)
    result = PushResult()
    try:
        result.merge(_upload_blobs(plan, graphs, source, clients, max_workers, on_blob,
                                   pending))
        manifests, confirmed = _upload_manifests(plan, graphs, clients, max_workers,
                                                 result.added)
        result.merge(manifests)
        _verify_indexes(plan, graphs, source, clients, max_workers, confirmed)
    except (RegistryError, OSError) as exc:
        raise PublishError(f"push failed, nothing was tagged: {exc}", causes=[exc]) from exc
    _move_tags(plan, graphs, clients, on_event, result, max_workers, result.added)
    return result


def move_tags(plan: PushPlan, source: BlobSource, clients: Mapping[str, RegistryClient],
              on_event: EventFn | None = None, *, added: Iterable[tuple[str, str, str]] = (),
              max_workers: int = DEFAULT_WORKERS) -> PushResult:
    """Phase 3 alone, for a caller that has had ``publish`` upload and check every target of
    ``plan`` (without tags) and got no error: move the tags, uploading nothing. ``added`` is
    what those pushes reported in ``PushResult.added``: a tag cannot already name a manifest
    that its repository did not have, so it is moved without asking."""
    graphs = [_walk(target, source) for target in plan.targets]
    _check_plan(plan, clients)
    result = PushResult()
    _move_tags(plan, graphs, clients, on_event, result, max_workers, set(added))
    return result


def blobs_of(plan: PushPlan, source: BlobSource) -> list[tuple[str, str]]:
    """The (registry, digest) of every blob (configs, layers) the plan pushes, from the
    manifests in ``source``: no network."""
    return list(dict.fromkeys((target.registry, digest) for target in plan.targets
                              for digest in _walk(target, source).blobs))


def _walk(target: PushTarget, source: BlobSource) -> _Graph:
    graph = _Graph()
    for root in target.roots:
        _walk_manifest(root, source, graph, target)
    return graph


def _walk_manifest(descriptor: Descriptor, source: BlobSource, graph: _Graph,
                   target: PushTarget) -> int:
    """Record a manifest and everything below it; return its level."""
    digest = descriptor["digest"]
    if digest in graph.manifests:
        return graph.manifests[digest].level
    data = _read_local(source, digest, target)
    if digest_of(data) != digest or len(data) != int(descriptor.get("size", len(data))):
        raise PublishError(f"push to {target.registry}/{target.repository} failed, nothing was "
                           f"tagged: the local manifest {digest} does not match its digest/size")
    node = _Manifest(digest, _manifest_type(data, descriptor), data, json.loads(data), 0)
    if node.is_index:
        children = [_walk_manifest(child, source, graph, target) for child in node.children()]
        node = replace(node, level=1 + max(children, default=0))
    else:
        graph.blobs.update((child["digest"], int(child["size"])) for child in node.children())
    graph.manifests[digest] = node
    return node.level


def _read_local(source: BlobSource, digest: str, target: PushTarget) -> bytes:
    try:
        return source.read_bytes(digest)
    except (KeyError, OSError):
        raise PublishError(f"push to {target.registry}/{target.repository} failed, nothing was "
                           f"tagged: {digest} is not in the local store") from None


def _check_plan(plan: PushPlan, clients: Mapping[str, RegistryClient]) -> None:
    """Mistakes that need no network: found before anything is uploaded."""
    problems = []
    for target in plan.targets:
        if target.registry not in clients:
            problems.append(f"no registry client for {target.registry}")
        roots = {r["digest"] for r in target.roots}
        for tag, digest in target.tags.items():
            if digest not in roots:
                problems.append(f"tag {target.ref(tag)} names {digest}, which is not pushed")
            try:
                Reference(target.registry, target.repository).with_tag(tag)
            except ValueError as exc:
                problems.append(str(exc))
    if problems:
        raise PublishError("push failed, nothing was tagged: " + "; ".join(problems))


@dataclass
class _BlobJob:
    """One blob in one registry: the repositories needing it, and what their HEADs said."""

    registry: str
    digest: str
    size: int
    repos: list[str]
    hints: list[str]  # mount sources outside ``repos`` (PushPlan.known_locations)
    mount_first: bool = False  # each repository tried a mount from ``hints`` before its HEAD
    have: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _upload_blobs(plan: PushPlan, graphs: list[_Graph], source: BlobSource,
                  clients: Mapping[str, RegistryClient], max_workers: int,
                  on_blob: BlobFn | None = None,
                  pending: PendingBlobs | None = None) -> PushResult:
    """Every blob into every repository needing it, a blob crossing the network once per
    registry. All HEADs go out in parallel; a blob no repository has is then mounted from a
    known location or uploaded into one repository, and mounted from there into the others,
    again in parallel. A ``mount_first`` blob is mounted without a HEAD (a refused mount is
    followed by the HEAD). Follow-ups are submitted from this thread as their HEAD or first
    copy finishes, so small blobs do not wait for big ones."""
    jobs = _blob_jobs(plan, graphs, source)
    result = PushResult()

    def landed(job: _BlobJob, repo: str, added: bool) -> None:
        job.have.append(repo)
        if on_blob is not None:
            on_blob(job.registry, repo, job.digest, added)

    def copy(job: _BlobJob, repo: str, origins: list[str]) -> None:
        loop.submit(lambda: _mount_or_upload(clients[job.registry], job, repo, origins, source),
                    lambda how: copied(job, repo, how))

    def count(job: _BlobJob, repo: str, how: str) -> None:
        result.added.add((job.registry, repo, job.digest))
        if how == "mounted":
            result.blobs_mounted += 1
        else:
            result.blobs_uploaded += 1
            result.bytes_uploaded += job.size

    def copied(job: _BlobJob, repo: str, how: str) -> None:
        count(job, repo, how)
        first = not job.have
        landed(job, repo, True)
        if first:  # the first copy in this registry: the others mount it
            for other in job.missing[1:]:
                copy(job, other, [repo])

    def answered(job: _BlobJob, repo: str, how: str) -> None:
        """``how``: what the HEAD said ("present", "missing") or "mounted" (mount_first)."""
        if how == "mounted":
            count(job, repo, how)
            landed(job, repo, True)
        elif how == "present":
            result.blobs_present += 1
            landed(job, repo, False)
        else:
            job.missing.append(repo)
        if len(job.have) + len(job.missing) < len(job.repos) or not job.missing:
            return
        job.missing.sort(key=job.repos.index)  # the first copy goes where the plan says first
        if job.have:
            for other in job.missing:
                copy(job, other, job.have[:1])
        else:  # the hints refused a mount already if mounted first: upload
            copy(job, job.missing[0], [] if job.mount_first else job.hints)

    def check(job: _BlobJob, mount_first: bool) -> None:
        job.mount_first = mount_first and bool(job.hints)
        first = job.hints if job.mount_first else []
        for repo in job.repos:
            loop.submit(lambda r=repo: _check(clients[job.registry], job, r, first),
                        lambda how, r=repo: answered(job, r, how))

    def located(job: _BlobJob, found: tuple[tuple[str, ...], bool]) -> None:
        names, added = found
        prefix = f"{job.registry}/"
        job.hints += [name[len(prefix):] for name in names if name.startswith(prefix)
                      and name[len(prefix):] not in job.repos + job.hints]
        check(job, added)

    with _TaskLoop(max_workers) as loop:
        for job in jobs:
            if pending is not None and pending.pending(job.registry, job.digest):
                loop.submit(lambda j=job: pending.where(j.registry, j.digest),
                            lambda found, j=job: located(j, found))
            else:
                check(job, job.digest in plan.mount_first)
    return result


def _blob_jobs(plan: PushPlan, graphs: list[_Graph], source: BlobSource) -> list[_BlobJob]:
    """One job per blob and registry, with the repositories needing it in plan order; the
    biggest blobs first."""
    jobs: dict[tuple[str, str], _BlobJob] = {}
    for target, graph in zip(plan.targets, graphs, strict=True):
        for digest, size in graph.blobs.items():
            job = jobs.get((target.registry, digest))
            if job is None:
                job = jobs[(target.registry, digest)] = _BlobJob(
                    target.registry, digest, size, [],
                    plan.mount_sources(target.registry, digest))
            if target.repository not in job.repos:
                job.repos.append(target.repository)
    for job in jobs.values():
        _check_local_size(source, job.digest, job.size)
        job.hints = [h for h in job.hints if h not in job.repos]
    # the biggest first: they take longest, and other pushes may be waiting for them
    return sorted(jobs.values(), key=lambda job: -job.size)


def _check(client: RegistryClient, job: _BlobJob, repo: str, mount_from: list[str]) -> str:
    """Whether ``repo`` has the blob ("present", "missing"), or "mounted" when a mount from
    ``mount_from`` (tried first, without a HEAD) worked."""
    if any(client.mount_blob(repo, job.digest, origin) for origin in mount_from):
        return "mounted"
    return "present" if client.blob_exists(repo, job.digest) else "missing"


def _mount_or_upload(client: RegistryClient, job: _BlobJob, repo: str, origins: list[str],
                     source: BlobSource) -> str:
    """Mount from the first origin that works, else upload; says which it did."""
    if any(client.mount_blob(repo, job.digest, origin) for origin in origins):
        return "mounted"
    client.upload_blob(repo, job.digest, job.size, lambda: source.open_blob(job.digest))
    return "uploaded"


def _check_local_size(source: BlobSource, digest: str, size: int) -> None:
    try:
        actual = source.blob_size(digest)
    except (KeyError, OSError):
        raise PublishError(f"push failed, nothing was tagged: blob {digest} is not in the "
                           "local store") from None
    if actual != size:
        raise PublishError(f"push failed, nothing was tagged: the local blob {digest} has "
                           f"{actual} bytes, its manifest says {size}")


def _upload_manifests(plan: PushPlan, graphs: list[_Graph],
                      clients: Mapping[str, RegistryClient], max_workers: int,
                      added: set[tuple[str, str, str]] = frozenset(),
                      ) -> tuple[PushResult, set[tuple[str, str, str]]]:
    """Level by level (image manifests, then indexes over them, ...): a registry accepts an
    index only when its children are there. A manifest is HEADed first unless a child of it
    was just ``added`` to the repository (then the repository cannot have it: it is PUT right
    away, and were that guess ever wrong, PUTting the same bytes again changes nothing). Also
    returns the (registry, repository, digest) of every manifest this confirmed in the
    registry (found by digest, or PUT with its ``Docker-Content-Digest`` checked)."""
    result = PushResult()
    confirmed: set[tuple[str, str, str]] = set()
    depth = max((m.level for g in graphs for m in g.manifests.values()), default=-1)
    for level in range(depth + 1):
        work = [(target, manifest) for target, graph in zip(plan.targets, graphs, strict=True)
                for manifest in graph.manifests.values() if manifest.level == level]
        fresh = set(added) | result.added
        new = [any((target.registry, target.repository, child["digest"]) in fresh
                   for child in manifest.children()) for target, manifest in work]
        tasks = [lambda t=target, m=manifest, n=n: _ensure_manifest(clients[t.registry], t, m, n)
                 for (target, manifest), n in zip(work, new, strict=True)]
        for (target, manifest), uploaded in zip(work, _run_all(tasks, max_workers),
                                                strict=True):
            result.manifests_uploaded += int(uploaded)
            result.manifests_present += int(not uploaded)
            where = (target.registry, target.repository, manifest.digest)
            confirmed.add(where)
            if uploaded:
                result.added.add(where)
    return result, confirmed


def _ensure_manifest(client: RegistryClient, target: PushTarget, manifest: _Manifest,
                     new: bool = False) -> bool:
    """Get a manifest into the repository by digest; True if it was PUT. ``new``: known to be
    missing, no HEAD."""
    if not new:
        found = client.head_manifest(target.repository, manifest.digest)
        if found is not None and found.digest == manifest.digest:
            return False
    client.put_manifest(target.repository, manifest.digest, manifest.data, manifest.media_type)
    return True


def _verify_indexes(plan: PushPlan, graphs: list[_Graph], source: BlobSource,
                    clients: Mapping[str, RegistryClient], max_workers: int,
                    confirmed: set[tuple[str, str, str]] = frozenset()) -> None:
    tasks = [lambda t=target, m=manifest, g=graph:
             _index_problems(clients[t.registry], t, m, g, source, confirmed)
             for target, graph in zip(plan.targets, graphs, strict=True)
             for manifest in graph.manifests.values() if manifest.is_index]
    problems = [p for found in _run_all(tasks, max_workers) for p in found]
    if problems:
        raise PublishError("push failed, nothing was tagged: " + "; ".join(problems))


def _index_problems(client: RegistryClient, target: PushTarget, index: _Manifest,
                    graph: _Graph, source: BlobSource,
                    confirmed: set[tuple[str, str, str]] = frozenset()) -> list[str]:
    """What is wrong with one index. A child this publish has just confirmed in the registry
    (``confirmed``) is not asked for again."""
    where = f"index {target.registry}/{target.repository}@{index.digest}"
    problems, seen = [], {}
    for entry in index.children():
        child = entry["digest"]
        if (target.registry, target.repository, child) not in confirmed:
            found = client.head_manifest(target.repository, child)
            if found is None or found.digest != child:
                problems.append(f"{where}: its entry {child} is not in the registry")
        if not entry.get("platform") or graph.manifests[child].is_index:
            continue
        plat = platforms.from_oci(entry["platform"])
        if plat.os == "unknown":  # attestation manifests (BuildKit) carry unknown/unknown
            continue
        key = (plat.os, plat.arch, plat.oci_variant, plat.os_version)
        if key in seen:
            problems.append(f"{where}: platform {plat} appears twice ({seen[key]} and {child})")
        seen[key] = child
        if (index.digest, child) not in target.forced:
            config = _config_platform(graph.manifests[child], source)
            if not config.same_as(plat):
                problems.append(f"{where}: entry {child} says {plat} but its image config says "
                                f"{config} (force the platform if this is intended)")
    return problems


def _config_platform(manifest: _Manifest, source: BlobSource) -> platforms.Platform:
    return platforms.from_oci(json.loads(source.read_bytes(manifest.parsed["config"]["digest"])))


def _move_tags(plan: PushPlan, graphs: list[_Graph], clients: Mapping[str, RegistryClient],
               on_event: EventFn | None, result: PushResult,
               max_workers: int = DEFAULT_WORKERS,
               added: set[tuple[str, str, str]] = frozenset()) -> None:
    """Phase 3: the tags in parallel (HEAD, then PUT unless the tag already names the digest;
    no HEAD when the manifest was just ``added`` to the repository, where no tag can name it
    yet), level by level: the tags of image manifests before those of indexes over them. (A
    registry storing on a file system rewrites a manifest's link in the repository on every
    PUT of it, by tag or digest, and an index PUT meanwhile may find that child missing.)
    After a failure no further tag move starts; the error lists what moved and what did not,
    in plan order."""
    pending = [(t, g, tag, digest) for t, g in zip(plan.targets, graphs, strict=True)
               for tag, digest in t.tags.items()]
    moved: set[int] = set()
    unchanged: set[int] = set()

    def move(target: PushTarget, graph: _Graph, tag: str, digest: str) -> bool:
        manifest = graph.manifests[digest]
        client = clients[target.registry]
        if (target.registry, target.repository, digest) not in added:
            found = client.head_manifest(target.repository, tag)
            if found is not None and found.digest == digest:
                return False
        client.put_manifest(target.repository, tag, manifest.data, manifest.media_type)
        return True

    def done(position: int, did_move: bool) -> None:
        (moved if did_move else unchanged).add(position)

    def refs(positions: Iterable[int]) -> list[str]:
        return [pending[i][0].ref(pending[i][2]) for i in sorted(positions)]

    levels = sorted({g.manifests[digest].level for _, g, _, digest in pending})
    try:
        for level in levels:
            batch = [p for p, (_, g, _, digest) in enumerate(pending)
                     if g.manifests[digest].level == level]
            try:
                with _TaskLoop(max_workers) as loop:
                    for position in batch:
                        loop.submit(lambda item=pending[position]: move(*item),
                                    lambda did_move, p=position: done(p, did_move))
            finally:  # a `pushed` event for each tag moved, in plan order
                for position in batch:
                    target, _, tag, digest = pending[position]
                    if position in moved and on_event is not None:
                        on_event("pushed", target.ref(tag), digest)
    except RegistryError as exc:
        not_moved = set(range(len(pending))) - moved - unchanged
        raise PublishError(
            f"push failed while moving tags: moved {', '.join(refs(moved)) or 'none'};"
            f" not moved {', '.join(refs(not_moved))}: {exc}",
            tagged=refs(moved), causes=[exc]) from exc
    finally:
        result.tags_moved.extend(refs(moved))
        result.tags_unchanged.extend(refs(unchanged))


class _TaskLoop:
    """A bounded pool whose finished tasks may start follow-ups: ``submit(task, then)`` runs
    ``task`` on a worker and ``then(its result)`` on the thread that leaves the ``with`` block,
    which may submit more (from that thread, never from a worker, so nothing waits for a slot
    in a full pool). Leaving the block waits for all of it. On the first failure, what has not
    started is cancelled, what runs finishes (an upload cut midway helps nobody) and has its
    ``then`` called (so a tag moved meanwhile is counted as moved; follow-ups it submits are
    dropped), and that failure is raised."""

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_workers))
        self._then: dict[Future, Callable[[Any], None]] = {}
        self._finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._failed = False

    def submit(self, task: Callable[[], Any], then: Callable[[Any], None]) -> None:
        if not self._failed:
            future = self._pool.submit(limits.carry(task))  # within the caller's deadline
            self._then[future] = then
            future.add_done_callback(self._finished.put)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        errors: list[BaseException] = [exc] if exc is not None else []
        if isinstance(exc, KeyboardInterrupt):
            limits.cancel()  # what runs stops now, not at its end
        try:
            while self._then and not errors:
                future = self._finished.get()
                then = self._then.pop(future)
                try:
                    then(future.result())
                except BaseException as failure:  # noqa: BLE001 - raised below
                    errors.append(failure)
        except KeyboardInterrupt:
            limits.cancel()
            raise
        finally:
            self._failed = True
            for future in self._then:
                future.cancel()
            self._pool.shutdown(wait=True)
        for future, then in self._then.items():  # in flight at the failure, finished since
            if not future.cancelled() and future.exception() is None:
                try:
                    then(future.result())
                except Exception as failure:  # noqa: BLE001 - logged with the others below
                    errors.append(failure)
        errors += [f.exception() for f in self._then
                   if not f.cancelled() and f.exception() is not None]
        for extra in errors[1:]:
            log.info("also failed: %s", extra)
        if errors and exc is None:
            raise errors[0]


def _run_all(tasks: list[Callable[[], Any]], max_workers: int) -> list[Any]:
    """Run tasks on a bounded pool. On the first failure, cancel what has not started, let
    what runs finish (an upload cut midway helps nobody), and raise that failure."""
    if len(tasks) <= 1 or max_workers <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(tasks))) as pool:
        futures: list[Future] = [pool.submit(limits.carry(task)) for task in tasks]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except KeyboardInterrupt:
            limits.cancel()
            raise
        if any(f.done() and f.exception() is not None for f in futures):
            for future in futures:
                future.cancel()
            wait(futures)
            errors = [f.exception() for f in futures if not f.cancelled() and f.exception()]
            for extra in errors[1:]:
                log.info("also failed: %s", extra)
            raise errors[0]  # type: ignore[misc]
        return [f.result() for f in futures]
