"""HTTP for the registry client, behind one small ``Response``.

Every request has an overall deadline (``until``, a ``time.monotonic()`` value) and may be
cancelled (``events``): a registry that drips one byte at a time cannot hold it longer.

``PlainHTTP`` is a lean HTTP/1.1 keep-alive pool over ``http.client`` for plain-HTTP hosts
(loopback, or marked insecure): a request costs it about a third of httpx's CPU, and it needs
neither httpx's import nor an SSL context (which loads certifi's bundle). ``HttpxHTTP`` wraps
an ``httpx.Client`` for everything else: HTTPS with certificate checks, proxies from the
environment. Neither follows redirects (the client does, deciding per hop which one to use).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

Body = bytes | Iterable[bytes] | None
USER_AGENT = "graphbuild"


class TransportError(Exception):
    """No usable answer: connection refused or reset, timeout, a body cut short; ``stopped``
    when the request's deadline passed or it was cancelled."""

    def __init__(self, message: str, *, stopped: bool = False) -> None:
        super().__init__(message)
        self.stopped = stopped


class Stop(TimeoutError):
    """A request's deadline passed, or it was cancelled."""


SLICE_S = 0.25  # a blocked read or write looks at the cancellation events this often


class BoundedSocket(socket.socket):
    """A socket whose reads and writes end at ``until`` or once one of ``events`` is set,
    and after ``idle`` seconds without progress. Blocking calls wait in short slices."""

    until: float | None = None
    events: tuple[threading.Event, ...] = ()
    idle: float = 60.0

    def _timeout(self, started: float) -> float:
        if any(event.is_set() for event in self.events):
            raise Stop("interrupted")
        now = time.monotonic()
        if self.until is not None and now >= self.until:
            raise Stop("no complete answer before the deadline")
        if now - started >= self.idle:
            raise TimeoutError("timed out")
        left = min(self.idle - (now - started),
                   self.until - now if self.until is not None else self.idle)
        return min(left, SLICE_S) if self.events else left

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:  # type: ignore[override]
        started = time.monotonic()
        while True:
            self.settimeout(max(self._timeout(started), 0.001))
            try:
                return super().recv_into(buffer, nbytes, flags)
            except TimeoutError:
                continue  # _timeout decides whether that was the end

    def sendall(self, data, flags: int = 0) -> None:  # type: ignore[override]
        view = memoryview(data).cast("B")
        started = time.monotonic()
        while view:
            self.settimeout(max(self._timeout(started), 0.001))
            try:
                sent = self.send(view, flags)
            except TimeoutError:
                continue
            view = view[sent:]
            started = time.monotonic()


class _Connection(http.client.HTTPConnection):
    """An HTTP connection over a ``BoundedSocket``."""

    def connect(self) -> None:
        super().connect()  # sets TCP_NODELAY
        raw = self.sock
        self.sock = BoundedSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())


