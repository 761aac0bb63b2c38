"""`backend: auto` between buildx and buildah, against the real tools: a remote-driver builder
on a live buildkitd (tests/buildkit_fixtures.py), one whose daemon is stopped or was never there,
Debian's buildah. Each run is the CLI in its own process, with a private DOCKER_CONFIG and
XDG_CACHE_HOME (where the builder probes are remembered). The ``docker-buildx`` that graphbuild
runs is a wrapper that logs its arguments and runs the real plugin, so a test can see that a
no-op build asks buildx nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import buildkit_fixtures as bk
import pytest
import registry_fixtures as fx
from conftest import Result, need_tool

from graphbuild.oci.store import Store
from graphbuild.oci.unpack import read_file

registry = fx.registry
buildkit = bk.buildkit

# linux/386 runs the amd64 busybox without an emulator (an x86-64 kernel runs it), so one
# image has two platforms and each tool builds both
APP = {
    "WORKSPACE.yaml": "backend: auto\n",
    "app/BUILD.yaml": "app: {rule: image, platforms: [linux/amd64, linux/386]}\n",
    "app/Dockerfile": """
        FROM scratch
        COPY busybox /bin/busybox
        RUN ["/bin/busybox", "sh", "-c", "echo built > /out"]
    """,
}
NODES = ("//app:app[linux/amd64]", "//app:app[linux/386]")
DROPPED = ("BUILDX_BUILDER", "BUILDX_CONFIG", "DOCKER_CONTEXT", "DOCKER_HOST")


class Env:
    """A private Docker config whose buildx plugin (and ``docker-buildx`` on PATH) is a logging
    wrapper around the real one; builders are created in it with the real buildx."""

    def __init__(self, root: Path, lab: bk.BuildKitLab) -> None:
        self.root = root
        self.config = root / "docker"
        self.log = root / "buildx-calls.log"
        bin_dir = root / "bin"
        for d in (self.config / "cli-plugins", bin_dir, root / "xdg"):
            d.mkdir(parents=True, exist_ok=True)
        real = need_tool("docker-buildx")
        wrapper = bin_dir / "docker-buildx"
        wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{self.log}"\nexec "{real}" "$@"\n')
        wrapper.chmod(0o755)
        (self.config / "cli-plugins" / "docker-buildx").symlink_to(wrapper)
        env = {k: v for k, v in os.environ.items() if k not in DROPPED}
        self.vars = {**env, "DOCKER_CONFIG": str(self.config), "XDG_CACHE_HOME": str(root / "xdg"),
                     "PATH": os.pathsep.join([str(bin_dir), lab.bin_dir, env.get("PATH", "")])}
        self.lab = lab

    def buildx(self, *args: str) -> None:
        subprocess.run([*self.lab.buildx(), *args], check=True, capture_output=True, text=True,
                       env=self.vars, timeout=60)

    def current_builder(self, name: str, addr: str) -> None:
        """A remote-driver builder on ``addr``, made the current one."""
        self.buildx("create", "--name", name, "--driver", "remote", addr)
        self.buildx("use", name)

    def calls(self) -> list[str]:
        """What buildx was asked (``inspect``, ``build …``), through the Docker CLI (which runs
        the plugin as ``docker-buildx buildx ARGS``) or not; not the CLI's plugin discovery."""
        if not self.log.exists():
            return []
        return [line.removeprefix("buildx ") for line in self.log.read_text().splitlines()
                if line and not line.startswith("docker-cli-plugin-metadata")]

    def run(self, ws_root: Path, *args: str, **override: str) -> Result:
        proc = subprocess.run([sys.executable, "-m", "graphbuild", "-C", str(ws_root), *args],
                              check=False, capture_output=True, text=True, timeout=300,
                              env={**self.vars, **override}, cwd=ws_root)
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def env(buildkit, tmp_path) -> Env:
    return Env(tmp_path / "env", buildkit)


@pytest.fixture
def app(ws):
    ws.write(APP)
    busybox = ws.path("app/busybox")
    shutil.copyfile(bk.busybox("amd64"), busybox)
    busybox.chmod(0o755)
    return ws


