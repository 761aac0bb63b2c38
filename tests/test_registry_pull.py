"""Pulling one platform of an image into a local store: verified, and never fetched twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import registry_fixtures as fx
from registry_fixtures import DictSource, DirSink, ImageSet, RegistryServer, fast_retry, unique_repo

from graphbuild.registry.client import RegistryClient
from graphbuild.registry.errors import RegistryError
from graphbuild.registry.transfer import PushPlan, PushTarget, publish, pull_image

# Fixtures from registry_fixtures (pytest takes pytest_plugins from the root conftest only).
registry = fx.registry


@pytest.fixture
def pushed(registry: RegistryServer) -> tuple[str, ImageSet]:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    extra = (images.manifests[0],)  # also pushed by digest on its own
    plan = PushPlan((PushTarget.to(f"{registry.host}/{repo}", [images.index, *extra],
                                   {"v1": images.index["digest"]}),))
    client = RegistryClient(registry.host, retry=fast_retry())
    publish(plan, images.source, {registry.host: client})
    return repo, images


def _expected(images: ImageSet, which: int) -> set[str]:
    manifest = images.manifests[which]
    parsed = json.loads(images.source.blobs[manifest["digest"]])
    return {images.index["digest"], manifest["digest"], parsed["config"]["digest"],
            *(layer["digest"] for layer in parsed["layers"])}


def test_pull_by_digest_for_a_platform(registry: RegistryServer, pushed: tuple[str, ImageSet],
                                       tmp_path: Path) -> None:
    repo, images = pushed
    sink, client = DirSink(tmp_path / "store"), RegistryClient(registry.host, retry=fast_retry())
    ref = f"{registry.host}/{repo}@{images.index['digest']}"
    pulled = pull_image(client, ref, "linux/arm64", sink)
    arm64 = images.manifests[1]
    assert pulled.descriptor["digest"] == arm64["digest"]
    assert pulled.descriptor["platform"] == {"architecture": "arm64", "os": "linux",
                                             "variant": "v8"}
    assert pulled.index_digest == images.index["digest"]
    assert pulled.manifest == images.source.blobs[arm64["digest"]]
    assert pulled.config == images.source.blobs[images.configs[1]["digest"]]
    assert sink.digests() == _expected(images, 1)  # nothing of the amd64 image
    assert pulled.blobs_fetched == 5
    for digest in sink.digests():
        assert sink.read_bytes(digest) == images.source.blobs[digest]
    # Again, spelled with the v8 variant: everything is local, not one request is made.
    before = client.stats["requests"]
    again = pull_image(client, ref, "linux/arm64/v8", sink)
    assert (again.blobs_fetched, client.stats["requests"] - before) == (0, 0)
    assert again.descriptor == pulled.descriptor
    assert not list(sink.tmp_dir().iterdir())


def test_pull_by_tag_checks_the_tag_only(registry: RegistryServer,
                                        pushed: tuple[str, ImageSet], tmp_path: Path) -> None:
    repo, images = pushed
    sink, client = DirSink(tmp_path / "store"), RegistryClient(registry.host, retry=fast_retry())
    first = pull_image(client, f"{registry.host}/{repo}:v1", "linux/amd64", sink)
    assert first.reference.digest == images.index["digest"] and first.blobs_fetched == 5
    before = client.stats["requests"]
    again = pull_image(client, f"{registry.host}/{repo}:v1", "linux/amd64", sink)
    assert again.blobs_fetched == 0 and client.stats["requests"] - before == 1  # one HEAD
    assert registry.requests(repo, "GET", "blobs")  # the first pull did download


def test_pull_single_manifest_checks_its_platform(registry: RegistryServer,
                                                 pushed: tuple[str, ImageSet],
                                                 tmp_path: Path) -> None:
    repo, images = pushed
    sink, client = DirSink(tmp_path / "store"), RegistryClient(registry.host, retry=fast_retry())
    ref = f"{registry.host}/{repo}@{images.manifests[0]['digest']}"
    pulled = pull_image(client, ref, "linux/amd64", sink)
    assert pulled.index_digest is None
    assert pulled.descriptor["platform"] == {"architecture": "amd64", "os": "linux"}
    with pytest.raises(RegistryError, match="the image is for linux/amd64, not linux/arm64"):
        pull_image(client, ref, "linux/arm64", sink)


def test_missing_platform_names_what_there_is(registry: RegistryServer,
                                              pushed: tuple[str, ImageSet],
                                              tmp_path: Path) -> None:
    repo, _ = pushed
    client = RegistryClient(registry.host, retry=fast_retry())
    with pytest.raises(RegistryError) as caught:
        pull_image(client, f"{registry.host}/{repo}:v1", "linux/s390x",
                   DirSink(tmp_path / "store"))
    assert str(caught.value).endswith(
        "no image for linux/s390x in the index (it has linux/amd64, linux/arm64)")
    assert repo in str(caught.value)
