"""Retries are bounded in time as well as in count: under a persistent 500 on blob uploads a
push gives up in seconds, after one budget of attempts per upload (the upload session's POST
was retried 5 times inside each of 5 upload attempts: 25 POSTs and more than 20 s), with the
registry's message and no tag moved."""

from __future__ import annotations

import time

import registry_fixtures as fx
from registry_fixtures import unique_repo

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
