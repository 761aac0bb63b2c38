"""The transactional push against the real registry, read back with skopeo."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
import registry_fixtures as fx
from registry_fixtures import (
    DictSource,
    ImageSet,
    RegistryServer,
    fast_retry,
    require_tool,
    unique_repo,
)

from graphbuild.registry.client import RegistryClient
from graphbuild.registry.transfer import PublishError, PushPlan, PushTarget, publish

# Fixtures from registry_fixtures (pytest takes pytest_plugins from the root conftest only).
registry = fx.registry


def skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("skopeo"), *args], capture_output=True, timeout=60,
                          check=False)


def inspect_raw(ref: str, *extra: str) -> subprocess.CompletedProcess:
    return skopeo("inspect", "--raw", "--tls-verify=false", *extra, f"docker://{ref}")


def _push(registry: RegistryServer, images: ImageSet, repos: list[str], tags: dict[str, str],
          events: list | None = None, client: RegistryClient | None = None, **kwargs):
    client = client or RegistryClient(registry.host, retry=fast_retry())
    targets = tuple(PushTarget.to(f"{registry.host}/{repo}", [images.index], tags, **kwargs)
                    for repo in repos)
    on_event = (lambda *event: events.append(event)) if events is not None else None
    return publish(PushPlan(targets), images.source, {registry.host: client}, on_event)


def test_push_index_read_back_by_skopeo(registry: RegistryServer, tmp_path: Path) -> None:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    digest = images.index["digest"]
    events: list = []
    result = _push(registry, images, [repo], {"v1": digest, "stable": digest}, events)
    assert events == [("pushed", f"{registry.host}/{repo}:v1", digest),
                      ("pushed", f"{registry.host}/{repo}:stable", digest)]
    assert (result.blobs_uploaded, result.manifests_uploaded) == (5, 3)
    raw = inspect_raw(f"{registry.host}/{repo}:v1")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == images.source.blobs[digest]
    copied = skopeo("copy", "--all", "--src-tls-verify=false",
                    f"docker://{registry.host}/{repo}:v1", f"oci:{tmp_path}/oci:v1")
    assert copied.returncode == 0, copied.stderr
    layout_index = json.loads((tmp_path / "oci" / "index.json").read_text())
    assert layout_index["manifests"][0]["digest"] == digest
    for blob in images.blob_digests():
        assert (tmp_path / "oci" / "blobs" / "sha256" / blob.split(":")[1]).exists()


def test_second_push_uploads_nothing_and_leaves_tags(registry: RegistryServer) -> None:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    tags = {"v1": images.index["digest"]}
    _push(registry, images, [repo], tags)
    before = len(registry.requests(repo))
    events: list = []
    again = _push(registry, images, [repo], tags, events)
    assert (again.blobs_uploaded, again.blobs_mounted, again.manifests_uploaded) == (0, 0, 0)
    assert again.tags_unchanged == [f"{registry.host}/{repo}:v1"] and events == []
    second = registry.requests(repo)[before:]
    assert second and all(method == "HEAD" for method, _, _ in second), second


def test_shared_blobs_cross_the_network_once(registry: RegistryServer) -> None:
    first, second = unique_repo("a"), unique_repo("b")
    images = ImageSet(DictSource(), salt=first)
    client = RegistryClient(registry.host, retry=fast_retry())
    result = _push(registry, images, [first, second], {"v1": images.index["digest"]},
                   client=client)
    assert (result.blobs_uploaded, result.blobs_mounted) == (5, 5)
    assert client.stats["bytes_uploaded"] == sum(
        len(images.source.blobs[d]) for d in images.blob_digests())
    mounts = [path for method, path, status in registry.requests(second, "POST")
              if "mount=" in path and status == 201]
    assert len(mounts) == 5
    assert not [p for m, p, _ in registry.requests(second) if m in ("PUT", "PATCH") and
                "/blobs/" in p]
    assert inspect_raw(f"{registry.host}/{second}:v1").returncode == 0


def test_tag_moves_to_a_new_digest(registry: RegistryServer) -> None:
    repo = unique_repo()
    old = ImageSet(DictSource(), salt=repo + "old")
    new = ImageSet(DictSource(), salt=repo + "new")
    _push(registry, old, [repo], {"v1": old.index["digest"]})
    events: list = []
    result = _push(registry, new, [repo], {"v1": new.index["digest"]}, events)
    assert result.blobs_present == 1  # the base layer
    assert events == [("pushed", f"{registry.host}/{repo}:v1", new.index["digest"])]
    assert inspect_raw(f"{registry.host}/{repo}:v1").stdout == new.source.blobs[
        new.index["digest"]]


def _bad_index(images: ImageSet, entries: list[dict]) -> dict:
    images.index = images.make_index(entries)
    return images.index


def test_platform_mismatch_moves_no_tag(registry: RegistryServer) -> None:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    amd64, arm64 = images.manifests
    lying = {**arm64, "platform": {"architecture": "s390x", "os": "linux"}}
    index = _bad_index(images, [amd64, lying])
    with pytest.raises(PublishError) as caught:
        _push(registry, images, [repo], {"v1": index["digest"]})
    message = str(caught.value)
    assert "nothing was tagged" in message
    assert "says linux/s390x but its image config says linux/arm64" in message
    assert inspect_raw(f"{registry.host}/{repo}:v1").returncode != 0
    # Marked as intended: the same push goes through.
    _push(registry, images, [repo], {"v1": index["digest"]},
          forced=[(index["digest"], arm64["digest"])])
    assert inspect_raw(f"{registry.host}/{repo}:v1").returncode == 0


def test_duplicate_platform_moves_no_tag(registry: RegistryServer) -> None:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    other = ImageSet(images.source, salt=repo + "2")
    index = _bad_index(images, [images.manifests[0], other.manifests[0]])
    with pytest.raises(PublishError, match="nothing was tagged.*platform linux/amd64 appears "
                                           "twice"):
        _push(registry, images, [repo], {"v1": index["digest"]})
    assert inspect_raw(f"{registry.host}/{repo}:v1").returncode != 0


def test_arm64_v8_equals_no_variant(registry: RegistryServer) -> None:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    amd64, arm64 = images.manifests
    plain = {**arm64, "platform": {"architecture": "arm64", "os": "linux"}}
    index = _bad_index(images, [amd64, plain])
    _push(registry, images, [repo], {"v1": index["digest"]})
    assert inspect_raw(f"{registry.host}/{repo}:v1").returncode == 0


def test_plan_mistakes_fail_before_any_upload(registry: RegistryServer) -> None:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    with pytest.raises(PublishError, match="nothing was tagged.*not pushed"):
        _push(registry, images, [repo], {"v1": images.manifests[0]["digest"]})
    del images.source.blobs[images.base["digest"]]
    with pytest.raises(PublishError, match="not in the local store"):
        _push(registry, images, [repo], {"v1": images.index["digest"]})
    assert registry.requests(repo) == []


def test_docker_manifest_list_index(registry: RegistryServer) -> None:
    """A Docker manifest list over OCI manifests is stored and checked the same way."""
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    listed = images.source.add_json(
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list"
         ".v2+json", "manifests": images.manifests},
        "application/vnd.docker.distribution.manifest.list.v2+json")
    images.index = listed
    result = _push(registry, images, [repo], {"v1": listed["digest"]})
    assert result.tags_moved == [f"{registry.host}/{repo}:v1"]
    assert inspect_raw(f"{registry.host}/{repo}:v1").stdout == images.source.blobs[
        listed["digest"]]


def test_known_locations_are_mount_sources(registry: RegistryServer) -> None:
    base_repo, repo = unique_repo("base"), unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    base = images.base["digest"]
    client = RegistryClient(registry.host, retry=fast_retry())
    client.upload_blob(base_repo, base, images.base["size"],
                       lambda: io.BytesIO(images.source.blobs[base]))
    targets = (PushTarget.to(f"{registry.host}/{repo}", [images.index],
                             {"v1": images.index["digest"]}),)
    plan = PushPlan(targets, known_locations={base: (f"{registry.host}/{base_repo}",
                                                     "elsewhere.example.com/base")})
    result = publish(plan, images.source, {registry.host: client})
    assert (result.blobs_mounted, result.blobs_uploaded) == (1, 4)
    assert inspect_raw(f"{registry.host}/{repo}:v1").returncode == 0


def test_mount_first_skips_the_head_and_falls_back_when_refused(
        registry: RegistryServer) -> None:
    """A ``mount_first`` blob (one this run has just put into another repository) is mounted
    without a HEAD; a refused mount (202) is cancelled, then HEAD and upload as usual."""
    base_repo, repo, other = unique_repo("base"), unique_repo(), unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    base = images.base["digest"]
    client = RegistryClient(registry.host, retry=fast_retry())
    client.upload_blob(base_repo, base, images.base["size"],
                       lambda: io.BytesIO(images.source.blobs[base]))

    def plan(into: str, known: str) -> PushPlan:
        targets = (PushTarget.to(f"{registry.host}/{into}", [images.index],
                                 {"v1": images.index["digest"]}),)
        return PushPlan(targets, known_locations={base: (f"{registry.host}/{known}",)},
                        mount_first=frozenset({base}))

    result = publish(plan(repo, base_repo), images.source, {registry.host: client})
    assert (result.blobs_mounted, result.blobs_uploaded) == (1, 4)
    assert [m for m, p, _ in registry.requests(repo) if base.split(":")[1] in p] == ["POST"]
    # The known location does not have it: the mount is refused and the blob uploaded.
    refused = publish(plan(other, unique_repo("empty")), images.source, {registry.host: client})
    assert (refused.blobs_mounted, refused.blobs_uploaded) == (0, 5)
    logged = registry.requests(other)
    # the mount POST, its HEAD, the PUT completing its upload; the refused session deleted
    assert [m for m, p, _ in logged if base.split(":")[1] in p] == ["POST", "HEAD", "PUT"]
    assert [m for m, _, _ in logged].count("DELETE") == 1
    assert inspect_raw(f"{registry.host}/{other}:v1").returncode == 0
