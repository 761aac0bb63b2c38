"""Registry credentials from Docker's client configuration.

Reads ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``) as the Docker CLI does:
``credHelpers`` for the host first, then ``credsStore``, then ``auths`` (base64 ``auth`` or
``username``/``password``, and ``identitytoken``). Helpers are ``docker-credential-NAME get``
with the server on stdin and JSON on stdout. No secret ever reaches a log line or an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .reference import DOCKER_HUB, DOCKER_HUB_AUTH_KEY, DOCKER_HUB_LEGACY_NAMES

log = logging.getLogger(__name__)

HELPER_TIMEOUT_S = 30.0
# A helper answering with this user name hands back an identity (refresh) token.
IDENTITY_TOKEN_USER = "<token>"


class CredentialsError(Exception):
    """The Docker config or a credential helper could not be used; never carries a secret."""


@dataclass(frozen=True)
class Credentials:
    """A user name with a password, or an identity token for the OAuth2 refresh flow."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        secret = "***" if (self.password or self.identity_token) else "''"
        return f"Credentials(username={self.username!r}, secret={secret})"

    def __bool__(self) -> bool:
        return bool(self.password or self.identity_token)

    def secrets(self) -> tuple[str, ...]:
        """The strings that must never be shown, for redaction."""
        return tuple(s for s in (self.password, self.identity_token) if s)


class CredentialStore(Protocol):
    """Anything that finds the credentials for a registry host (``host[:port]``)."""

    def get(self, registry: str) -> Credentials | None: ...


class StaticCredentials:
    """Credentials given directly, per registry host."""

    def __init__(self, by_host: Mapping[str, Credentials]) -> None:
        self._by_host = dict(by_host)

    def get(self, registry: str) -> Credentials | None:
        return self._by_host.get(registry)

    def __repr__(self) -> str:
        return f"StaticCredentials(hosts={sorted(self._by_host)})"


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if env is None else env
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


class DockerConfigCredentials:
    """Credentials as the Docker CLI finds them; the config file is read once, lazily."""

    def __init__(self, path: Path | None = None, *, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self.path = path or docker_config_path(self._env)
        self._config: dict | None = None

    def __repr__(self) -> str:
        return f"DockerConfigCredentials(path={str(self.path)!r})"

    def get(self, registry: str) -> Credentials | None:
        config = self._load()
        keys = _lookup_keys(registry)
        helpers = config.get("credHelpers") or {}
        for key in keys:
            if key in helpers:
                return _run_helper(helpers[key], _helper_server(registry), self._env)
        if config.get("credsStore"):
            found = _run_helper(config["credsStore"], _helper_server(registry), self._env)
            if found:
                return found
        return _from_auths(config.get("auths") or {}, keys, self.path)

    def _load(self) -> dict:
        if self._config is None:
            self._config = _read_config(self.path)
        return self._config


def _read_config(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CredentialsError(f"cannot read Docker config {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the text around it may be a secret.
        raise CredentialsError(
            f"Docker config {path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise CredentialsError(f"Docker config {path} is not a JSON object")
    return data


def _lookup_keys(registry: str) -> tuple[str, ...]:
    """Config keys that may name this registry, most specific first."""
    if registry == DOCKER_HUB or registry in DOCKER_HUB_LEGACY_NAMES:
        return (DOCKER_HUB_AUTH_KEY, "index.docker.io", DOCKER_HUB, "registry-1.docker.io")
    return (registry,)


def _normalize_key(key: str) -> str:
    """``https://host:port/v1/`` and ``host:port`` name the same registry."""
    if key == DOCKER_HUB_AUTH_KEY:
        return key
    for scheme in ("https://", "http://"):
        key = key.removeprefix(scheme)
    return key.split("/", 1)[0]


def _helper_server(registry: str) -> str:
    """The server name Docker passes to helpers (Docker Hub keeps its legacy URL)."""
    return DOCKER_HUB_AUTH_KEY if _lookup_keys(registry)[0] == DOCKER_HUB_AUTH_KEY else registry


def _from_auths(auths: Mapping[str, dict], keys: tuple[str, ...], path: Path) -> Credentials | None:
    entries = {_normalize_key(k): v for k, v in auths.items() if isinstance(v, dict)}
    for key in keys:
        entry = entries.get(_normalize_key(key))
        if entry is not None:
            return _decode_entry(entry, key, path)
    return None


def _decode_entry(entry: Mapping[str, str], key: str, path: Path) -> Credentials | None:
    username = entry.get("username", "")
    password = entry.get("password", "")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(
                f"Docker config {path}: the 'auth' of '{key}' is not base64 of user:password"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise CredentialsError(
                f"Docker config {path}: the 'auth' of '{key}' has no ':' between user and password")
    creds = Credentials(username, password, entry.get("identitytoken", ""))
    return creds if creds else None


def _run_helper(name: str, server: str, env: Mapping[str, str]) -> Credentials | None:
    program = f"docker-credential-{name}"
    try:
        proc = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True,
            timeout=HELPER_TIMEOUT_S, env=dict(env), check=False)
    except FileNotFoundError:
        raise CredentialsError(
            f"credential helper '{program}' (configured for {server}) is not installed") from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(
            f"credential helper '{program}' did not answer for {server} in "
            f"{HELPER_TIMEOUT_S:.0f}s") from None
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        if "credentials not found" in out.lower():
            return None
        # What a failing helper prints may hold the secret: say only who failed and how.
        raise CredentialsError(f"credential helper '{program}' failed for {server} "
                               f"(exit status {proc.returncode})")
    return _parse_helper_output(out, program, server)


def _parse_helper_output(out: str, program: str, server: str) -> Credentials | None:
    try:
        data = json.loads(out)
        username, secret = data.get("Username", ""), data.get("Secret", "")
    except (json.JSONDecodeError, AttributeError):
        raise CredentialsError(
            f"credential helper '{program}' gave unreadable output for {server}") from None
    if not secret:
        return None
    log.debug("credentials for %s from %s", server, program)
    if username == IDENTITY_TOKEN_USER:
        return Credentials(identity_token=secret)
    return Credentials(username, secret)
