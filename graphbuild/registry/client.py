"""A client for the OCI distribution API (one registry host).

Plain HTTP only for loopback hosts and hosts marked insecure, over a lean keep-alive pool
(``transport.PlainHTTP``); HTTPS with certificate checks otherwise, over httpx (imported only
then). Authentication follows the registry's challenges (see ``auth.py``). Transient
failures (429, 5xx, broken connections, timeouts) are retried a bounded number of times with
backoff, and within the run's retry budget (``limits.RetryBudget``). Every request has an
overall deadline (``timeout`` plus what its bytes need at a slow line's pace, MIN_RATE), so a
registry that drips bytes cannot hold it (a timeout, retried); it also stops at the deadline of
the caller's ``limits.scope`` (a push) or as soon as that is cancelled (Ctrl-C), and is then
not retried. Every error names the registry, the repository, the operation and what the registry
said, with credentials redacted. Thread-safe: one client serves a whole push's worker pool.
Clients sharing a ``WriteLedger`` write each (registry, repository, digest) once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

from . import limits
from .auth import Authenticator, AuthProblem, TokenRequest, merge_scopes, repository_scope
from .credentials import Credentials, CredentialsError, CredentialStore
from .digests import MANIFEST_TYPES, digest_of, hasher_for, is_digest
from .errors import (
    AuthenticationError,
    DigestMismatchError,
    Redactor,
    RegistryError,
    describe_response,
)
from .hosts import is_loopback
from .ledger import WriteLedger
from .reference import DOCKER_HUB, DOCKER_HUB_ENDPOINT
from .retry import RetryPolicy, is_retryable
from .transport import HttpxHTTP, PlainHTTP, Response, TransportError

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_RATE = 128 * 1024  # bytes/s: slower than this, a request's deadline passes
DEFAULT_CHUNK_THRESHOLD = 16 * MiB
DEFAULT_CHUNK_SIZE = 16 * MiB
READ_SIZE = 1 * MiB
# Manifests are small; a bigger answer is a misbehaving registry (containerd uses 4 MiB too).
MAX_MANIFEST_BYTES = 4 * MiB
# A blob this small is read into memory and sent in one piece with its headers.
SMALL_BODY = 1 * MiB
MAX_REDIRECTS = 10
# A blob download stops this far past the size its descriptor declares.
OVERRUN_MARGIN = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")

OpenFn = Callable[[], BinaryIO]
Body = bytes | Callable[[], Iterable[bytes]]


class TransientError(RegistryError):
    """A failure that may pass: 429, 5xx, a broken connection, a timeout."""


class StoppedError(RegistryError):
    """The caller's deadline passed (``limits.scope``), or its work was cancelled."""



@dataclass(frozen=True)
class ManifestInfo:
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class _Op:
    repository: str | None
    name: str