def built_by(ws, node: str) -> str:
    """Which tool made the image: buildah labels its images, BuildKit does not."""
    s = Store(ws.root / ".graphbuild" / "oci")
    manifest = s.read_json(s.lookup(node)["digest"])
    labels = s.read_json(manifest["config"]["digest"])["config"].get("Labels") or {}
    assert read_file(s, manifest["layers"], "out") == b"built\n"
    return "buildah" if "io.buildah.version" in labels else "buildx"


def statuses(events_file: Path) -> dict[str, str]:
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    return {e["node"]: e["status"] for e in events if e["event"] == "action_finished"}


def explained(events_file: Path) -> list[tuple[str, str]]:
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    return [(e["label"], e["text"]) for e in events if e["event"] == "explain"]


def test_auto_takes_buildx_when_its_builder_answers(buildkit, env, app, tmp_path):
    need_tool("buildah")
    env.current_builder("gb-auto", buildkit.daemon("main").addr)
    events = tmp_path / "events.jsonl"
    res = env.run(app.root, "run", "//app:app", "--explain", "--output", "plain",
                  "--events", str(events))
    assert res.code == 0, res
    said = "auto: buildx (builder gb-auto reachable)"
    assert res.err.count(f"explain //app:app: {said}\n") == 1, res  # once for two platforms
    assert res.err.index("explain //app:app: auto") < res.err.index("explain //app:app[")
    assert explained(events) == [("//app:app", said)]
    assert {built_by(app, n) for n in NODES} == {"buildx"}
    assert [c for c in env.calls() if c.startswith("inspect")] == ["inspect"]  # asked once

    # a no-op asks buildx nothing: its version and the builder's answer are remembered
    asked = len(env.calls())
    res = env.run(app.root, "run", "//app:app", "--explain", "--output", "plain",
                  "--events", str(events))
    assert res.code == 0, res
    assert set(statuses(events).values()) == {"cached"}
    assert explained(events) == [("//app:app", said)]
    assert "explain" not in res.err  # nothing runs, so --explain has nothing to say
    assert env.calls()[asked:] == []

    # one platform's builder does not exist: the whole image goes to buildah, and rebuilds
    app.write({"WORKSPACE.yaml": "backend: auto\nbuilders: {linux/386: gb-nowhere}\n"})
    res = env.run(app.root, "run", "//app:app", "--explain", "--output", "plain")
    assert res.code == 0, res
    assert ("explain //app:app: auto: buildah (buildx has no working builder: the buildx "
            "builder 'gb-nowhere' does not exist)\n") in res.err
    assert "explain //app:app[linux/amd64]: attribute changed: backend; tool changed: " \
        "buildx/" in res.err
    assert {built_by(app, n) for n in NODES} == {"buildah"}

    # a run of one platform decides as a run of all would: buildah still, nothing rebuilt
    app.write({"app/BUILD.yaml": "# analysed again\n" + APP["app/BUILD.yaml"]})
    res = env.run(app.root, "run", "//app:app", "--platform", "linux/amd64", "--explain",
                  "--output", "plain", "--events", str(events))
    assert res.code == 0, res
    assert statuses(events) == {NODES[0]: "cached"}, res.err
    said = "auto: buildah (buildx has no working builder: the buildx builder 'gb-nowhere' " \
        "does not exist)"
    assert explained(events) == [("//app:app", said)]
    assert built_by(app, NODES[0]) == "buildah"


