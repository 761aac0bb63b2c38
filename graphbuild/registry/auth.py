"""Registry authentication driven by ``WWW-Authenticate`` challenges: anonymous until the
registry asks, then Basic (credentials on every request) or Bearer (tokens from the realm named
in the challenge, per scope, cached until shortly before they expire)."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from .credentials import Credentials, CredentialStore
from .errors import Redactor, describe_response

if TYPE_CHECKING:
    from .transport import Response

CLIENT_ID = "graphbuild"
DEFAULT_TOKEN_LIFETIME_S = 60
TOKEN_EXPIRY_MARGIN_S = 10.0

_TOKEN = r"[!#$%&'*+.^`|~\w-]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_SCHEME_RE = re.compile(rf"\s*,?\s*({_TOKEN})(?:\s+|$|,)")


class AuthProblem(Exception):
    """Why authentication cannot proceed; the client adds registry, repository and operation."""


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-case: "basic", "bearer"
    params: Mapping[str, str] = field(default_factory=dict)


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` values, each possibly holding several comma-separated
    challenges (``Basic realm="r", Bearer realm="...",service="..."``)."""
    found: list[Challenge] = []
    for header in headers:
        found.extend(_parse_one(header))
    return found


def _parse_one(header: str) -> list[Challenge]:
    found: list[tuple[str, dict[str, str]]] = []
    pos = 0
    while pos < len(header):
        param = _PARAM_RE.match(header, pos)
        if param and found:
            found[-1][1][param.group(1).lower()] = _unquote(param.group(2))
            pos = param.end()
            continue
        scheme = _SCHEME_RE.match(header, pos)
        if not scheme:
            break
        found.append((scheme.group(1).lower(), {}))
        pos = scheme.end()
    return [Challenge(name, params) for name, params in found]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def repository_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


def _parse_scope(scope: str) -> tuple[str, frozenset[str]]:
    resource, _, actions = scope.rpartition(":")
    return resource, frozenset(a for a in actions.split(",") if a)


def _covers(granted: Iterable[str], wanted: Iterable[str]) -> bool:
    have: dict[str, set[str]] = {}
    for scope in granted:
        resource, actions = _parse_scope(scope)
        have.setdefault(resource, set()).update(actions)
    for scope in wanted:
        resource, actions = _parse_scope(scope)
        if not actions <= have.get(resource, set()):
            return False
    return True


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """One scope per resource with the union of its actions, sorted (a stable cache key)."""
    merged: dict[str, set[str]] = {}
    for group in groups:
        for scope in group:
            resource, actions = _parse_scope(scope)
            merged.setdefault(resource, set()).update(actions)
    return tuple(sorted(f"{r}:{','.join(sorted(a))}" for r, a in merged.items()))