class ClientStats:
    """Thread-safe counters: requests, retries, blobs uploaded/mounted, bytes, manifests."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        return f"ClientStats({self.snapshot()})"


class RegistryClient:
    """The distribution API of one registry host (``host[:port]``, or ``docker.io``)."""

    def __init__(self, registry: str, *, insecure: bool = False,
                 credentials: Credentials | CredentialStore | None = None,
                 retry: RetryPolicy | None = None, timeout: float = 60.0,
                 chunk_threshold: int = DEFAULT_CHUNK_THRESHOLD,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, max_connections: int = 16,
                 transport: Any = None, ledger: WriteLedger | None = None) -> None:
        """``transport``: an ``httpx.BaseTransport`` to send every request through httpx with
        (the lean plain-HTTP path is then not used). ``ledger``: the run's writes, shared
        with its other clients (``writes``; a client of its own otherwise)."""
        if not registry or "/" in registry:
            raise ValueError(f"a registry is host[:port], not {registry!r}")
        self.registry = registry
        self.endpoint = DOCKER_HUB_ENDPOINT if registry == DOCKER_HUB else registry
        self.insecure = insecure
        plain = insecure or is_loopback(self.endpoint)
        self.base_url = f"{'http' if plain else 'https'}://{self.endpoint}"
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.writes = ledger or WriteLedger()
        self.chunk_threshold = chunk_threshold
        self.chunk_size = chunk_size
        self.stats = ClientStats()
        self.redact = Redactor()
        self._timeouts = (timeout, min(timeout, 15.0), max_connections)
        self._transport = transport
        self._plain = None if transport is not None else PlainHTTP(*self._timeouts)
        self._httpx: HttpxHTTP | None = None
        self._httpx_lock = threading.Lock()
        self._routes: dict[str, bool] = {}  # netloc -> served by the lean plain-HTTP pool
        self._auth = Authenticator(
            registry, credentials, self._send_plain, self.redact,
            plain_http_ok=is_loopback)  # marking a registry insecure trusts it, not its realm

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r}, auth={self._auth!r})"

    def close(self) -> None:
        if self._plain is not None:
            self._plain.close()
        if self._httpx is not None:
            self._httpx.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blobs -------------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        """HEAD the blob: True if the repository has it."""
        op = _Op(repo, f"check blob {digest}")
        with self._stops(op):
            if self.writes.written((self.registry, repo, digest)):
                return True
        response = self._request(op, "HEAD", self._url(repo, "blobs", digest),
                                 scopes=_pull(repo), follow=True)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._failure(op, response)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; False when the registry would rather have an upload."""
        op = _Op(repo, f"mount blob {digest} from {from_repo}")
        with self._stops(op), self.writes.once((self.registry, repo, digest)) as write:
            if write is None:  # this run has put it there already
                return True
            url = self._url(repo, "blobs", "uploads/")
            scopes = merge_scopes(_push(repo), _pull(from_repo))
            response = self._request(op, "POST", url, scopes=scopes,
                                     params={"mount": digest, "from": from_repo})
            if response.status_code == 201:
                self.stats.add("blobs_mounted")
                return True
            write.declined = True
            if response.status_code == 202:
                self._cancel_upload(op, response, scopes)
                return False
            raise self._failure(op, response)

    def upload_blob(self, repo: str, digest: str, size: int, open_fn: OpenFn) -> None:
        """Upload a blob streamed from ``open_fn()`` (called again for each attempt).

        A retry restarts the whole upload session: a registry cannot resume a session whose
        last answer was lost (distribution rejects a stale upload state).
        """
        op = _Op(repo, f"upload blob {digest}")
        with self._stops(op), self.writes.once((self.registry, repo, digest)) as write:
            if write is None:  # this run has put it there already
                return
            self._upload_retried(op, repo, digest, size, open_fn)
        self.stats.add("blobs_uploaded")
        self.stats.add("bytes_uploaded", size)

    def _upload_retried(self, op: _Op, repo: str, digest: str, size: int,
                        open_fn: OpenFn) -> None:
        attempt = 1
        while True:
            try:
                self._upload_once(op, repo, digest, size, open_fn)
                return
            except TransientError as exc:
                if getattr(exc, "spent", False):
                    raise
                if not self._may_retry(attempt, self.retry.attempts):
                    note = self._no_retry_note(attempt, self.retry.attempts)
                    raise TransientError(self.registry, repo, op.name,
                                         f"{exc.detail} (gave up after {attempt} uploads{note})",
                                         status=exc.status, codes=exc.codes) from None
            self._pause(attempt, None)
            attempt += 1
            if self.blob_exists(repo, digest):  # the lost answer may have been a success
                return

    def get_blob(self, repo: str, digest: str, dest: BinaryIO, size: int | None = None) -> int:
        """Stream a blob into the seekable file ``dest``, verifying digest (and size)."""
        op = _Op(repo, f"download blob {digest}")
        attempt = 1
        with self._stops(op):
            while True:
                dest.seek(0)
                dest.truncate()
                try:
                    written = self._download_once(op, repo, digest, dest, size)
                    break
                except TransientError:
                    if not self._may_retry(attempt, self.retry.attempts):
                        raise
                self._pause(attempt, None)
                attempt += 1
        self.stats.add("blobs_downloaded")
        self.stats.add("bytes_downloaded", written)
        return written

    # -- manifests ---------------------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str,
                     accept: Iterable[str] = MANIFEST_TYPES) -> tuple[bytes, str, str]:
        """``(bytes, media_type, digest)``; the digest is checked when fetching by digest and
        against ``Docker-Content-Digest`` when fetching by tag."""
        op = _Op(repo, f"get manifest {ref}")
        response = self._request(op, "GET", self._url(repo, "manifests", ref),
                                 scopes=_pull(repo), headers={"Accept": ", ".join(accept)},
                                 stream=True, follow=True)
        try:
            if response.status_code != 200:
                response.read()
                raise self._failure(op, response)
            data = self._read_capped(op, response)
        finally:
            response.close()
        digest = self._verify_manifest_digest(op, ref, data, response)
        self.stats.add("manifests_fetched")
        return data, _media_type(response, data), digest

    def head_manifest(self, repo: str, ref: str,
                      accept: Iterable[str] = MANIFEST_TYPES) -> ManifestInfo | None:
        """The manifest's media type, digest and size, or None when there is none."""
        op = _Op(repo, f"check manifest {ref}")
        accept = tuple(accept)
        if is_digest(ref):
            with self._stops(op):
                written = self.writes.written((self.registry, repo, ref))
            info = self.writes.info((self.registry, repo, ref)) if written else None
            if info is not None:
                return info
        response = self._request(op, "HEAD", self._url(repo, "manifests", ref),
                                 scopes=_pull(repo), headers={"Accept": ", ".join(accept)},
                                 follow=True)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._failure(op, response)
        digest = response.headers.get("Docker-Content-Digest") or (ref if is_digest(ref) else "")
        if not digest:  # some registries omit it on HEAD: ask for the body instead
            data, media_type, digest = self.get_manifest(repo, ref, accept)
            return ManifestInfo(media_type, digest, len(data))
        size = int(response.headers.get("Content-Length") or 0)
        return ManifestInfo(_media_type(response, b""), digest, size)

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """PUT a manifest by digest or tag; returns its digest, checked against the registry's."""
        op = _Op(repo, f"put manifest {ref}" if is_digest(ref) else f"tag {repo}:{ref}")
        digest = digest_of(data)
        if is_digest(ref) and ref != digest:
            raise DigestMismatchError(self.registry, repo, op.name,
                                      f"the manifest's content has digest {digest}")
        if not is_digest(ref):  # tags are moved once each, at the end of a push
            self._put_manifest(op, repo, ref, data, media_type, digest)
            return digest
        with self._stops(op), self.writes.once((self.registry, repo, digest)) as write:
            if write is not None:
                self._put_manifest(op, repo, ref, data, media_type, digest)
                write.info = ManifestInfo(media_type, digest, len(data))
        return digest

    def _put_manifest(self, op: _Op, repo: str, ref: str, data: bytes, media_type: str,
                      digest: str) -> None:
        response = self._request(op, "PUT", self._url(repo, "manifests", ref),
                                 scopes=_push(repo), headers={"Content-Type": media_type},
                                 body=data)
        if response.status_code not in (200, 201):
            raise self._failure(op, response)
        said = response.headers.get("Docker-Content-Digest")
        if said and said != digest:
            raise DigestMismatchError(self.registry, repo, op.name,
                                      f"the registry stored {said}, we sent {digest}")
        self.stats.add("manifests_put")

    def referrers(self, repo: str, digest: str) -> dict | None:
        """The OCI 1.1 referrers index of ``digest``, or None when the registry has no
        referrers API (it answers 404; clients then use the ``sha256-<hex>`` fallback tag)."""
        op = _Op(repo, f"list referrers of {digest}")
        response = self._request(op, "GET", self._url(repo, "referrers", digest),
                                 scopes=_pull(repo), headers={"Accept": "application/vnd.oci.image.index.v1+json"},
                                 stream=True, follow=True)
        try:
            if response.status_code in (404, 405):
                response.read()
                return None
            if response.status_code != 200:
                response.read()
                raise self._failure(op, response)
            data = self._read_capped(op, response)
        finally:
            response.close()
        try:
            index = json.loads(data)
        except ValueError:
            return None
        return index if isinstance(index, dict) and "manifests" in index else None

    def list_tags(self, repo: str, page_size: int = 1000) -> list[str]:
        """Every tag of the repository, following ``Link: <…>; rel="next"`` pages."""
        op = _Op(repo, "list tags")
        url: str | None = self._url(repo, "tags", "list")
        params: dict[str, str] | None = {"n": str(page_size)}
        tags: list[str] = []
        while url is not None:
            response = self._request(op, "GET", url, scopes=_pull(repo), params=params,
                                     follow=True)
            if response.status_code != 200:
                raise self._failure(op, response)
            tags.extend(response.json().get("tags") or [])
            url, params = _next_link(response), None
        return tags

    # -- upload and download internals --------------------------------------------------------

    def _upload_once(self, op: _Op, repo: str, digest: str, size: int, open_fn: OpenFn) -> None:
        scopes = _push(repo)
        try:
            start = self._request(op, "POST", self._url(repo, "blobs", "uploads/"),
                                  scopes=scopes)
        except TransientError as exc:
            # its own retries are spent: starting sessions again would spend them 5 times over
            exc.spent = True
            raise
        if start.status_code != 202:
            raise self._failure(op, start)
        location = self._location(op, start)
        if size <= self.chunk_threshold:
            final = self._request(
                op, "PUT", location, scopes=scopes, params={"digest": digest}, retry=False,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Length": str(size)}, size=size,
                body=lambda: _file_body(open_fn, size, op, self.registry))
        else:
            location = self._upload_chunks(op, location, size, open_fn, scopes)
            final = self._request(op, "PUT", location, scopes=scopes, params={"digest": digest},
                                  headers={"Content-Length": "0"}, retry=False)
        if final.status_code not in (201, 204):
            raise self._failure(op, final)
        said = final.headers.get("Docker-Content-Digest")
        if said and said != digest:
            raise DigestMismatchError(self.registry, repo, op.name, f"the registry stored {said}")

    def _upload_chunks(self, op: _Op, location: str, size: int, open_fn: OpenFn,
                       scopes: tuple[str, ...]) -> str:
        offset = 0
        while offset < size:
            length = min(self.chunk_size, size - offset)
            response = self._request(
                op, "PATCH", location, scopes=scopes, retry=False,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Length": str(length),
                         "Content-Range": f"{offset}-{offset + length - 1}"}, size=length,
                body=lambda o=offset, n=length: _file_chunks(open_fn, o, n, op, self.registry))
            if response.status_code != 202:
                raise self._failure(op, response)
            location = self._location(op, response)
            offset += length
        return location

    def _cancel_upload(self, op: _Op, response: Response, scopes: tuple[str, ...]) -> None:
        """Best effort: an abandoned session is purged by the registry anyway."""
        try:
            self._request(op, "DELETE", self._location(op, response), scopes=scopes,
                          retry=False)
        except RegistryError as exc:
            log.debug("could not cancel an upload session: %s", exc)

    def _download_once(self, op: _Op, repo: str, digest: str, dest: BinaryIO,
                       size: int | None) -> int:
        hasher = hasher_for(digest)
        written = 0
        response = self._request(op, "GET", self._url(repo, "blobs", digest), scopes=_pull(repo),
                                 stream=True, follow=True, size=size)
        try:
            if response.status_code != 200:
                response.read()
                raise self._failure(op, response)
            limit = None if size is None else size + OVERRUN_MARGIN
            for chunk in response.iter_bytes():
                hasher.update(chunk)
                dest.write(chunk)
                written += len(chunk)
                if limit is not None and written > limit:  # a hostile endless body
                    raise DigestMismatchError(
                        self.registry, repo, op.name,
                        f"the registry sent more than the {size} bytes the descriptor "
                        f"declares; stopped after {written}")
        except TransportError as exc:
            raise self._transport_failure(op, exc, 1) from None
        finally:
            response.close()
        got = f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}"
        if got != digest or (size is not None and written != size):
            raise DigestMismatchError(self.registry, repo, op.name,
                                      f"received {written} bytes hashing to {got}")
        return written

    def _read_capped(self, op: _Op, response: Response) -> bytes:
        parts, total = [], 0
        try:
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > MAX_MANIFEST_BYTES:
                    raise RegistryError(self.registry, op.repository, op.name,
                                        f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
                parts.append(chunk)
        except TransportError as exc:
            raise self._transport_failure(op, exc, 1) from None
        return b"".join(parts)

    def _verify_manifest_digest(self, op: _Op, ref: str, data: bytes,
                                response: Response) -> str:
        said = response.headers.get("Docker-Content-Digest", "")
        wanted = ref if is_digest(ref) else said
        if not wanted or not is_digest(wanted):
            return digest_of(data)
        hasher = hasher_for(wanted)
        hasher.update(data)
        got = f"{wanted.split(':', 1)[0]}:{hasher.hexdigest()}"
        if got != wanted:
            raise DigestMismatchError(self.registry, op.repository, op.name,
                                      f"the manifest received hashes to {got}, not {wanted}")
        return digest_of(data) if wanted.startswith("sha256:") else got

    # -- the request loop --------------------------------------------------------------------

    def _request(self, op: _Op, method: str, url: str, *, scopes: tuple[str, ...],
                 headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
                 body: Body | None = None, stream: bool = False, follow: bool = False,
                 retry: bool = True, size: int | None = 0) -> Response:
        """Send with authentication and, when ``retry``, bounded retries; return the response
        whatever its status (callers decide what is a failure). Raise TransientError when a
        transient failure persists, AuthenticationError when credentials do not work."""
        attempts = self.retry.attempts if retry else 1
        attempt, challenged = 1, False
        target = _with_params(url, params) if params else url
        while True:
            all_headers = self._headers(op, scopes, headers)
            try:
                response = self._send(method, target, all_headers,
                                      body() if callable(body) else body, stream, follow,
                                      self._deadline(size))
            except TransportError as exc:
                if exc.stopped and _scope_ended():  # its deadline or a Ctrl-C: retrying is futile
                    raise self._stopped(op, str(exc)) from None
                if exc.stopped:  # this request's own deadline: a slow answer, perhaps not the next
                    exc = TransportError(f"no complete answer within {self._allowed(size)}")
                if not self._may_retry(attempt, attempts):
                    raise self._transport_failure(op, exc, attempt,
                                                  self._no_retry_note(attempt, attempts)) from None
                self._pause(attempt, None)
                attempt += 1
                continue
            self.stats.add("requests")
            log.debug("%s %s -> %s", method, _path_of(target), response.status_code)
            if response.status_code == 401 and not challenged:
                challenged = True
                _discard(response)
                self._challenge(op, response, scopes)
                continue
            if not is_retryable(response):
                self._answered()
            elif self._may_retry(attempt, attempts):
                _discard(response)
                self._pause(attempt, response)
                attempt += 1
                continue
            if response.status_code == 401:
                _discard(response)
                raise self._auth_failure(op, response)
            if is_retryable(response):
                _discard(response)
                raise self._failure(op, response, transient=True, attempts=attempt,
                                    note=self._no_retry_note(attempt, attempts))
            return response

    def _deadline(self, size: int | None) -> float | None:
        """When a request moving ``size`` bytes must be done (None: a size not known)."""
        if size is None:
            return None
        return time.monotonic() + self.timeout + size / MIN_RATE

    def _allowed(self, size: int | None) -> str:
        """A request's own deadline, for messages."""
        seconds = round(self.timeout + (size or 0) / MIN_RATE, 1)
        return (f"the request's deadline ({seconds:g} s: {self.timeout:g} s plus 1 s per "
                f"{MIN_RATE // 1024} KiB it moves)")

    def _send(self, method: str, url: str, headers: dict[str, str], body: Any, stream: bool,
              follow: bool, until: float | None = None) -> Response:
        """One request, and when ``follow`` its redirects (GET and HEAD only), each hop over
        the transport its URL calls for; credentials do not follow to another origin."""
        scope = limits.current()
        if scope.deadline is not None:
            until = scope.deadline if until is None else min(until, scope.deadline)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                scope.check()
            except limits.Stopped as exc:
                raise TransportError(str(exc), stopped=True) from None
            response = self._http_for(url).send(method, url, headers, body, stream,
                                                until=until, events=scope.events)
            location = response.headers.get("Location")
            if not (follow and location and response.status_code in _REDIRECTS):
                return response
            _discard(response)
            next_url = urljoin(url, location)
            if _origin(next_url) != _origin(url):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = next_url
        raise TransportError(f"more than {MAX_REDIRECTS} redirects")

    def _http_for(self, url: str) -> PlainHTTP | HttpxHTTP:
        """The lean pool for plain HTTP to this machine or to this (insecure) registry when no
        proxy is configured; httpx for HTTPS and everything else."""
        if self._plain is not None and url.startswith("http://"):
            netloc = urlsplit(url).netloc
            lean = self._routes.get(netloc)
            if lean is None:
                lean = self._routes[netloc] = is_loopback(netloc) or (
                    netloc == self.endpoint and not any(os.environ.get(name)
                                                        for name in _PROXY_VARIABLES))
            if lean:
                return self._plain
        with self._httpx_lock:
            if self._httpx is None:
                # HTTP(S)_PROXY from the environment, except for this machine's own registries.
                self._httpx = HttpxHTTP(*self._timeouts, trust_env=not is_loopback(
                    self.endpoint), transport=self._transport)
            return self._httpx

    def _send_plain(self, request: TokenRequest) -> Response:
        """For token requests: retries, no authentication handling, body read; no redirect
        (the credentials in the request must not go elsewhere)."""
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            try:
                response = self._send(request.method, request.url, dict(request.headers),
                                      request.body, stream=False, follow=False)
            except TransportError as exc:
                if not self._may_retry(attempt, attempts):
                    realm = request.url.split("?", 1)[0]
                    note = self._no_retry_note(attempt, attempts)
                    raise AuthProblem(f"cannot reach the token service {realm} after {attempt} "
                                      f"attempts{note}: {self.redact(str(exc))}") from None
                self._pause(attempt, None)
                continue
            if not is_retryable(response) or not self._may_retry(attempt, attempts):
                return response
            self._pause(attempt, response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _headers(self, op: _Op, scopes: tuple[str, ...],
                 headers: dict[str, str] | None) -> dict[str, str]:
        authorization = self._auth_header(op, scopes)
        if authorization is None:
            return dict(headers) if headers else {}
        return {**(headers or {}), "Authorization": authorization}

    def _auth_header(self, op: _Op, scopes: tuple[str, ...]) -> str | None:
        try:
            return self._auth.header(scopes)
        except (AuthProblem, CredentialsError) as exc:
            raise AuthenticationError(self.registry, op.repository, op.name,
                                      self.redact(str(exc))) from None

    def _challenge(self, op: _Op, response: Response, scopes: tuple[str, ...]) -> None:
        try:
            self._auth.challenge(response, scopes)
        except (AuthProblem, CredentialsError) as exc:
            raise AuthenticationError(self.registry, op.repository, op.name,
                                      self.redact(str(exc)), status=401) from None

    def _may_retry(self, attempt: int, attempts: int) -> bool:
        """Whether failed attempt number ``attempt`` may be retried: it is not the request's
        last, and the run's retry budget for this registry has one left (which it spends)."""
        if attempt >= attempts:
            return False
        budget = limits.current().retries
        return budget is None or budget.take(self.registry)

    def _answered(self) -> None:
        """A real answer: the registry works, and earns the run's budget a little."""
        budget = limits.current().retries
        if budget is not None:
            budget.answered(self.registry)

    def _no_retry_note(self, attempt: int, attempts: int) -> str:
        """Why a request with attempts left was not retried (its run's budget is spent)."""
        budget = limits.current().retries
        if attempt >= attempts or budget is None:
            return ""
        return (f"; not retried: this run's retry budget for {self.registry} is spent "
                f"({budget.spent(self.registry)} retries)")

    def _pause(self, attempt: int, response: Response | None) -> None:
        """Wait before a retry: not past the caller's deadline, and not after a Ctrl-C."""
        self.stats.add("retries")
        delay = self.retry.delay_for(attempt, response)
        log.debug("retrying %s in %.2fs (attempt %d failed)", self.endpoint, delay, attempt)
        try:
            limits.sleep(delay, self.retry.sleep)
        except limits.Stopped as exc:
            raise TransportError(str(exc), stopped=True) from None

    @contextmanager
    def _stops(self, op: _Op) -> Iterator[None]:
        """Within: the caller's deadline or a Ctrl-C (``limits``) is a StoppedError naming
        this operation."""
        try:
            yield
        except limits.Stopped as exc:
            raise self._stopped(op, str(exc)) from None
        except TransportError as exc:
            if not exc.stopped:
                raise
            raise self._stopped(op, str(exc)) from None

    def _stopped(self, op: _Op, why: str) -> StoppedError:
        scope = limits.current()
        if scope.cancelled:
            why = "interrupted"
        elif scope.why:
            why = f"no complete answer within {scope.why}"
        return StoppedError(self.registry, op.repository, op.name, why)

    # -- errors ------------------------------------------------------------------------------

    def _failure(self, op: _Op, response: Response, *, transient: bool = False,
                 attempts: int = 1, note: str = "") -> RegistryError:
        said, codes = describe_response(response)
        detail = self.redact(said)
        if attempts > 1:
            detail += f" after {attempts} attempts"
        detail += note
        kind = TransientError if transient or is_retryable(response) else RegistryError
        return kind(self.registry, op.repository, op.name, detail,
                    status=response.status_code, codes=codes)

    def _auth_failure(self, op: _Op, response: Response) -> AuthenticationError:
        said, codes = describe_response(response)
        hint = (f"check the credentials for {self.registry}" if self._auth.has_credentials
                else f"no credentials are configured for {self.registry}")
        return AuthenticationError(self.registry, op.repository, op.name,
                                   f"authentication failed: {self.redact(said)}; {hint}",
                                   status=401, codes=codes)

    def _transport_failure(self, op: _Op, exc: TransportError, attempts: int,
                           note: str = "") -> TransientError:
        reason = self.redact(str(exc) or type(exc).__name__)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return TransientError(self.registry, op.repository, op.name,
                              f"connection to {self.base_url} failed{tries}: {reason}{note}")

    def _location(self, op: _Op, response: Response) -> str:
        """Where the upload session continues (absolute or relative to the request)."""
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(self.registry, op.repository, op.name,
                                "the registry answered without a Location header")
        return urljoin(str(response.url), location)

    def _url(self, repo: str, kind: str, ref: str) -> str:
        return f"{self.base_url}/v2/{repo}/{kind}/{ref}"


def _scope_ended() -> bool:
    """Whether the caller's scope (``limits``) was cancelled or is past its deadline."""
    scope = limits.current()
    left = scope.left()
    return scope.cancelled or (left is not None and left <= 0)


def _pull(repo: str) -> tuple[str, ...]:
    return (repository_scope(repo, "pull"),)


def _push(repo: str) -> tuple[str, ...]:
    return (repository_scope(repo, "pull", "push"),)


def _discard(response: Response) -> None:
    """Read what is left of an unwanted answer (so the connection is reused) and close it."""
    try:
        response.read()
    except TransportError:
        pass
    response.close()


_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _next_link(response: Response) -> str | None:
    match = _LINK_RE.search(response.headers.get("Link", ""))
    return urljoin(str(response.url), match.group(1)) if match else None


def _with_params(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _path_of(url: str) -> str:
    """For debug logs: the URL without its query (upload URLs carry a state token)."""
    return url.split("?", 1)[0]


def _media_type(response: Response, data: bytes) -> str:
    content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
    if content_type and content_type not in ("application/json", "application/octet-stream"):
        return content_type
    try:
        return str(json.loads(data).get("mediaType") or content_type)
    except (ValueError, AttributeError):
        return content_type


def _file_chunks(open_fn: OpenFn, offset: int, length: int, op: _Op,
                 registry: str) -> Iterator[bytes]:
    """Stream ``length`` bytes from ``offset`` of a freshly opened file, failing loudly on a
    short file (rather than sending a body shorter than its Content-Length)."""
    with open_fn() as handle:
        if offset:
            handle.seek(offset)
        remaining = length
        while remaining:
            chunk = handle.read(min(READ_SIZE, remaining))
            if not chunk:
                raise RegistryError(registry, op.repository, op.name,
                                    f"the local blob ended {remaining} bytes short of its size")
            remaining -= len(chunk)
            yield chunk


def _file_body(open_fn: OpenFn, size: int, op: _Op, registry: str) -> bytes | Iterator[bytes]:
    """A blob's body: read at once when small (sent with its headers in one write), else
    streamed."""
    chunks = _file_chunks(open_fn, 0, size, op, registry)
    return b"".join(chunks) if size <= SMALL_BODY else chunks
