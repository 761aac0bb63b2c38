"""RegistryClient against the real distribution registry: blobs, manifests, tags, errors."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
import registry_fixtures as fx
from registry_fixtures import (
    OCI_INDEX,
    OCI_MANIFEST,
    DictSource,
    FaultProxy,
    FaultRule,
    ImageSet,
    RegistryServer,
    fast_retry,
    random_bytes,
    unique_repo,
)

from graphbuild.registry.client import RegistryClient, TransientError, _next_link, is_loopback
from graphbuild.registry.digests import digest_of
from graphbuild.registry.errors import DigestMismatchError, RegistryError
from graphbuild.registry.retry import RetryPolicy, retry_after

# Fixtures from registry_fixtures (pytest takes pytest_plugins from the root conftest only).
registry = fx.registry
fault_proxy = fx.fault_proxy
basic_registry = fx.basic_registry

MiB = 1024 * 1024


def _client(host: str, **kwargs) -> RegistryClient:
    return RegistryClient(host, retry=fast_retry(), **kwargs)


def _push_blobs(client: RegistryClient, repo: str, images: ImageSet) -> None:
    for digest in images.blob_digests():
        data = images.source.blobs[digest]
        client.upload_blob(repo, digest, len(data), lambda d=data: io.BytesIO(d))


def test_scheme_follows_loopback_and_insecure() -> None:
    assert RegistryClient("127.0.0.1:5000").base_url == "http://127.0.0.1:5000"
    assert RegistryClient("127.9.8.7:5000").base_url == "http://127.9.8.7:5000"
    assert RegistryClient("localhost:5000").base_url == "http://localhost:5000"
    assert RegistryClient("[::1]:5000").base_url == "http://[::1]:5000"
    assert RegistryClient("reg.internal:5000", insecure=True).base_url == "http://reg.internal:5000"
    assert RegistryClient("ghcr.io").base_url == "https://ghcr.io"
    assert RegistryClient("docker.io").base_url == "https://registry-1.docker.io"
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("localhost.example.com")
    with pytest.raises(ValueError):
        RegistryClient("ghcr.io/org")


def test_monolithic_blob_round_trip(registry: RegistryServer) -> None:
    repo, client = unique_repo(), _client(registry.host)
    data = b"hello blob\n" * 100
    digest = digest_of(data)
    assert not client.blob_exists(repo, digest)
    client.upload_blob(repo, digest, len(data), lambda: io.BytesIO(data))
    assert client.blob_exists(repo, digest)
    out = io.BytesIO()
    assert client.get_blob(repo, digest, out, len(data)) == len(data)
    assert out.getvalue() == data
    assert [r[0] for r in registry.requests(repo, kind="uploads")] == ["POST", "PUT"]


def test_chunked_upload_above_the_threshold(registry: RegistryServer) -> None:
    repo = unique_repo()
    client = _client(registry.host, chunk_threshold=1 * MiB, chunk_size=1 * MiB)
    data = random_bytes(3 * MiB + 123, seed=7)
    digest = digest_of(data)
    client.upload_blob(repo, digest, len(data), lambda: io.BytesIO(data))
    methods = [r[0] for r in registry.requests(repo, kind="uploads")]
    assert methods == ["POST", "PATCH", "PATCH", "PATCH", "PATCH", "PUT"]
    out = io.BytesIO()
    client.get_blob(repo, digest, out)
    assert hashlib.sha256(out.getvalue()).hexdigest() == digest.split(":")[1]


def test_wrong_digest_is_refused_by_the_registry(registry: RegistryServer) -> None:
    repo, client = unique_repo(), _client(registry.host)
    wrong = digest_of(b"something else")
    with pytest.raises(RegistryError) as caught:
        client.upload_blob(repo, wrong, 5, lambda: io.BytesIO(b"hello"))
    message = str(caught.value)
    assert registry.host in message and repo in message and f"upload blob {wrong}" in message
    assert "DIGEST_INVALID" in message


def test_short_local_blob_fails_loudly(registry: RegistryServer) -> None:
    client = _client(registry.host)
    with pytest.raises(RegistryError, match="short of its size"):
        client.upload_blob(unique_repo(), digest_of(b"abc"), 10, lambda: io.BytesIO(b"abc"))


def test_a_streamed_body_failing_gives_its_connection_back(registry: RegistryServer) -> None:
    """A big blob is streamed: its source failing mid-request must not keep a connection slot
    (with one slot, the next request would wait forever)."""
    client = _client(registry.host, max_connections=1)
    big = b"x" * (3 * MiB)
    repo, seen = unique_repo(), []

    def uploads() -> None:
        for _ in range(3):
            try:
                client.upload_blob(unique_repo(), digest_of(big + b"y"), len(big) + 1,
                                   lambda: io.BytesIO(big))
            except RegistryError as exc:
                seen.append(str(exc))
        client.upload_blob(repo, digest_of(big), len(big), lambda: io.BytesIO(big))
        seen.append(client.blob_exists(repo, digest_of(big)))

    worker = threading.Thread(target=uploads, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "a failed upload kept the only connection slot"
    assert len(seen) == 4 and all("short of its size" in e for e in seen[:3]) and seen[3] is True


def test_mount_across_repositories(registry: RegistryServer) -> None:
    source, target, client = unique_repo(), unique_repo(), _client(registry.host)
    data = b"mount me"
    digest = digest_of(data)
    client.upload_blob(source, digest, len(data), lambda: io.BytesIO(data))
    assert client.mount_blob(target, digest, source)
    assert client.blob_exists(target, digest)
    # Nothing to mount from: the registry offers an upload instead, which we decline.
    assert not client.mount_blob(unique_repo(), digest_of(b"nowhere"), source)
    assert client.stats["blobs_mounted"] == 1


def test_manifests_by_digest_and_tag(registry: RegistryServer) -> None:
    repo, client = unique_repo(), _client(registry.host)
    images = ImageSet(DictSource(), salt=repo)
    _push_blobs(client, repo, images)
    for manifest in images.manifests:
        data = images.source.blobs[manifest["digest"]]
        assert client.put_manifest(repo, manifest["digest"], data, OCI_MANIFEST) == \
            manifest["digest"]
    index = images.source.blobs[images.index["digest"]]
    assert client.put_manifest(repo, "v1", index, OCI_INDEX) == images.index["digest"]
    data, media_type, digest = client.get_manifest(repo, "v1")
    assert (data, media_type, digest) == (index, OCI_INDEX, images.index["digest"])
    assert client.get_manifest(repo, digest)[0] == index
    info = client.head_manifest(repo, "v1")
    assert info is not None and (info.digest, info.size, info.media_type) == (
        digest, len(index), OCI_INDEX)
    assert client.head_manifest(repo, "absent") is None


def test_put_manifest_checks_the_digest_it_is_given(registry: RegistryServer) -> None:
    client = _client(registry.host)
    with pytest.raises(DigestMismatchError):
        client.put_manifest(unique_repo(), digest_of(b"x"), b"{}", OCI_MANIFEST)


def test_list_tags_follows_pages(registry: RegistryServer) -> None:
    repo, client = unique_repo(), _client(registry.host)
    images = ImageSet(DictSource(), salt=repo, platforms=(("linux", "amd64", ""),))
    _push_blobs(client, repo, images)
    data = images.source.blobs[images.manifests[0]["digest"]]
    for tag in ("a", "b", "c"):
        client.put_manifest(repo, tag, data, OCI_MANIFEST)
    # distribution 2.8 ignores ``n`` and answers in one page; newer registries paginate.
    assert sorted(client.list_tags(repo, page_size=2)) == ["a", "b", "c"]
    request = httpx.Request("GET", f"http://{registry.host}/v2/{repo}/tags/list?n=2")
    page = httpx.Response(200, request=request, headers={
        "Link": f'</v2/{repo}/tags/list?last=b&n=2>; rel="next"'})
    assert str(_next_link(page)) == f"http://{registry.host}/v2/{repo}/tags/list?last=b&n=2"


def test_errors_name_registry_repository_operation_and_reason(registry: RegistryServer) -> None:
    repo, client = unique_repo(), _client(registry.host)
    with pytest.raises(RegistryError) as caught:
        client.get_manifest(repo, "nope")
    assert str(caught.value) == (f"{registry.host}/{repo}: get manifest nope: "
                                 "MANIFEST_UNKNOWN: manifest unknown (HTTP 404 Not Found)")
    with pytest.raises(RegistryError, match="NAME_UNKNOWN"):
        client.list_tags(repo)


def test_downloads_are_verified(registry: RegistryServer, fault_proxy: FaultProxy) -> None:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo, platforms=(("linux", "amd64", ""),))
    _push_blobs(_client(registry.host), repo, images)
    client = _client(registry.host)
    data = images.source.blobs[images.manifests[0]["digest"]]
    client.put_manifest(repo, "v1", data, OCI_MANIFEST)
    fault_proxy.rules.append(FaultRule("GET", "/blobs/|/manifests/", "corrupt"))
    through = _client(fault_proxy.host)
    with pytest.raises(DigestMismatchError, match="download blob"):
        through.get_blob(repo, images.base["digest"], io.BytesIO())
    with pytest.raises(DigestMismatchError, match="hashes to"):
        through.get_manifest(repo, images.manifests[0]["digest"])
    with pytest.raises(DigestMismatchError):  # by tag: checked against Docker-Content-Digest
        through.get_manifest(repo, "v1")


def test_unreachable_registry_fails_after_bounded_retries() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = RegistryClient(f"127.0.0.1:{port}", retry=fast_retry(attempts=3))
    with pytest.raises(TransientError) as caught:
        client.blob_exists("app", digest_of(b""))
    message = str(caught.value)
    assert f"127.0.0.1:{port}/app: check blob" in message and "after 3 attempts" in message
    assert client.stats["retries"] == 2


def test_retry_after_is_honoured(registry: RegistryServer, fault_proxy: FaultProxy) -> None:
    fault_proxy.rate, fault_proxy.kinds, fault_proxy.max_consecutive = 1.0, ("429",), 1
    fault_proxy.retry_after = "1"
    client = RegistryClient(fault_proxy.host, retry=RetryPolicy(base_delay=0.01, max_delay=0.02))
    started = time.monotonic()
    assert not client.blob_exists(unique_repo(), digest_of(b"x"))
    assert time.monotonic() - started >= 0.95
    assert fault_proxy.injected["429"] == 1 and client.stats["retries"] == 1


def test_backoff_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    delays = [policy.backoff(n) for n in range(1, 8)]
    assert all(0.25 <= d <= 4.0 for d in delays)
    assert 2.0 <= delays[-1] <= 4.0
    response = httpx.Response(429, headers={"Retry-After": "7"})
    assert retry_after(response) == 7.0
    assert RetryPolicy(max_retry_after=3).delay_for(1, response) == 3
    dated = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after(dated) == 0.0


def test_manifest_json_is_what_we_sent(registry: RegistryServer) -> None:
    repo, client = unique_repo(), _client(registry.host)
    images = ImageSet(DictSource(), salt=repo, platforms=(("linux", "arm64", "v8"),))
    _push_blobs(client, repo, images)
    data = images.source.blobs[images.manifests[0]["digest"]]
    client.put_manifest(repo, "latest", data, OCI_MANIFEST)
    fetched, _, _ = client.get_manifest(repo, "latest")
    assert json.loads(fetched)["config"]["digest"] == images.configs[0]["digest"]


PLAIN_PROBE = """
import io, sys
from graphbuild.registry.client import RegistryClient
from graphbuild.registry.digests import digest_of
data = b"lean" * 1000
with RegistryClient(sys.argv[1]) as client:
    assert not client.blob_exists("lean", digest_of(data))
    client.upload_blob("lean", digest_of(data), len(data), lambda: io.BytesIO(data))
    out = io.BytesIO()
    assert client.get_blob("lean", digest_of(data), out) == len(data)
    print(client.stats["requests"], "httpx" in sys.modules)
