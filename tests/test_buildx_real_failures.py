"""How buildx builds fail, against a real BuildKit: a failing RUN, Ctrl-C, a builder that is
down (tests/buildkit_fixtures.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import buildkit_fixtures as bk
import pytest
import registry_fixtures as fx

registry = fx.registry
buildkit = bk.buildkit


@pytest.fixture
def lab(buildkit, monkeypatch):
    daemon = buildkit.daemon("main")
    buildkit.builder("gb-main", daemon)
    buildkit.use(monkeypatch)
    buildkit.main = daemon
    return buildkit


def app(ws, dockerfile: str, builder: str = "gb-main") -> None:
    ws.write({"WORKSPACE.yaml": f"builders: {{linux/amd64: {builder}}}\n",
              "app/BUILD.yaml": "app: {rule: image, backend: buildx, platforms: [linux/amd64]}\n",
              "app/Dockerfile": dockerfile})
    (ws.path("app") / "busybox").write_bytes(bk.busybox("amd64").read_bytes())


def test_failing_run_names_the_dockerfile_line_and_log_tail(lab, ws):
    app(ws, "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "sh", "-c", "echo about to fail; exit 3"]\n')
    res = ws.run("run", "//app:app")
    assert res.code == 1, res
    assert "app/Dockerfile:3: //app:app: failed to build: failed to solve: process" in res.err
    assert "exit code: 3" in res.err
    assert "about to fail" in res.err  # the log tail


def test_ctrl_c_stops_buildx_and_leaves_buildkit_idle(lab, ws):
    app(ws, "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "sh", "-c", "echo sleeping; /bin/busybox sleep 60"]\n')
    interrupt_when_sleeping(lab, ws, "//app:app")


def interrupt_when_sleeping(lab, ws, pattern: str) -> None:
    """Run ``pattern``, Ctrl-C it once a RUN has printed "sleeping", and check that graphbuild
    exits 130, leaves no buildx process and BuildKit no running build."""
    proc = subprocess.Popen([sys.executable, "-m", "graphbuild", "-C", str(ws.root), "run",
                             pattern], env={**os.environ, **lab.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        for _ in range(1200):  # until BuildKit runs the RUN step
            if lab.main.running_builds() and _log_says(ws, "sleeping"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the RUN step never started")
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C goes to the foreground group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert not _buildx_children(ws)
    for _ in range(200):  # BuildKit cancels the solve once its client is gone
        if not lab.main.running_builds():
            break
        time.sleep(0.05)
    assert lab.main.running_builds() == []


def _log_says(ws, text: str) -> bool:
    return any(text in p.read_text(errors="replace")
               for p in ws.path(".graphbuild").rglob("buildx.log"))


def _buildx_children(ws) -> list[str]:
    """buildx processes still building this workspace's context."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                         check=False).stdout
    return [line for line in out.splitlines() if "buildx" in line and str(ws.root) in line]


def test_a_builder_that_is_down_is_named_with_a_hint(lab, ws, tmp_path):
    dead = tmp_path / "nothing.sock"
    subprocess.run([*lab.buildx(), "create", "--name", "gb-down", "--driver", "remote",
                    f"unix://{dead}"], env={**os.environ, **lab.env}, check=True,
                   capture_output=True)
    app(ws, "FROM scratch\nCOPY busybox /bin/busybox\n", builder="gb-down")
    res = ws.run("run", "//app:app")
    assert res.code == 1, res
    assert "the buildx builder 'gb-down' is not running (status inactive, endpoint " \
        f"unix://{dead})" in res.err
    assert "hint: start the BuildKit daemon" in res.err