def test_auto_passes_over_buildx_whose_daemon_stopped(buildkit, env, app, tmp_path):
    need_tool("buildah")
    daemon = buildkit.daemon("auto-stopped")
    env.current_builder("gb-stopped", daemon.addr)
    res = env.run(app.root, "run", "//app:app", "--explain", "--output", "plain")
    assert res.code == 0, res
    assert "explain //app:app: auto: buildx (builder gb-stopped reachable)\n" in res.err
    assert {built_by(app, n) for n in NODES} == {"buildx"}

    daemon.stop()  # buildkitd removes its socket: the remembered answer no longer applies
    events = tmp_path / "events.jsonl"
    res = env.run(app.root, "run", "//app:app", "--explain", "--output", "plain",
                  "--events", str(events))
    assert res.code == 0, res
    said = ("auto: buildah (buildx has no working builder: the current builder 'gb-stopped' is "
            f"not running (status inactive, endpoint {daemon.addr}))")
    assert res.err.count(f"explain //app:app: {said}\n") == 1, res
    assert explained(events) == [("//app:app", said)]
    assert set(statuses(events).values()) == {"built"}  # the backend is part of the key
    assert {built_by(app, n) for n in NODES} == {"buildah"}

    asked = len(env.calls())  # the answer is remembered for the no-op too
    res = env.run(app.root, "run", "//app:app", "--output", "plain")
    assert res.code == 0 and "] built" not in res.err, res
    assert env.calls()[asked:] == []


def test_a_build_that_finds_the_builder_down_makes_auto_ask_again(buildkit, env, app):
    """A daemon killed outright leaves its socket behind, so the remembered "working" answer
    still applies: the build fails on it at once (not after BuildKit's 20 s) and drops the
    answer, and the next run takes buildah."""
    need_tool("buildah")
    daemon = buildkit.daemon("auto-killed")
    env.current_builder("gb-killed", daemon.addr)
    assert env.run(app.root, "run", "//app:app").code == 0
    daemon.proc.kill()
    daemon.proc.wait()
    daemon.proc = None
    assert daemon.sock.exists()
    app.write({"app/Dockerfile": textwrap.dedent(APP["app/Dockerfile"]) + "LABEL again=1\n"})
    res = env.run(app.root, "run", "//app:app", "--explain", "--output", "plain")
    assert res.code == 1, res
    assert "explain //app:app: auto: buildx (builder gb-killed reachable)" in res.err
    assert "the current buildx builder 'gb-killed' is not running (status inactive" in res.err
    res = env.run(app.root, "run", "//app:app", "--explain", "--output", "plain")
    assert res.code == 0, res
    assert ("explain //app:app: auto: buildah (buildx has no working builder: the current "
            "builder 'gb-killed' is not running") in res.err
    assert {built_by(app, n) for n in NODES} == {"buildah"}


def test_auto_without_docker_daemon_or_builder_takes_buildah(env, app):
    """buildx installed, no builder configured and no Docker daemon: the default builder
    cannot be reached."""
    need_tool("buildah")
    res = env.run(app.root, "run", "//app:app", "--explain", "--output", "plain",
                  DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert res.code == 0, res
    assert ("explain //app:app: auto: buildah (buildx has no working builder: the Docker daemon "
            "is not reachable (failed to connect to the docker API at "
            "unix:///nonexistent/docker.sock") in res.err, res
    assert {built_by(app, n) for n in NODES} == {"buildah"}


def test_auto_with_neither_working_is_exit_2(buildkit, env, app, tmp_path):
    """A dead builder and no buildah on PATH: one message naming both reasons, and a hint."""
    dead = f"unix://{tmp_path / 'nothing.sock'}"
    env.current_builder("gb-dead", dead)
    path = os.pathsep.join(env.vars["PATH"].split(os.pathsep)[:2])  # the wrapper, buildkit's
    assert not any(Path(d, "buildah").exists() for d in path.split(os.pathsep))
    res = env.run(app.root, "run", "//app:app", "--explain", PATH=path)
    assert res.code == 2, res
    assert res.err == (
        "app/Dockerfile:3: //app:app: RUN needs a backend that runs containers (native cannot), "
        "and neither buildx nor buildah can build here: buildx has no working builder: the "
        f"current builder 'gb-dead' is not running (status inactive, endpoint {dead}); buildah "
        "is not installed (no `buildah` on PATH)\n"
        "  hint: install buildah (daemonless), or get a buildx builder working: start its "
        "BuildKit daemon (or Docker), or name a running one (`docker buildx use NAME`, "
        "WORKSPACE.yaml builders)\n"), res
