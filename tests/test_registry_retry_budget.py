"""Retries are bounded in time as well as in count: under a persistent 500 on blob uploads a
push gives up in seconds, after one budget of attempts per upload (the upload session's POST
was retried 5 times inside each of 5 upload attempts: 25 POSTs and more than 20 s), with the
registry's message and no tag moved. And a run's retries against one registry are bounded as
a whole (``limits.RetryBudget``), however many push nodes meet its failures."""

from __future__ import annotations

import time

import registry_fixtures as fx
from registry_fixtures import unique_repo

from graphbuild.registry import limits

registry = fx.registry
fault_proxy = fx.fault_proxy


def test_a_persistent_500_on_uploads_ends_the_push_in_seconds(ws, registry, fault_proxy):
    fault_proxy.rules.append(fx.FaultRule("POST", r"/blobs/uploads/$", "500"))
    repo = unique_repo("budget")
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n"  # no SBOM, provenance blobs
                          "attest: {sbom: false, provenance: false}\n",
        "app/BUILD.yaml": f"app:\n  rule: image\n  tags: ['{fault_proxy.host}/{repo}:1']\n",
        "app/Dockerfile": "FROM scratch\nCOPY a.bin /a.bin\n",
        "app/a.bin": fx.random_bytes(4096, seed=5),
    })
    assert ws.run("run", "//...").code == 0
    t0 = time.monotonic()
    res = ws.run("run", "//...", "--push")
    took = time.monotonic() - t0
    assert res.code == 1, res
    assert took < 15, took
    assert "500" in res.err and "nothing was tagged" in res.err, res.err
    blobs = 2  # the layer and the config (the manifest is PUT, never POSTed)
    assert 0 < fault_proxy.injected["500"] <= blobs * 5, fault_proxy.injected


def test_a_broken_registry_fails_a_run_of_many_pushes_within_one_retry_budget(
        ws, registry, fault_proxy):
    """Six push nodes whose blob checks all meet a 500 retry, together, no more than the run's
    budget for that registry: each of the 12 checks retrying 4 times was 60 requests and 7 s;
    each failure says why it was not retried."""
    fault_proxy.rules.append(fx.FaultRule("HEAD", r"/blobs/", "500"))
    images = 6
    files = {"WORKSPACE.yaml": "default_platforms: [linux/amd64]\n"
                               "attest: {sbom: false, provenance: false}\n"}
    for i in range(images):
        repo = unique_repo(f"budget{i}")
        files[f"app{i}/BUILD.yaml"] = (f"app:\n  rule: image\n"
                                       f"  tags: ['{fault_proxy.host}/{repo}:1']\n")
        files[f"app{i}/Dockerfile"] = "FROM scratch\nCOPY a.bin /a.bin\n"
        files[f"app{i}/a.bin"] = fx.random_bytes(1024, seed=100 + i)
    ws.write(files)
    assert ws.run("run", "//...").code == 0
    res = ws.run("run", "//...", "--push", "--keep-going")  # every node tries
    assert res.code == 1, res
    checks = images * 2  # a layer and a config each
    assert checks < fault_proxy.injected["500"] <= checks + limits.RUN_RETRIES, \
        fault_proxy.injected
    assert f"retry budget for {fault_proxy.host} is spent" in res.err, res.err
    assert "nothing was tagged" in res.err and "Traceback" not in res.err
