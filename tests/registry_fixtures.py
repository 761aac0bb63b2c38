"""Real registries for the registry tests, and the small things that go with them.

- ``registry``: Debian's ``docker-registry`` (CNCF distribution) on a free 127.0.0.1 port,
  filesystem storage in a temp dir, access log in a file (so tests can count requests).
- ``basic_registry``: the same with htpasswd Basic auth; ``token_registry``: with token auth,
  backed by ``TokenServer`` (RS256 JWTs carrying an ``x5c`` chain the registry trusts).
- ``fault_proxy``: a threaded HTTP proxy in front of ``registry`` that drops connections and
  answers 500 or 429 to a share of requests (deterministic for a seed), or fails chosen requests
  for good.
- ``ImageSet`` / ``DictSource`` / ``DirSink``: hand-made two-platform images and the blob source
  and sink protocols of ``graphbuild.registry.transfer``.

Test modules bind the fixtures they use (``registry = fx.registry``): pytest only takes
``pytest_plugins`` from the root conftest. The server fixtures are session-scoped; each test
uses its own repository names so counts from the log stay per test. A server shared by several
modules is started once (module-level cache) and stopped at exit.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import gzip
import hashlib
import http
import http.client
import http.server
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
import yaml

__all__ = [
    "BASIC_HTPASSWD",
    "BASIC_PASSWORD",
    "BASIC_USER",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "TOKEN_PASSWORD",
    "TOKEN_USER",
    "DictSource",
    "DirSink",
    "FaultProxy",
    "FaultRule",
    "ImageSet",
    "RegistryServer",
    "TokenServer",
    "basic_registry",
    "fast_retry",
    "fault_proxy",
    "random_bytes",
    "registry",
    "require_module",
    "require_tool",
    "token_registry",
    "unique_repo",
]

# A fixed test account. The hash is bcrypt (cost 4, the registry accepts only bcrypt), made
# once with Python's crypt module so the tests need neither the bcrypt package nor htpasswd.
BASIC_USER = "pusher"
BASIC_PASSWORD = "hunter2-s3cret-pw"
BASIC_HTPASSWD = f"{BASIC_USER}:$2b$04$DuralW0NiXkOo2Kh4kPJyO7F2Ode5e0PkhBa4wYXOdwU4Q0/6aivu"
TOKEN_USER = "robot"
TOKEN_PASSWORD = "tok3n-pa55word-xyz"
TOKEN_SERVICE = "graphbuild-test-registry"
TOKEN_ISSUER = "graphbuild-test-issuer"
START_TIMEOUT_S = 15.0
_ACCESS_RE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) ')


def require_tool(name: str) -> str:
    """The tool's path; a missing tool fails under CI=true and skips elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    _missing(f"the '{name}' tool is not installed")
    raise AssertionError("unreachable")


def require_module(name: str) -> Any:
    """Import a test-only package, failing under CI=true and skipping elsewhere if absent."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"the Python package '{name}' is not installed")
    raise AssertionError("unreachable")


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}; CI must install it")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_repo(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def fast_retry(attempts: int = 5) -> Any:
    """A retry policy with tiny delays, so fault tests take milliseconds per retry."""
    from graphbuild.registry.retry import RetryPolicy

    return RetryPolicy(attempts=attempts, base_delay=0.01, max_delay=0.05, max_retry_after=2.0)


# -- the registry ----------------------------------------------------------------------------

class RegistryServer:
    """A real ``docker-registry serve`` process."""

    def __init__(self, workdir: Path, auth: dict | None = None) -> None:
        self.workdir = workdir
        self.auth = auth
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> RegistryServer:
        binary = require_tool("docker-registry")
        for _ in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(yaml.safe_dump(self._config()))
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            if self._wait_ready():
                atexit.register(self.stop)  # in case the session dies before its teardown
                return self
            self.stop()
        raise RuntimeError(f"docker-registry did not start:\n{self.log_tail()}")

    def _config(self) -> dict:
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False},
                    "fields": {"service": "registry"}},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "data")},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": uuid.uuid4().hex},
        }
        if self.auth:
            config["auth"] = self.auth
        return config

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                response = httpx.get(f"{self.url}/v2/", timeout=1.0)
                if response.status_code in (200, 401):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def requests(self, repo: str, method: str | None = None, kind: str | None = None,
                 settle: float = 0.3) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of the access log lines for ``repo``; ``kind`` filters on
        ``blobs/uploads``, ``manifests`` or ``blobs``. Waits ``settle`` seconds first: the
        registry writes a line just after it answers."""
        time.sleep(settle)
        found = []
        for match in _ACCESS_RE.finditer(self.log_path.read_text(errors="replace")):
            verb, path, status = match.group(1), match.group(2), int(match.group(3))
            if not path.startswith(f"/v2/{repo}/"):
                continue
            if method and verb != method:
                continue
            if kind and f"/{kind}/" not in path.split("?")[0] + "/":
                continue
            found.append((verb, path, status))
        return found


