"""Several real BuildKit daemons serving one platform as a pool (`builders: {linux/amd64:
[a, b]}`): each target goes to the builder its rendezvous order prefers, so the targets
spread over the pool and each one's BuildKit cache stays on one node; a builder that is down
is skipped for the next in the target's order."""

from __future__ import annotations

import buildkit_fixtures as bk
import registry_fixtures as fx

from graphbuild.backends.buildx import spread

registry = fx.registry
buildkit = bk.buildkit

POOL = ("gb-pool-a", "gb-pool-b")
TARGETS = [f"s{i}" for i in range(6)]


def _workspace(ws, edit: str = "") -> None:
    files = {"WORKSPACE.yaml": "default_platforms: [linux/amd64]\nbackend: buildx\n"
                               f"builders: {{linux/amd64: [{', '.join(POOL)}]}}\n"}
    for name in TARGETS:
        files[f"{name}/BUILD.yaml"] = "img:\n  rule: image\n"
        files[f"{name}/Dockerfile"] = "FROM scratch\nCOPY f /f\n"
        files[f"{name}/f"] = f"{name}{edit}\n"
    ws.write(files)


def test_a_pool_spreads_targets_and_skips_a_builder_that_is_down(buildkit, ws, monkeypatch):
    daemons = {name: buildkit.daemon(name.removeprefix("gb-")) for name in POOL}
    for name, daemon in daemons.items():
        buildkit.builder(name, daemon, ["linux/amd64"])
    buildkit.use(monkeypatch)
    before = {name: len(d.records()) for name, d in daemons.items()}
    _workspace(ws)
    res = ws.run("run", "//...")
    assert res.code == 0, res
    expected = {name: 0 for name in POOL}
    for target in TARGETS:
        expected[spread(list(POOL), f"//{target}:img")[0]] += 1
    built = {name: len(d.records()) - before[name] for name, d in daemons.items()}
    assert built == expected and all(built.values()), (built, expected)
    # one node down: every target builds on the other, none fails (a new process, as a
    # user's next run: a builder's status is asked once per process)
    daemons[POOL[1]].stop()
    _workspace(ws, edit=" again")
    res = ws.run_subprocess("run", "//...", "--output", "json", env=buildkit.env)
    assert res.code == 0, res
    assert {e["status"] for e in res.events() if e["event"] == "action_finished"} == {"built"}


def test_each_platform_goes_to_its_own_daemon(buildkit, ws, monkeypatch):
    """`builders:` in WORKSPACE.yaml for amd64, a platform target's `builder` for arm64: each
    daemon builds only its own platform."""
    amd, arm = buildkit.daemon("route-amd"), buildkit.daemon("route-arm")
    buildkit.builder("gb-route-amd", amd, ["linux/amd64"])
    buildkit.builder("gb-route-arm", arm, ["linux/arm64"])
    buildkit.use(monkeypatch)
    ws.write({
        "WORKSPACE.yaml": "backend: buildx\nbuilders: {linux/amd64: gb-route-amd}\n",
        "platforms/BUILD.yaml": "arm64:\n  rule: platform\n  os: linux\n  arch: arm64\n"
                                "  builder: gb-route-arm\n",
        "app/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64, //platforms:arm64]\n",
        "app/Dockerfile": "FROM scratch\nCOPY f /f\n",
        "app/f": "f\n",
    })
    res = ws.run("run", "//...")
    assert res.code == 0, res
    assert set(amd.built_platforms()) == {"linux/amd64"}, amd.built_platforms()
    assert set(arm.built_platforms()) == {"linux/arm64"}, arm.built_platforms()