@dataclass(frozen=True)
class TokenRequest:
    """A request to a token realm (the client sends it as is: no redirect is followed)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def __repr__(self) -> str:  # the headers and body may hold credentials
        return f"TokenRequest({self.method} {self.url.split('?', 1)[0]})"


@dataclass
class _Token:
    value: str
    scopes: tuple[str, ...]
    expires_at: float

    def __repr__(self) -> str:
        return f"_Token(scopes={self.scopes}, expires_at={self.expires_at:.0f})"


def basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class Authenticator:
    """Per-registry authentication state, shared by a client's threads.

    ``send`` sends a request with retries but without authentication handling (token requests
    go to the realm, which may be another host).
    """

    def __init__(self, registry: str, credentials: Credentials | CredentialStore | None,
                 send: Callable[[TokenRequest], Response], redactor: Redactor, *,
                 plain_http_ok: Callable[[str], bool]) -> None:
        self.registry = registry
        self._source = credentials
        self._credentials: Credentials | None = None
        self._resolved = False
        self._send = send
        self._redact = redactor
        self._plain_http_ok = plain_http_ok
        self._scheme: str | None = None
        self._bearer: Mapping[str, str] = {}
        self._tokens: list[_Token] = []
        self._lock = threading.Lock()
        self._credentials_lock = threading.Lock()
        self.token_fetches = 0

    def __repr__(self) -> str:
        return (f"Authenticator(registry={self.registry!r}, scheme={self._scheme!r}, "
                f"credentials={self._credentials!r}, tokens={len(self._tokens)})")

    @property
    def has_credentials(self) -> bool:
        return bool(self._get_credentials())

    def _get_credentials(self) -> Credentials | None:
        """Resolved on first need, so an anonymous registry never runs a credential helper."""
        with self._credentials_lock:  # a credential helper runs once, not once per thread
            if not self._resolved:
                source = self._source
                found = source if isinstance(source, Credentials) or source is None else (
                    source.get(self.registry))
                if found:
                    self._redact.add(*found.secrets())
                    if found.password:
                        self._redact.add(basic_header(found).split(" ", 1)[1])
                self._credentials, self._resolved = found or None, True
        return self._credentials

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization value for a request needing ``scopes``; None while anonymous."""
        if self._scheme == "basic":
            return basic_header(self._credentials)  # type: ignore[arg-type]  # set with "basic"
        if self._scheme == "bearer":
            return f"Bearer {self._token_for(scopes)}"
        return None

    def challenge(self, response: Response, scopes: tuple[str, ...]) -> None:
        """Learn from a 401 how to authenticate; fetch a fresh token for Bearer."""
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        by_scheme = {c.scheme: c for c in challenges}
        if "bearer" in by_scheme:
            params = by_scheme["bearer"].params
            if not params.get("realm"):
                raise AuthProblem("the registry's Bearer challenge names no token realm")
            with self._lock:
                self._scheme, self._bearer = "bearer", dict(params)
            wanted = merge_scopes(scopes, [params["scope"]] if params.get("scope") else [])
            # Parallel requests sent before the first token arrived need no token of their own.
            rejected = response.request_headers.get("Authorization", "").removeprefix("Bearer ")
            self._token_for(wanted, rejected=rejected or None)
        elif "basic" in by_scheme:
            creds = self._get_credentials()
            if not (creds and creds.password):
                raise AuthProblem(f"authentication required and no credentials are configured "
                                  f"for {self.registry} (docker login {self.registry})")
            self._scheme = "basic"
        else:
            raise AuthProblem("the registry answered 401 without a Basic or Bearer challenge")

    def _token_for(self, scopes: tuple[str, ...], *, rejected: str | None = None) -> str:
        """A cached token covering ``scopes`` (other than one the registry just rejected),
        else a new one."""
        with self._lock:
            now = time.monotonic()
            self._tokens = [t for t in self._tokens if t.expires_at > now and t.value != rejected]
            for token in self._tokens:
                if _covers(token.scopes, scopes):
                    return token.value
            token = self._fetch_token(scopes)
            self._tokens.append(token)
            return token.value

    def _fetch_token(self, scopes: tuple[str, ...]) -> _Token:
        request = self._token_request(scopes)
        realm = request.url.split("?", 1)[0]
        response = self._send(request)
        self.token_fetches += 1
        if response.status_code != 200:
            said, _ = describe_response(response)
            raise AuthProblem(f"the token service {realm} refused: {self._redact(said)}")
        try:
            data = response.json()
            value = data.get("token") or data.get("access_token")
            lifetime = int(data.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)
        except (ValueError, AttributeError, TypeError):
            raise AuthProblem(f"the token service {realm} sent an unreadable answer") from None
        if not value:
            raise AuthProblem(f"the token service {realm} sent no token")
        self._redact.add(value)
        margin = min(TOKEN_EXPIRY_MARGIN_S, lifetime / 4)
        return _Token(value, scopes, time.monotonic() + lifetime - margin)

    def _token_request(self, scopes: tuple[str, ...]) -> TokenRequest:
        realm = self._bearer["realm"]
        parts = urlsplit(realm)
        service = self._bearer.get("service")
        creds = self._get_credentials()
        if creds and parts.scheme != "https" and not self._plain_http_ok(_host_port(parts)):
            raise AuthProblem(f"refusing to send credentials to the plain-HTTP token realm "
                              f"{realm.split('?', 1)[0]}")
        if creds and creds.identity_token:
            # OAuth2 refresh-token grant, as the Docker CLI does for identity tokens.
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": CLIENT_ID, "scope": " ".join(scopes)}
            if service:
                form["service"] = service
            return TokenRequest("POST", realm,
                                {"Content-Type": "application/x-www-form-urlencoded"},
                                urlencode(form).encode())
        params = [("service", service)] if service else []
        params += [("scope", s) for s in scopes]
        headers = {}
        if creds and creds.password:
            params.append(("account", creds.username))
            headers["Authorization"] = basic_header(creds)
        if params:
            realm = f"{realm}{'&' if parts.query else '?'}{urlencode(params)}"
        return TokenRequest("GET", realm, headers)


def _host_port(parts) -> str:
    """``host[:port]`` of a split URL, without user info; IPv6 hosts in brackets."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host
