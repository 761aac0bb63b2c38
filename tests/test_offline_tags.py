"""Commands that build nothing never need the network: with `FROM host/repo:tag` and its
registry down, `query`, `graph` and `run --dry-run` answer at once from the digest the tag
resolved to last time, a fully cached `run` uses that digest with a note, and `run --pull`
insists on the registry (exit 1)."""

from __future__ import annotations

import time

import registry_fixtures as fx
from registry_fixtures import unique_repo

registry = fx.registry
fault_proxy = fx.fault_proxy


def _statuses(res) -> dict[str, str]:
    return {e["node"]: e["status"] for e in res.events() if e["event"] == "action_finished"}


def test_read_only_commands_and_a_cached_run_work_with_the_registry_down(ws, make_ws,
                                                                           fault_proxy):
    base = f"{fault_proxy.host}/{unique_repo('base')}:1"
    pusher = make_ws("pusher")
    pusher.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "b/BUILD.yaml": f"b:\n  rule: image\n  tags: ['{base}']\n",
        "b/Dockerfile": "FROM scratch\nCOPY b.txt /b.txt\n",
        "b/b.txt": "b\n",
    })
    assert pusher.run("run", "//...", "--push").code == 0
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": "app:\n  rule: image\n",
        "app/Dockerfile": f"FROM {base}\nCOPY a.txt /a.txt\n",
        "app/a.txt": "a\n",
    })
    res = ws.run("run", "//...")
    assert res.code == 0 and "resolved" in res.err, res
    for method in ("GET", "HEAD", "POST", "PUT"):  # the registry is down from here on
        fault_proxy.rules.append(fx.FaultRule(method, "/", "drop"))
    seen = sum(fault_proxy.seen.values()) + sum(fault_proxy.injected.values())
    for args in (("query", "//..."), ("graph", "//..."), ("run", "//...", "--dry-run")):
        t0 = time.monotonic()
        res = ws.run(*args)
        assert res.code == 0, (args, res)
        assert time.monotonic() - t0 < 3, args
    assert sum(fault_proxy.seen.values()) + sum(fault_proxy.injected.values()) == seen
    # new processes, as a user's next commands are (one process resolves a tag once)
    res = ws.run_subprocess("run", "//...", "--output", "json")
    assert res.code == 0, res
    assert set(_statuses(res).values()) == {"cached"}
    assert "cannot resolve" in res.err and "last time" in res.err and "--pull" in res.err
    res = ws.run_subprocess("run", "//...", "--pull")
    assert res.code == 1 and "cannot resolve" in res.err and "Traceback" not in res.err, res
