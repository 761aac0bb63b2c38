"""Credentials from a Docker config: auths, credHelpers, credsStore; secrets never shown."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from graphbuild.registry.credentials import (
    Credentials,
    CredentialsError,
    DockerConfigCredentials,
    docker_config_path,
)

SECRET = "p@ss:w0rd-very-secret"


def _config(tmp_path: Path, data: dict) -> DockerConfigCredentials:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return DockerConfigCredentials(path, env={"PATH": os.environ.get("PATH", "")})


def _helper(tmp_path: Path, name: str, script: str) -> dict[str, str]:
    """A ``docker-credential-NAME`` executable on a PATH of its own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / f"docker-credential-{name}"
    program.write_text(f"#!{sys.executable}\n{script}")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


def test_config_path_honours_docker_config(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path / "config.json"
    assert docker_config_path({}).name == "config.json"


def test_auths_base64_and_plain_fields(tmp_path: Path) -> None:
    auth = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    store = _config(tmp_path, {"auths": {
        "https://reg.example.com/v1/": {"auth": auth},
        "plain.example.com:5000": {"username": "bob", "password": "pw-bob-1"},
        "tok.example.com": {"identitytoken": "refresh-me-123"},
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:hubpw1").decode()},
    }})
    assert store.get("reg.example.com") == Credentials("alice", SECRET)
    assert store.get("plain.example.com:5000") == Credentials("bob", "pw-bob-1")
    assert store.get("tok.example.com") == Credentials(identity_token="refresh-me-123")
    assert store.get("docker.io") == Credentials("hub", "hubpw1")
    assert store.get("unknown.example.com") is None


def test_missing_config_means_no_credentials(tmp_path: Path) -> None:
    assert DockerConfigCredentials(tmp_path / "absent.json").get("x.io") is None


def test_bad_config_errors_show_no_secret(tmp_path: Path) -> None:
    broken = tmp_path / "config.json"
    broken.write_text('{"auths": {"x.io": {"auth": "' + SECRET)
    with pytest.raises(CredentialsError) as caught:
        DockerConfigCredentials(broken).get("x.io")
    assert "not valid JSON" in str(caught.value) and SECRET not in str(caught.value)
    store = _config(tmp_path, {"auths": {"x.io": {"auth": base64.b64encode(
        SECRET.replace(":", "").encode()).decode()}}})
    with pytest.raises(CredentialsError) as caught:
        store.get("x.io")
    assert "x.io" in str(caught.value) and SECRET.replace(":", "") not in str(caught.value)


def test_cred_helper_per_host_and_creds_store(tmp_path: Path) -> None:
    env = _helper(tmp_path, "pass", """
import json, sys
server = sys.stdin.read().strip()
if server == "nothere.example.com":
    print("credentials not found in native keychain"); sys.exit(1)
user = "<token>" if server == "oauth.example.com" else "helper-user"
print(json.dumps({"ServerURL": server, "Username": user, "Secret": "s3cret-for-" + server}))
""")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "credHelpers": {"helped.example.com": "pass"},
        "credsStore": "pass",
        "auths": {"nothere.example.com": {"username": "u", "password": "fallback-pw"}},
    }))
    store = DockerConfigCredentials(path, env=env)
    assert store.get("helped.example.com") == Credentials(
        "helper-user", "s3cret-for-helped.example.com")
    assert store.get("docker.io") == Credentials(
        "helper-user", "s3cret-for-https://index.docker.io/v1/")
    assert store.get("oauth.example.com") == Credentials(
        identity_token="s3cret-for-oauth.example.com")
    # The store has nothing for it: the plain auths entry is used.
    assert store.get("nothere.example.com") == Credentials("u", "fallback-pw")


def test_failing_or_missing_helper_errors_name_it(tmp_path: Path) -> None:
    env = _helper(tmp_path, "broken", "import sys\nprint('keychain locked'); sys.exit(3)\n")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"a.io": "broken", "b.io": "absent"}}))
    store = DockerConfigCredentials(path, env=env)
    with pytest.raises(CredentialsError, match="docker-credential-broken.*a.io.*exit status 3"):
        store.get("a.io")
    with pytest.raises(CredentialsError, match="docker-credential-absent.*not installed"):
        store.get("b.io")


def test_repr_never_shows_secrets(tmp_path: Path) -> None:
    creds = Credentials("alice", SECRET, "idtok-secret-xyz")
    assert SECRET not in repr(creds) and "idtok" not in repr(creds)
    assert "alice" in repr(creds)
    assert not Credentials("alice")