_SERVERS: dict[str, Any] = {}
_SERVERS_LOCK = threading.Lock()


def _shared(name: str, factory: Callable[[], Any]) -> Any:
    """One server per name for the whole session, whichever module asks first."""
    with _SERVERS_LOCK:
        if name not in _SERVERS:
            _SERVERS[name] = factory()
        return _SERVERS[name]


def _stop_shared(name: str) -> None:
    """Session teardown (every importing module's copy of the fixture calls it; once acts)."""
    with _SERVERS_LOCK:
        servers = _SERVERS.pop(name, None)
    for server in servers if isinstance(servers, tuple) else (servers,):
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    require_tool("docker-registry")
    yield _shared("plain", lambda: RegistryServer(tmp_path_factory.mktemp("registry")).start())
    _stop_shared("plain")


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    require_tool("docker-registry")

    def start() -> RegistryServer:
        workdir = tmp_path_factory.mktemp("registry-basic")
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(BASIC_HTPASSWD + "\n")
        auth = {"htpasswd": {"realm": "graphbuild-test", "path": str(htpasswd)}}
        return RegistryServer(workdir, auth).start()

    yield _shared("basic", start)
    _stop_shared("basic")


@pytest.fixture(scope="session")
def token_registry(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, TokenServer]]:
    require_tool("docker-registry")
    require_module("cryptography")

    def start() -> tuple[RegistryServer, TokenServer]:
        workdir = tmp_path_factory.mktemp("registry-token")
        tokens = TokenServer(workdir, {TOKEN_USER: TOKEN_PASSWORD}).start()
        auth = {"token": {"realm": tokens.realm, "service": TOKEN_SERVICE,
                          "issuer": TOKEN_ISSUER, "rootcertbundle": str(tokens.cert_path)}}
        return RegistryServer(workdir, auth).start(), tokens

    yield _shared("token", start)
    _stop_shared("token")


# -- the token server ------------------------------------------------------------------------

class TokenServer:
    """A minimal Docker token service: GET with Basic auth or the OAuth2 refresh-token POST;
    signs RS256 JWTs with a self-signed certificate the registry is told to trust."""

    def __init__(self, workdir: Path, users: dict[str, str]) -> None:
        self.workdir = workdir
        self.users = users
        self.read_only: set[str] = set()  # users whose tokens only ever allow pull
        self.refresh_tokens: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.issued: list[str] = []
        self.answer_with = "token"  # or "access_token": which field carries the token
        self.cert_path = workdir / "token-cert.pem"
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def start(self) -> TokenServer:
        self._make_key()
        handler = type("Handler", (_TokenHandler,), {"tokens": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _make_key(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graphbuild test tokens")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key = key
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

    def issue(self, subject: str, scopes: list[str], service: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        access = [_access(scope) for scope in scopes]
        if subject in self.read_only:  # a pull-only token, whatever was asked for
            access = [{**a, "actions": [x for x in a["actions"] if x == "pull"]} for a in access]
        claims = {"iss": TOKEN_ISSUER, "sub": subject, "aud": service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header))}.{_b64url(json.dumps(claims))}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input}.{_b64url(signature)}"
        self.issued.append(token)
        return token


def _b64url(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _access(scope: str) -> dict[str, Any]:
    kind, name_actions = scope.split(":", 1)
    name, _, actions = name_actions.rpartition(":")
    return {"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]}


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    tokens: TokenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        user = self._basic_user()
        self.tokens.requests.append({"method": "GET", "user": user,
                                     "scopes": query.get("scope", []),
                                     "account": query.get("account", [None])[0]})
        if user is None:
            self._reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                          "message": "invalid username or password"}]})
            return
        self._grant(user, query.get("scope", []), query.get("service", [""])[0])

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        scopes = " ".join(form.get("scope", [])).split()
        self.tokens.requests.append({"method": "POST", "user": None, "scopes": scopes,
                                     "grant_type": form.get("grant_type", [""])[0]})
        refresh = form.get("refresh_token", [""])[0]
        if form.get("grant_type") != ["refresh_token"] or refresh not in self.tokens.refresh_tokens:
            self._reply(401, {"error": "invalid_grant"})
            return
        self._grant("refresh-user", scopes, form.get("service", [""])[0])

    def _basic_user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.tokens.users.get(user) == password else None

    def _grant(self, user: str, scopes: list[str], service: str) -> None:
        token = self.tokens.issue(user, scopes, service)
        self._reply(200, {self.tokens.answer_with: token, "expires_in": 300,
                          "issued_at": dt.datetime.now(dt.timezone.utc).isoformat()})

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# -- the fault-injecting proxy ---------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
               "upgrade", "trailer"}
