"""Pushing through a proxy that drops connections and answers 500/429: retries get the push
through; an unrecoverable failure moves no tag."""

from __future__ import annotations

import os
import subprocess

import pytest
import registry_fixtures as fx
from registry_fixtures import (
    DictSource,
    FaultProxy,
    FaultRule,
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
fault_proxy = fx.fault_proxy


def _inspect(registry: RegistryServer, repo: str, tag: str) -> subprocess.CompletedProcess:
    # Straight to the registry, not through the proxy: what is really there.
    return subprocess.run([require_tool("skopeo"), "inspect", "--raw", "--tls-verify=false",
                           f"docker://{registry.host}/{repo}:{tag}"], capture_output=True,
                          timeout=60, check=False)


def _plan(proxy: FaultProxy, repos: list[str], images: ImageSet) -> PushPlan:
    return PushPlan(tuple(PushTarget.to(f"{proxy.host}/{repo}", [images.index],
                                        {"v1": images.index["digest"]}) for repo in repos))


@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("FAULT_SEEDS", "1 2 3").split()])
def test_push_completes_through_faults(registry: RegistryServer, fault_proxy: FaultProxy,
                                       seed: int) -> None:
    fault_proxy.rate, fault_proxy.seed = 0.35, seed
    repos = [unique_repo("a"), unique_repo("b")]
    images = ImageSet(DictSource(), salt=repos[0])
    client = RegistryClient(fault_proxy.host, retry=fast_retry())
    events: list = []
    result = publish(_plan(fault_proxy, repos, images), images.source,
                     {fault_proxy.host: client}, lambda *e: events.append(e))
    assert sum(fault_proxy.injected.values()) > 0
    assert client.stats["retries"] > 0
    assert len(events) == 2 and (result.blobs_uploaded, result.blobs_mounted) == (5, 5)
    for repo in repos:
        shown = _inspect(registry, repo, "v1")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == images.source.blobs[images.index["digest"]]
    # A re-run through the same faults only checks.
    again = publish(_plan(fault_proxy, repos, images), images.source,
                    {fault_proxy.host: client})
    assert (again.blobs_uploaded, again.manifests_uploaded, again.tags_moved) == (0, 0, [])


def test_rejected_child_manifest_moves_no_tag(registry: RegistryServer,
                                             fault_proxy: FaultProxy) -> None:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    child = images.manifests[1]["digest"]
    fault_proxy.rules.append(FaultRule("PUT", f"/manifests/{child}$", "500"))
    client = RegistryClient(fault_proxy.host, retry=fast_retry())
    with pytest.raises(PublishError) as caught:
        publish(_plan(fault_proxy, [repo], images), images.source, {fault_proxy.host: client})
    message = str(caught.value)
    assert message.startswith("push failed, nothing was tagged")
    assert f"{fault_proxy.host}/{repo}: put manifest {child}" in message
    assert "injected fault 500" in message and "after 5 attempts" in message
    assert fault_proxy.injected["500"] == 5
    assert _inspect(registry, repo, "v1").returncode != 0
    assert not client.head_manifest(repo, images.index["digest"])


def test_dropped_answers_to_uploads_are_survived(registry: RegistryServer,
                                                 fault_proxy: FaultProxy) -> None:
    """The registry stored the blob but the answer was lost: the retry notices it is there."""
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo, platforms=(("linux", "amd64", ""),))
    fault_proxy.rate, fault_proxy.kinds, fault_proxy.max_consecutive = 1.0, ("drop-after",), 1
    client = RegistryClient(fault_proxy.host, retry=fast_retry())
    plan = PushPlan((PushTarget.to(f"{fault_proxy.host}/{repo}", [images.manifests[0]],
                                   {"v1": images.manifests[0]["digest"]}),))
    publish(plan, images.source, {fault_proxy.host: client})
    assert fault_proxy.injected["drop-after"] > 5
    assert _inspect(registry, repo, "v1").returncode == 0


def test_failure_while_moving_tags_says_which_moved(registry: RegistryServer,
                                                   fault_proxy: FaultProxy) -> None:
    repo = unique_repo()
    images = ImageSet(DictSource(), salt=repo)
    digest = images.index["digest"]
    fault_proxy.rules.append(FaultRule("PUT", "/manifests/v2$", "403"))
    # v1's move is still under way when v2's refusal arrives: it counts once it has finished
    fault_proxy.rules.append(FaultRule("PUT", "/manifests/v1$", "hold"))
    plan = PushPlan((PushTarget.to(f"{fault_proxy.host}/{repo}", [images.index],
                                   {"v1": digest, "v2": digest}),))
    with pytest.raises(PublishError) as caught:
        publish(plan, images.source,
                {fault_proxy.host: RegistryClient(fault_proxy.host, retry=fast_retry())})
    assert str(caught.value).startswith(
        f"push failed while moving tags: moved {fault_proxy.host}/{repo}:v1; "
        f"not moved {fault_proxy.host}/{repo}:v2: ")
    assert caught.value.tagged == [f"{fault_proxy.host}/{repo}:v1"]
    assert fault_proxy.injected["403"] == 1  # not retried: a refusal is not transient
    assert _inspect(registry, repo, "v1").returncode == 0
