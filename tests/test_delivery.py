"""Delivery: reproducible images and records across runners, `verify`, and `load` into a local
engine (Podman from Debian; Docker where a daemon answers)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import need_tool

BUSYBOX = "/bin/busybox"


def _app(ws, extra: str = "") -> None:
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": f"""
            img:
              rule: image
              tags: ["localhost/graphbuild-test/app:{{arch}}"]
            {extra}
        """,
        "app/Dockerfile": 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY msg.txt /msg.txt\n'
                          'CMD ["/bin/busybox", "cat", "/msg.txt"]\n',
        "app/msg.txt": "hello from graphbuild\n",
    })
    shutil.copy(BUSYBOX, ws.path("app/busybox"))


def _git(cwd, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", *args], cwd=cwd,
                   check=True, capture_output=True, timeout=60)


def _built(root, umask: str, env: dict) -> dict:
    """Build in a subprocess under ``umask``; the store's digests of the image and records."""
    cmd = f"umask {umask}; exec {sys.executable} -m graphbuild -C {root} run //app:img"
    proc = subprocess.run(["sh", "-c", cmd], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    cmd = f"umask {umask}; exec {sys.executable} -m graphbuild -C {root} sbom //app:img"
    sbom = subprocess.run(["sh", "-c", cmd], check=False, capture_output=True, timeout=300,
                          env={**os.environ, **env})
    assert sbom.returncode == 0, sbom.stderr  # made on first use, then listed in the store
    index = json.loads((root / ".graphbuild/oci/index.json").read_text())
    return {m["annotations"]["dev.graphbuild.label"]: m["digest"] for m in index["manifests"]
            if "dev.graphbuild.label" in m.get("annotations", {})}


def test_two_runners_give_identical_images_sboms_and_provenance(make_ws, tmp_path):
    need_tool("busybox")
    origin = make_ws("origin")
    _app(origin)
    _git(origin.root, "init", "-q")
    _git(origin.root, "add", "-A")
    _git(origin.root, "commit", "-qm", "app")
    clones = []
    for name in ("runner-a/deep/checkout", "runner-b"):
        dest = tmp_path / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        _git(tmp_path, "clone", "-q", str(origin.root), str(dest))
        clones.append(dest)
    a = _built(clones[0], "022", {"HOME": str(tmp_path / "home-a"), "USER": "alice"})
    b = _built(clones[1], "002", {"HOME": str(tmp_path / "home-b"), "USER": "bob",
                                  "TZ": "Asia/Tokyo"})
    assert set(a) == {"//app:img[linux/amd64]", "//app:img[linux/amd64] sbom",
                      "//app:img[linux/amd64] provenance"}
    assert a == b
    prov = subprocess.run([sys.executable, "-m", "graphbuild", "-C", str(clones[0]), "inspect",
                           "//app:img", "--referrers"], check=False, capture_output=True, text=True, timeout=60)
    assert prov.returncode == 0


def test_verify_says_identical_then_different(ws):
    need_tool("busybox")
    _app(ws)
    assert ws.run("verify", "//app:img").code == 2  # not built yet
    assert ws.run("run", "//app:img").code == 0
    res = ws.run("verify", "//app:img")
    assert res.code == 0, res
    assert "identical //app:img[linux/amd64]" in res.out
    # an input that is different on every build: verify must catch it
    ws.write({
        "app/BUILD.yaml": """
            stamp:
              rule: command
              cmd: date +%s%N > $OUT/stamp
              outs: [stamp]
            img:
              rule: image
              contexts: {stamp: ":stamp"}
        """,
        "app/Dockerfile": "FROM scratch\nCOPY --from=stamp stamp /stamp\n",
    })
    assert ws.run("run", "//app:img").code == 0
    res = ws.run("verify", "//app:img")
    assert res.code == 1, res
    assert "DIFFERENT //app:img[linux/amd64]" in res.out and "rebuilt as" in res.out


def test_load_into_podman_and_run(ws, tmp_path):
    podman = need_tool("podman")
    need_tool("busybox")
    _app(ws)
    assert ws.run("run", "//app:img").code == 0
    # This sandbox refuses setrlimit for containers; Podman's default ulimits are turned off.
    conf = tmp_path / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    env = {"CONTAINERS_CONF": str(conf)}
    res = ws.run_subprocess("load", "//app:img", env=env)
    assert res.code == 0, res
    assert "localhost/graphbuild-test/app:amd64" in res.out + res.err
    image = "localhost/graphbuild-test/app:amd64"
    env = {**os.environ, **env}
    run = subprocess.run([podman, "run", "--rm", "--network", "none", image], check=False,
                         capture_output=True, text=True, timeout=120, env=env)
    subprocess.run([podman, "rmi", "-f", image], check=False, capture_output=True, timeout=120,
                   env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hello from graphbuild\n"


def test_load_without_an_engine_is_exit_2(ws, tmp_path):
    need_tool("busybox")
    _app(ws)
    assert ws.run("run", "//app:img").code == 0
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    res = ws.run_subprocess("load", "//app:img", env={"PATH": str(empty)})
    assert res.code == 2, res
    assert "no local container engine" in res.err and "hint:" in res.err
    assert "Traceback" not in res.err


def test_load_of_a_platform_the_image_lacks_is_exit_2(ws):
    need_tool("busybox")
    _app(ws)
    assert ws.run("run", "//app:img").code == 0
    res = ws.run("load", "//app:img", "--platform", "linux/s390x")
    assert res.code == 2 and "hint:" in res.err, res


@pytest.mark.parametrize("sde", ["0", "1700000000"])
def test_source_date_epoch_sets_the_sbom_time(ws, monkeypatch, sde):
    need_tool("busybox")
    _app(ws)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", sde)
    assert ws.run("run", "//app:img").code == 0
    doc = json.loads(ws.run("sbom", "//app:img").out)
    assert doc["creationInfo"]["created"] == ("1970-01-01T00:00:00Z" if sde == "0"
                                              else "2023-11-14T22:13:20Z")
