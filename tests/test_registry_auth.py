"""Basic (htpasswd) and Bearer (token service) authentication against real registries; no
credential or token ever reaches an error message, a repr or a log line."""

from __future__ import annotations

import base64
import logging
import subprocess

import pytest
import registry_fixtures as fx
from registry_fixtures import (
    BASIC_PASSWORD,
    BASIC_USER,
    TOKEN_PASSWORD,
    TOKEN_USER,
    DictSource,
    ImageSet,
    RegistryServer,
    TokenServer,
    fast_retry,
    require_tool,
    unique_repo,
)

from graphbuild.registry.client import RegistryClient
from graphbuild.registry.credentials import Credentials, StaticCredentials
from graphbuild.registry.digests import digest_of
from graphbuild.registry.errors import AuthenticationError
from graphbuild.registry.transfer import PublishError, PushPlan, PushTarget, publish

# Fixtures from registry_fixtures (pytest takes pytest_plugins from the root conftest only).
basic_registry = fx.basic_registry
token_registry = fx.token_registry

WRONG_PASSWORD = "definitely-wrong-pw-987"


def _inspect(host: str, repo: str, creds: str | None) -> subprocess.CompletedProcess:
    args = [require_tool("skopeo"), "inspect", "--raw", "--tls-verify=false"]
    if creds:
        args += ["--creds", creds]
    return subprocess.run([*args, f"docker://{host}/{repo}:v1"], capture_output=True,
                          timeout=60, check=False)


def _push(host: str, client: RegistryClient, repos: list[str], images: ImageSet):
    plan = PushPlan(tuple(PushTarget.to(f"{host}/{repo}", [images.index],
                                        {"v1": images.index["digest"]}) for repo in repos))
    return publish(plan, images.source, {host: client})


def test_basic_auth_push(basic_registry: RegistryServer) -> None:
    host, repos = basic_registry.host, [unique_repo("a"), unique_repo("b")]
    images = ImageSet(DictSource(), salt=repos[0])
    client = RegistryClient(host, credentials=Credentials(BASIC_USER, BASIC_PASSWORD),
                            retry=fast_retry())
    result = _push(host, client, repos, images)
    assert (result.blobs_uploaded, result.blobs_mounted) == (5, 5)
    shown = _inspect(host, repos[1], f"{BASIC_USER}:{BASIC_PASSWORD}")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == images.source.blobs[images.index["digest"]]
    assert _inspect(host, repos[1], None).returncode != 0
    # Challenged only by the first parallel requests; then credentials go with every request.
    logged = basic_registry.requests(repos[0])
    assert 1 <= len([r for r in logged if r[2] == 401]) <= 8 < len(logged)


def test_wrong_or_missing_password(basic_registry: RegistryServer) -> None:
    host, repo = basic_registry.host, unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    wrong = RegistryClient(host, credentials=Credentials(BASIC_USER, WRONG_PASSWORD),
                           retry=fast_retry())
    with pytest.raises(PublishError) as caught:
        _push(host, wrong, [repo], images)
    message = str(caught.value)
    assert "nothing was tagged" in message and host in message
    assert "authentication failed" in message and f"check the credentials for {host}" in message
    assert WRONG_PASSWORD not in message and WRONG_PASSWORD not in repr(wrong)
    anonymous = RegistryClient(host, retry=fast_retry())
    with pytest.raises(AuthenticationError, match=f"no credentials are configured for {host}"):
        anonymous.blob_exists(repo, digest_of(b""))


def test_bearer_token_push(token_registry: tuple[RegistryServer, TokenServer]) -> None:
    registry, tokens = token_registry
    repos = [unique_repo("a"), unique_repo("b")]
    images = ImageSet(DictSource(), salt=repos[0])
    client = RegistryClient(registry.host, credentials=StaticCredentials(
        {registry.host: Credentials(TOKEN_USER, TOKEN_PASSWORD)}), retry=fast_retry())
    start = len(tokens.requests)
    result = _push(registry.host, client, repos, images)
    assert (result.blobs_uploaded, result.blobs_mounted) == (5, 5)
    asked = tokens.requests[start:]
    scopes = [set(r["scopes"]) for r in asked]
    assert {f"repository:{repos[0]}:pull,push"} in scopes
    # Mounting into b needs pull on a in the same token.
    assert {f"repository:{repos[1]}:pull,push", f"repository:{repos[0]}:pull"} in scopes
    assert all(r["user"] == TOKEN_USER for r in asked)
    assert len(asked) <= 6, asked  # tokens are cached per scope, not fetched per request
    shown = _inspect(registry.host, repos[1], f"{TOKEN_USER}:{TOKEN_PASSWORD}")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == images.source.blobs[images.index["digest"]]


def test_access_token_field_and_identity_token(
        token_registry: tuple[RegistryServer, TokenServer]) -> None:
    registry, tokens = token_registry
    repo = unique_repo()
    tokens.refresh_tokens.add("refresh-token-abc123")
    tokens.answer_with = "access_token"
    try:
        client = RegistryClient(registry.host, retry=fast_retry(),
                                credentials=Credentials(identity_token="refresh-token-abc123"))
        images = ImageSet(DictSource(), salt=repo)
        _push(registry.host, client, [repo], images)
    finally:
        tokens.answer_with = "token"
    assert tokens.requests[-1]["method"] == "POST"
    assert tokens.requests[-1]["grant_type"] == "refresh_token"


def test_token_service_refusal(token_registry: tuple[RegistryServer, TokenServer]) -> None:
    registry, tokens = token_registry
    client = RegistryClient(registry.host, credentials=Credentials(TOKEN_USER, WRONG_PASSWORD),
                            retry=fast_retry())
    with pytest.raises(AuthenticationError) as caught:
        client.blob_exists(unique_repo(), digest_of(b""))
    message = str(caught.value)
    assert registry.host in message and "check blob" in message
    assert f"the token service {tokens.realm} refused" in message
    assert "invalid username or password" in message and WRONG_PASSWORD not in message


def test_secrets_never_logged(basic_registry: RegistryServer,
                              token_registry: tuple[RegistryServer, TokenServer],
                              caplog: pytest.LogCaptureFixture) -> None:
    registry, tokens = token_registry
    caplog.set_level(logging.DEBUG)
    issued_before = len(tokens.issued)
    messages: list[str] = []
    token_client = RegistryClient(registry.host, retry=fast_retry(),
                                  credentials=Credentials(TOKEN_USER, TOKEN_PASSWORD))
    _push(registry.host, token_client, [unique_repo()], ImageSet(DictSource(), salt="log"))
    basic_client = RegistryClient(basic_registry.host, retry=fast_retry(),
                                  credentials=Credentials(BASIC_USER, WRONG_PASSWORD))
    with pytest.raises(AuthenticationError) as caught:
        basic_client.blob_exists(unique_repo(), digest_of(b""))
    messages += [str(caught.value), repr(caught.value), repr(token_client), repr(basic_client)]
    secrets = [TOKEN_PASSWORD, WRONG_PASSWORD, *tokens.issued[issued_before:],
               base64.b64encode(f"{TOKEN_USER}:{TOKEN_PASSWORD}".encode()).decode(),
               base64.b64encode(f"{BASIC_USER}:{WRONG_PASSWORD}".encode()).decode()]
    assert len(secrets) > 4
    text = caplog.text + "\n".join(messages)
    assert caplog.records  # the client did log (debug), just nothing secret
    for secret in secrets:
        assert secret not in text