_UUID_RE = re.compile(r"/uploads/[^/?]+")


@dataclass
class FaultRule:
    """Fault every request matching ``method`` and ``path_pattern``: ``action`` is an HTTP
    status (``"500"``), ``"drop"``, ``"drop-after"``, ``"corrupt"`` (flip a body byte) or
    ``"redirect"`` (307 to the same path on ``localhost:PORT``, another origin that reaches the
    same proxy; a redirected request is not redirected again) or ``"hold"`` (forwarded only a
    moment after the proxy has answered another request with an injected status: still in
    flight when the client learns of that failure) or ``"drip"`` (forwarded, and the answer sent
    one byte per ``FaultProxy.drip_every`` seconds until the proxy stops: a registry that never
    goes silent long enough for an idle timeout)."""

    method: str
    path_pattern: str
    action: str = "500"

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and re.search(self.path_pattern, path) is not None


@dataclass
class FaultProxy:
    """An HTTP proxy to ``upstream`` that faults ``rate`` of the requests.

    The decision for a request is a hash of the seed, the request's identity (method, path with
    the upload session masked, query parameters, Content-Range) and how often that identity
    was seen, so it does not depend on thread timing. At most ``max_consecutive`` faults hit one
    identity in a row, and at most ``max_faults`` in all: requests alike run at once (a blob
    upload's POST to one repository) share an identity, so one of them may see every fault
    while the others take the passes; a client with more attempts than ``max_faults`` always
    gets through.
    """

    upstream: str
    rate: float = 0.0
    kinds: tuple[str, ...] = ("drop", "drop-after", "500", "429")
    seed: int = 1
    max_consecutive: int = 2
    max_faults: int = 4
    retry_after: str = "0"
    drip_every: float = 0.5
    rules: list[FaultRule] = field(default_factory=list)
    injected: Counter = field(default_factory=Counter)
    # (method, path, whether it carried an Authorization header) of every redirected request
    redirected: list[tuple[str, str, bool]] = field(default_factory=list)
    seen: Counter = field(default_factory=Counter)
    _streak: Counter = field(default_factory=Counter)
    _faults: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: http.server.ThreadingHTTPServer | None = None
    # set once an injected status has been sent: "hold" requests wait for it
    failed_one: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)  # dripping ends

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def decide(self, method: str, path: str, content_range: str) -> str | None:
        """The fault for this request: a status like ``"500"``, ``"drop"``, or None."""
        for rule in self.rules:
            if rule.matches(method, path):
                with self._lock:
                    self.injected[rule.action] += 1
                return rule.action
        if self.rate <= 0:
            return None
        parts = urllib.parse.urlsplit(path)
        query = sorted((k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "_state")
        identity = f"{method} {_UUID_RE.sub('/uploads/*', parts.path)} {query} {content_range}"
        with self._lock:
            self.seen[identity] += 1
            roll = hashlib.sha256(f"{self.seed}|{identity}|{self.seen[identity]}".encode())
            value = int.from_bytes(roll.digest()[:8], "big") / 2**64
            if value >= self.rate or self._streak[identity] >= self.max_consecutive \
                    or self._faults[identity] >= self.max_faults:
                self._streak[identity] = 0
                return None
            self._streak[identity] += 1
            self._faults[identity] += 1
            kind = self.kinds[roll.digest()[8] % len(self.kinds)]
            self.injected[kind] += 1
            return kind


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        body = self._read_body()
        if self.headers.get("Host", "").startswith("localhost:"):  # came by a redirect
            self.proxy.redirected.append((self.command, self.path,
                                          "Authorization" in self.headers))
            fault = None
        else:
            fault = self.proxy.decide(self.command, self.path,
                                      self.headers.get("Content-Range", ""))
        if fault == "redirect":
            self._redirect()
            return
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "hold":
            self.proxy.failed_one.wait(30)
            time.sleep(0.3)  # the client handles that failure meanwhile
            fault = None
        if fault and fault.isdigit():
            self._fail(int(fault))
            return
        status, headers, payload = self._forward(body)
        if fault == "drop-after":  # the registry did the work; its answer is lost
            self.close_connection = True
            return
        if fault == "corrupt" and payload:
            payload = payload[:-1] + bytes([payload[-1] ^ 0xFF])
        if fault == "drip":
            self._drip(status, headers, payload)
            return
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        length = {k.lower(): v for k, v in headers}.get("content-length", "0")
        self.send_header("Content-Length", length if self.command == "HEAD" else str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.proxy.upstream.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            return response.status, response.getheaders(), payload
        finally:
            conn.close()

    def _drip(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        """Send the whole answer, status line first, one byte at a time."""
        lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
        lines += [f"{k}: {v}" for k, v in headers
                  if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"]
        lines.append(f"Content-Length: {len(payload)}")
        body = b"" if self.command == "HEAD" else payload
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.close_connection = True
        for byte in raw:
            if self.proxy.stopping.wait(self.proxy.drip_every):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client gave up
                return

    def _redirect(self) -> None:
        port = self.server.server_address[1]
        self.send_response(307)
        self.send_header("Location", f"http://localhost:{port}{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _fail(self, status: int) -> None:
        data = json.dumps({"errors": [{"code": "UNKNOWN",
                                       "message": f"injected fault {status}"}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status in (429, 503):
            self.send_header("Retry-After", self.proxy.retry_after)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()
        self.proxy.failed_one.set()


@pytest.fixture
def fault_proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    """A fresh proxy per test (faults are per-test settings) in front of the shared registry.

    The registry builds upload URLs from the Host header, which names the proxy, so uploads
    go through it too."""
    proxy = FaultProxy(registry.host).start()
    yield proxy
    proxy.stop()


# -- content: a blob source and sink, and hand-made images -----------------------------------

class DictSource:
    """A dict-backed blob store implementing ``BlobSource`` (and ``add`` for tests)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def add(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_json(self, obj: dict, media_type: str) -> dict[str, Any]:
        return self.add(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(),
                        media_type)

    def open_blob(self, digest: str) -> BinaryIO:
        return io.BytesIO(self.blobs[digest])

    def read_bytes(self, digest: str) -> bytes:
        return self.blobs[digest]

    def blob_size(self, digest: str) -> int:
        return len(self.blobs[digest])


class DirSink:
    """A directory-backed blob store implementing ``BlobSink``, verifying what it is given."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / "blobs" / digest.replace(":", "-")

    def has_blob(self, digest: str) -> bool:
        return self._path(digest).exists()

    def read_bytes(self, digest: str) -> bytes:
        return self._path(digest).read_bytes()

    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def add_file(self, tmp_path: Path, expected_digest: str) -> None:
        digest = "sha256:" + hashlib.sha256(tmp_path.read_bytes()).hexdigest()
        assert digest == expected_digest, f"sink got {digest}, expected {expected_digest}"
        os.replace(tmp_path, self._path(digest))

    def put_bytes(self, data: bytes, expected_digest: str) -> None:
        assert "sha256:" + hashlib.sha256(data).hexdigest() == expected_digest
        self._path(expected_digest).write_bytes(data)

    def digests(self) -> set[str]:
        return {p.name.replace("-", ":", 1) for p in (self.root / "blobs").iterdir()}


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A reproducible gzipped tar and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


@dataclass
class ImageSet:
    """Two single-platform images sharing a base layer, and an index over them."""

    source: DictSource
    salt: str
    platforms: tuple[tuple[str, str, str], ...] = (("linux", "amd64", ""), ("linux", "arm64", "v8"))
    base: dict[str, Any] = field(init=False)
    manifests: list[dict[str, Any]] = field(init=False)  # descriptors with platform
    configs: list[dict[str, Any]] = field(init=False)
    index: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        base_gz, base_diff = _layer({"etc/base.txt": b"shared base layer\n"})
        self.base = self.source.add(base_gz, OCI_LAYER)
        self.manifests, self.configs = [], []
        for os_, arch, variant in self.platforms:
            self._add_image(os_, arch, variant, base_diff)
        self.index = self.make_index(self.manifests)

    def _add_image(self, os_: str, arch: str, variant: str, base_diff: str) -> None:
        app_gz, app_diff = _layer({"app/platform.txt": f"{os_}/{arch}/{variant} {self.salt}\n"
                                   .encode()})
        app = self.source.add(app_gz, OCI_LAYER)
        platform = {"architecture": arch, "os": os_, **({"variant": variant} if variant else {})}
        config = self.source.add_json(
            {**platform, "created": "2024-01-01T00:00:00Z",
             "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
             "rootfs": {"type": "layers", "diff_ids": [base_diff, app_diff]}}, OCI_CONFIG)
        manifest = self.source.add_json(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
             "layers": [self.base, app]}, OCI_MANIFEST)
        self.configs.append(config)
        self.manifests.append({**manifest, "platform": platform})

    def make_index(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return self.source.add_json(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, OCI_INDEX)

    def blob_digests(self) -> set[str]:
        found = {self.base["digest"]}
        for manifest in self.manifests:
            parsed = json.loads(self.source.blobs[manifest["digest"]])
            found.add(parsed["config"]["digest"])
            found.update(layer["digest"] for layer in parsed["layers"])
        return found


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)
