"""A registry that drips its answers one byte at a time never holds a run: `run --push` stops at
its push deadline (`--push-timeout`) with one message naming the registry, and one Ctrl-C or
SIGTERM ends it at once (exit 130, as every interruption), with no tag moved and no traceback.

The registry is real; the fault proxy in front of it forwards each manifest PUT and drips the
answer (a byte every half second: never idle long enough for the 60 s idle timeout)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import registry_fixtures as fx
from conftest import WorkspaceFixture
from registry_fixtures import unique_repo

from graphbuild.registry import limits
from graphbuild.registry.client import RegistryClient, TransientError
from graphbuild.registry.retry import RetryPolicy

registry = fx.registry
fault_proxy = fx.fault_proxy


def _workspace(ws: WorkspaceFixture, proxy: fx.FaultProxy, repo: str) -> None:
    """One image to push through ``proxy``, built already: only the push is left."""
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": f"app:\n  rule: image\n  tags: ['{proxy.host}/{repo}:1']\n",
        "app/Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n",
        "app/a.txt": f"{repo}\n",
    })
    assert ws.run("run", "//...").code == 0
    proxy.rules.append(fx.FaultRule("PUT", r"/manifests/", "drip"))


def _untagged(registry: fx.RegistryServer, repo: str) -> bool:
    with RegistryClient(registry.host) as client:
        return client.head_manifest(repo, "1") is None


def test_push_to_a_dripping_registry_stops_at_the_push_deadline(ws, registry, fault_proxy):
    repo = unique_repo("drip")
    _workspace(ws, fault_proxy, repo)
    t0 = time.monotonic()
    res = ws.run("run", "//...", "--push", "--push-timeout", "2s")
    took = time.monotonic() - t0
    assert res.code == 1, res
    assert took < 10, took
    assert fault_proxy.injected["drip"], "the push never reached the dripping answer"
    assert f"{fault_proxy.host}/{repo}" in res.err, res.err
    assert "no complete answer within the push deadline (2 s" in res.err, res.err
    assert "nothing was tagged" in res.err
    assert "Traceback" not in res.err
    assert _untagged(registry, repo)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_ends_a_push_to_a_dripping_registry(ws, registry, fault_proxy, sig):
    repo = unique_repo("drip-signal")
    _workspace(ws, fault_proxy, repo)
    proc = subprocess.Popen([sys.executable, "-m", "graphbuild", "-C", str(ws.root), "run",
                             "//...", "--push", "--output", "plain"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not fault_proxy.injected["drip"] and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert fault_proxy.injected["drip"], "the push never reached the dripping answer"
    time.sleep(0.5)  # well inside the dripping answer
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"one {sig.name} did not end the run within 10 s:\n{err[-2000:]}")
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err, err
    assert "interrupted" in err
    assert _untagged(registry, repo)


def test_a_request_past_its_own_deadline_is_a_timeout_retried_not_the_push_deadline(
        registry, fault_proxy):
    """A request's own deadline (``timeout`` plus 1 s per 128 KiB) passing well inside the push
    deadline is a timeout like an idle socket's: retried, and named as the request's (it was
    reported as the push deadline, and not retried)."""
    fault_proxy.rules.append(fx.FaultRule("HEAD", r"/blobs/", "drip"))
    retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
    with (RegistryClient(fault_proxy.host, timeout=0.5, retry=retry) as client,
          limits.scope(60, "the push deadline (60 s; run --push-timeout)"),
          pytest.raises(TransientError) as caught):
        client.blob_exists(unique_repo("drip-request"), "sha256:" + "0" * 64)
    message = str(caught.value)
    assert fault_proxy.injected["drip"] == 2, fault_proxy.injected
    assert fault_proxy.host in message and "check blob" in message, message
    assert "within the request's deadline (0.5 s" in message and "after 2 attempts" in message
    assert "push deadline" not in message


def test_push_timeout_must_be_a_positive_duration(ws):
    ws.write({"BUILD.yaml": "g:\n  rule: command\n  cmd: 'true'\n"})
    for value, words in (("soon", "invalid duration"), ("0s", "more than 0"),
                         ("10", "missing unit")):
        res = ws.run("run", "//:g", "--push", "--push-timeout", value)
        assert res.code == 2 and words in res.err and "hint" in res.err, (value, res)