"""


def test_plain_http_goes_without_httpx(registry: RegistryServer) -> None:
    """A loopback registry is spoken to over the lean keep-alive pool: httpx (and the SSL
    context it would build) is not even imported."""
    probe = subprocess.run([sys.executable, "-c", PLAIN_PROBE, registry.host],
                           capture_output=True, text=True, timeout=60, check=False)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["4", "False"]


def test_the_httpx_path_does_the_same(registry: RegistryServer) -> None:
    """What HTTPS registries get (httpx, certificate checks), forced here over plain HTTP by
    passing a transport: uploads, mounts, manifests, streamed downloads, errors."""
    repo = unique_repo()
    client = _client(registry.host, transport=httpx.HTTPTransport(),
                     chunk_threshold=1 * MiB, chunk_size=1 * MiB)
    images = ImageSet(DictSource(), salt=repo)
    _push_blobs(client, repo, images)
    big = random_bytes(2 * MiB + 5, seed=11)
    client.upload_blob(repo, digest_of(big), len(big), lambda: io.BytesIO(big))
    assert client.mount_blob(unique_repo(), digest_of(big), repo)
    for manifest in images.manifests:
        client.put_manifest(repo, manifest["digest"], images.source.blobs[manifest["digest"]],
                            OCI_MANIFEST)
    index = images.source.blobs[images.index["digest"]]
    client.put_manifest(repo, "v1", index, OCI_INDEX)
    assert client.get_manifest(repo, "v1")[0] == index
    out = io.BytesIO()
    assert client.get_blob(repo, digest_of(big), out, len(big)) == len(big)
    assert out.getvalue() == big
    with pytest.raises(RegistryError, match="MANIFEST_UNKNOWN"):
        client.get_manifest(repo, "nope")
    client.close()


def test_redirects_are_followed(registry: RegistryServer, fault_proxy: FaultProxy) -> None:
    """A registry may send a download elsewhere (a 307 to object storage): GET and HEAD follow
    it."""
    repo = unique_repo()
    data = b"redirected blob"
    _client(registry.host).upload_blob(repo, digest_of(data), len(data),
                                       lambda: io.BytesIO(data))
    fault_proxy.rules.append(FaultRule("GET", "/blobs/sha256:", "redirect"))
    fault_proxy.rules.append(FaultRule("HEAD", "/blobs/sha256:", "redirect"))
    client = _client(fault_proxy.host)
    assert client.blob_exists(repo, digest_of(data))
    out = io.BytesIO()
    assert client.get_blob(repo, digest_of(data), out, len(data)) == len(data)
    assert out.getvalue() == data
    assert [(method, auth) for method, _, auth in fault_proxy.redirected] == [
        ("HEAD", False), ("GET", False)]


def test_credentials_do_not_follow_a_redirect_to_another_origin(
        basic_registry: RegistryServer) -> None:
    from graphbuild.registry.credentials import Credentials
    from graphbuild.registry.errors import AuthenticationError

    proxy = FaultProxy(basic_registry.host).start()
    try:
        repo, data = unique_repo(), b"behind basic auth"
        client = _client(proxy.host, credentials=Credentials(fx.BASIC_USER, fx.BASIC_PASSWORD))
        client.upload_blob(repo, digest_of(data), len(data), lambda: io.BytesIO(data))
        proxy.rules.append(FaultRule("GET", "/blobs/sha256:", "redirect"))
        # the other origin gets no Authorization; this one answers 401 to that
        with pytest.raises(AuthenticationError):
            client.get_blob(repo, digest_of(data), io.BytesIO())
        assert proxy.redirected and not any(auth for _, _, auth in proxy.redirected)
    finally:
        proxy.stop()
