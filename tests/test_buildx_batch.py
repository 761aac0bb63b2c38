"""An image's platforms built in one buildx invocation, against a real BuildKit
(tests/buildkit_fixtures.py): what BuildKit ran, that the images equal those built one platform
at a time, a failure on one platform only, and Ctrl-C during a joint build."""

from __future__ import annotations

import json

import buildkit_fixtures as bk
import pytest
import registry_fixtures as fx
from test_buildx_real import busyboxes, file_in, statuses, store
from test_buildx_real_failures import interrupt_when_sleeping

registry = fx.registry
buildkit = bk.buildkit

PLATS = ("linux/amd64", "linux/arm64")


@pytest.fixture
def lab(buildkit, monkeypatch, request):
    """A daemon of the test's own, so its build records are only this test's."""
    bk.need_emulation("arm64")
    name = f"batch-{request.node.name[5:20].strip('_')}"
    daemon = buildkit.daemon(name)
    buildkit.builder(f"gb-{name}", daemon)
    buildkit.use(monkeypatch)
    buildkit.run_buildx("use", f"gb-{name}")
    buildkit.main = daemon
    return buildkit


def workspace(ws, app_dockerfile: str) -> None:
    """A native base (per-platform content) and a buildx app FROM it, for both platforms."""
    busyboxes(ws, "app", ["amd64", "arm64"])
    ws.write({
        "WORKSPACE.yaml": f"default_platforms: [{', '.join(PLATS)}]\n",
        "base/BUILD.yaml": "base: {rule: image}\n",
        "base/Dockerfile": "FROM scratch\nARG TARGETARCH\nCOPY ${TARGETARCH}.txt /base.txt\n",
        "base/amd64.txt": "amd64 base\n", "base/arm64.txt": "arm64 base\n",
        "app/BUILD.yaml": "app: {rule: image, backend: buildx, contexts: {base: //base}}\n",
        "app/Dockerfile": app_dockerfile,
    })


APP = """FROM base
ARG TARGETARCH
COPY --chmod=755 busybox-${TARGETARCH} /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /arch"]
"""


def test_an_images_platforms_build_in_one_invocation(lab, ws, make_ws):
    workspace(ws, APP)
    res = ws.run("run", "//app:app")
    assert res.code == 0, res
    # the native base's platforms finish apart; the app's still start together
    assert sorted(lab.main.built_platforms()) == [",".join(PLATS)]
    for plat, machine in zip(PLATS, ("x86_64", "aarch64"), strict=True):
        assert file_in(ws, f"//app:app[{plat}]", "arch").strip() == machine
        assert file_in(ws, f"//app:app[{plat}]", "base.txt") == f"{plat[6:]} base\n"

    # one platform at a time (a filtered run has no sibling to batch with): the same images
    alone = make_ws("alone")
    workspace(alone, APP)
    for plat in PLATS:
        assert alone.run("run", "//app:app", "--platform", plat).code == 0
    for plat in PLATS:
        node = f"//app:app[{plat}]"
        assert store(alone).lookup(node)["digest"] == store(ws).lookup(node)["digest"]
    assert sorted(lab.main.built_platforms()) == sorted([",".join(PLATS), *PLATS])


def test_a_platform_failing_in_a_joint_build_is_the_one_reported(lab, ws):
    """The joint build fails; each platform is then built alone, so the failure is said for
    the platform and line that failed, and the other platform is built (--keep-going)."""
    workspace(ws, APP + 'RUN ["/bin/busybox", "sh", "-c", "test $(/bin/busybox uname -m) '
                        '!= aarch64"]\n')
    res = ws.run("run", "//app:app", "--keep-going", "--output", "json")
    assert res.code == 1, res
    got = statuses(res)
    assert got["//app:app[linux/amd64]"] == "built"
    assert got["//app:app[linux/arm64]"] == "failed"
    failed = next(e for e in res.events() if e.get("node") == "//app:app[linux/arm64]"
                  and e.get("event") == "action_finished")
    assert failed["reason"].startswith("app/Dockerfile:5: //app:app: "), failed["reason"]
    assert sorted(lab.main.built_platforms()) == sorted([",".join(PLATS), *PLATS])


def test_ctrl_c_stops_a_joint_build(lab, ws):
    workspace(ws, APP + 'RUN ["/bin/busybox", "sh", "-c", "echo sleeping; /bin/busybox '
                        'sleep 60"]\n')
    interrupt_when_sleeping(lab, ws, "//app:app")
    assert lab.main.built_platforms() == [",".join(PLATS)]


def test_a_builder_that_is_down_fails_every_platform_once(buildkit, ws, tmp_path):
    """The joint build finds its builder down: every platform fails with that message, and
    none is tried again alone."""
    from test_auto_backend import Env

    env = Env(tmp_path / "env", buildkit)
    dead = f"unix://{tmp_path / 'nothing.sock'}"
    env.current_builder("gb-down", dead)
    ws.write({"app/BUILD.yaml": "app: {rule: image, backend: buildx, "
                                f"platforms: [{', '.join(PLATS)}]}}\n",
              "app/Dockerfile": "FROM scratch\nCOPY f /f\n", "app/f": "f\n"})
    events = tmp_path / "events.jsonl"
    res = env.run(ws.root, "run", "//app:app", "--keep-going", "--events", str(events))
    assert res.code == 1, res
    finished = [e for e in map(json.loads, events.read_text().splitlines())
                if e["event"] == "action_finished" and e["platform"]]
    assert len(finished) == 2
    for e in finished:
        assert e["status"] == "failed"
        assert f"the current buildx builder 'gb-down' is not running (status inactive, " \
               f"endpoint {dead})" in e["reason"], e["reason"]
    assert [c for c in env.calls() if c.startswith("inspect")] == ["inspect"]
    assert not [c for c in env.calls() if c.startswith("build")]