class Headers:
    """Response headers: case-insensitive ``get`` and ``get_list``."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = [(name.lower(), value) for name, value in items]

    def get(self, name: str, default: Any = None) -> Any:
        name = name.lower()
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_list(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self._items if key == name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None


class Response:
    """An answer whose body is read at once (``content``) or streamed (``iter_bytes``)."""

    def __init__(self, status: int, reason: str, headers: Headers, url: str,
                 request_headers: dict[str, str], *, content: bytes | None = None,
                 chunks: Iterator[bytes] | None = None, on_close: Any = None) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.headers = headers
        self.url = url
        self.request_headers = request_headers  # as sent (the Authorization a 401 rejected)
        self._content = content
        self._chunks = chunks
        self._on_close = on_close

    @property
    def content(self) -> bytes:
        """The body if it was read, else b"" (a streamed answer not read yet)."""
        return self._content or b""

    def read(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_bytes())
        return self._content

    def iter_bytes(self) -> Iterator[bytes]:
        """The rest of the body, in pieces of up to 1 MiB; closes the answer at the end."""
        chunks, self._chunks = self._chunks, None
        if chunks is None:
            yield from ([self._content] if self._content else [])
            return
        try:
            yield from chunks
        finally:
            self.close()

    def json(self) -> Any:
        return json.loads(self.read())

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


class PlainHTTP:
    """Keep-alive ``http.client`` connections to plain-HTTP hosts, shared by many threads:
    at most ``max_connections`` requests in flight, idle connections reused (last in, first
    out) after a zero-timeout ``select`` says the server has not closed them."""

    def __init__(self, timeout: float, connect_timeout: float, max_connections: int) -> None:
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: dict[str, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def send(self, method: str, url: str, headers: dict[str, str], body: Body,
             stream: bool = False, *, until: float | None = None,
             events: tuple[threading.Event, ...] = ()) -> Response:
        parts = urlsplit(url)
        target = f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"
        self._slots.acquire()
        conn = answer = None
        try:
            conn = self._checkout(parts.netloc)
            conn.sock.until, conn.sock.events = until, events
            conn.request(method, target, body=body, headers={"User-Agent": USER_AGENT,
                                                             **headers})
            answer = conn.getresponse()
            found = Headers(answer.getheaders())
            if stream:
                return Response(answer.status, answer.reason, found, url, headers,
                                chunks=_read_chunks(answer),
                                on_close=lambda: self._finish(parts.netloc, conn, answer))
            content = answer.read()  # raises IncompleteRead on a short body
        except BaseException as exc:  # the slot must come back whatever went wrong
            if conn is not None:
                conn.close()
            self._slots.release()
            if isinstance(exc, Stop):
                raise TransportError(str(exc), stopped=True) from None
            if isinstance(exc, (OSError, http.client.HTTPException)):
                raise TransportError(_describe(exc)) from None
            raise  # e.g. the body's source failed: not the network's doing
        self._finish(parts.netloc, conn, answer)
        return Response(answer.status, answer.reason, found, url, headers, content=content)

    def _checkout(self, netloc: str) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                idle = self._idle.get(netloc)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if _still_open(conn):
                return conn
            conn.close()
        conn = _Connection(netloc, timeout=self._connect_timeout)
        conn.connect()
        conn.sock.idle = self._timeout
        return conn

    def _finish(self, netloc: str, conn: http.client.HTTPConnection,
                answer: http.client.HTTPResponse) -> None:
        """The answer is done with: keep its connection if the answer was read to its end."""
        try:
            if conn.sock is not None:
                conn.sock.until, conn.sock.events = None, ()
            if answer.isclosed() and not answer.will_close and not self._closed:
                with self._lock:
                    self._idle.setdefault(netloc, []).append(conn)
                return
            answer.close()
            conn.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _read_chunks(answer: http.client.HTTPResponse, size: int = 1024 * 1024) -> Iterator[bytes]:
    try:
        while True:
            chunk = answer.read(size)
            if not chunk:
                return
            yield chunk
    except Stop as exc:
        raise TransportError(str(exc), stopped=True) from None
    except (OSError, http.client.HTTPException) as exc:
        raise TransportError(_describe(exc)) from None


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read has been closed by the server (or broken)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HttpxHTTP:
    """httpx for HTTPS (certificate checks on) and for hosts the lean path does not serve."""

    def __init__(self, timeout: float, connect_timeout: float, max_connections: int,
                 trust_env: bool, transport: Any = None) -> None:
        import httpx

        self._httpx = httpx
        self._timeout, self._connect_timeout = timeout, connect_timeout
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout), verify=True,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            trust_env=trust_env, transport=transport)

    def send(self, method: str, url: str, headers: dict[str, str], body: Body,
             stream: bool = False, *, until: float | None = None,
             events: tuple[threading.Event, ...] = ()) -> Response:
        """httpx bounds each read and write, not the whole request: each is given at most
        what is left until ``until``, and a streamed body is checked between pieces."""
        httpx = self._httpx
        try:
            read = self._timeout
            if until is not None:
                left = until - time.monotonic()
                if left <= 0:
                    raise TransportError("no complete answer before the deadline", stopped=True)
                read = min(read, left)
            request = self._client.build_request(
                method, url, headers=headers, content=body,
                timeout=httpx.Timeout(read, connect=min(self._connect_timeout, read)))
            answer = self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise TransportError(_describe(exc)) from None
        response = Response(answer.status_code, answer.reason_phrase,
                            Headers(answer.headers.multi_items()), str(answer.url), headers,
                            chunks=self._chunks(answer, until, events), on_close=answer.close)
        if not stream:
            response.read()
        return response

    def _chunks(self, answer: Any, until: float | None,
                events: tuple[threading.Event, ...]) -> Iterator[bytes]:
        try:
            for chunk in answer.iter_bytes(1024 * 1024):
                if any(event.is_set() for event in events):
                    raise TransportError("interrupted", stopped=True)
                if until is not None and time.monotonic() >= until:
                    raise TransportError("no complete answer before the deadline", stopped=True)
                yield chunk
        except self._httpx.TransportError as exc:
            raise TransportError(_describe(exc)) from None

    def close(self) -> None:
        self._client.close()
