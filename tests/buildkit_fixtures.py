"""Real BuildKit for the tests: buildkitd daemons and buildx remote-driver builders.

- ``buildkit`` (session scope): a ``BuildKitLab``. ``lab.daemon("amd")`` starts (once per
  session) a rootful ``buildkitd`` with its own ``--root`` and socket, the OCI (runc) worker and
  the native snapshotter, and a ``buildkitd.toml`` that lets it talk plain HTTP to the loopback
  test registry. ``lab.builder("gb-amd", daemon, ["linux/amd64"])`` creates a remote-driver
  builder (``docker buildx create --driver remote unix://…``) in a private ``DOCKER_CONFIG``
  whose ``cli-plugins`` holds ``docker-buildx``; without a ``docker`` CLI the plugin binary is
  run standalone (``docker-buildx create …``), as the plugin itself does.
- ``lab.env``: the environment a graphbuild process needs to find them (``DOCKER_CONFIG`` and
  ``PATH``); ``lab.use(monkeypatch)`` sets it for in-process runs.
- ``busybox(arch)``: a static busybox for ``amd64``, ``arm64`` or ``arm`` (``.ci/test-tools``
  puts Debian's ``busybox-static`` for the foreign ones in ``tests/.tools``).

Everything started is stopped at the end of the session (and at exit, should the session die).
Missing tools go through ``need_tool``: they fail under ``CI=true`` and skip elsewhere. Test
modules bind the fixtures they use, e.g. ``registry = fx.registry`` and
``buildkit = bk.buildkit``: the lab asks for ``registry`` to write its ``buildkitd.toml``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, need_tool

TOOLS = REPO / "tests" / ".tools"
START_TIMEOUT_S = 30.0
BUSYBOX = {"amd64": "/usr/bin/busybox",
           "arm64": str(TOOLS / "arm64" / "bin" / "busybox"),
           "arm": str(TOOLS / "armhf" / "bin" / "busybox")}


class Daemon:
    """One ``buildkitd`` process."""

    def __init__(self, name: str, workdir: Path, registries: list[str],
                 platforms: list[str] | None = None) -> None:
        self.name = name
        self.workdir = workdir
        self.registries = registries
        self.platforms = platforms or []
        self.sock = workdir / "buildkitd.sock"
        self.log_path = workdir / "buildkitd.log"
        self.proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"unix://{self.sock}"

    def config(self) -> Path:
        """``buildkitd.toml``: plain HTTP for the loopback registries; no background GC."""
        lines = ["[worker.oci]", "  gc = false", ""]
        for host in self.registries:
            lines += [f'[registry."{host}"]', "  http = true", ""]
        path = self.workdir / "buildkitd.toml"
        path.write_text("\n".join(lines))
        return path

    def start(self) -> Daemon:
        binary = need_tool("buildkitd")
        need_tool("runc")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--config", str(self.config()), "--root", str(self.workdir / "root"),
                "--addr", self.addr, "--oci-worker=true", "--containerd-worker=false",
                "--oci-worker-snapshotter=native"]
        for plat in self.platforms:
            argv += ["--oci-worker-platform", plat]
        with self.log_path.open("ab") as log:
            # its own process group: a Ctrl-C test's signals must not reach it
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.buildctl("debug", "workers", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"buildkitd {self.name} did not start:\n{self.log_tail()}")

    def buildctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([need_tool("buildctl"), "--addr", self.addr, *args], check=check,
                              capture_output=True, text=True, timeout=60)

    def records(self) -> list[dict]:
        """``buildctl debug histories`` as records (FrontendAttrs, CreatedAt, CompletedAt…)."""
        out = self.buildctl("debug", "histories", "--format", "json").stdout
        return [json.loads(line)["record"] for line in out.splitlines() if line.startswith("{")]

    def running_builds(self) -> list[str]:
        """The refs of builds BuildKit has not finished."""
        return [r["Ref"] for r in self.records() if not r.get("CompletedAt")]

    def built_platforms(self) -> list[str]:
        """The platform of every build this daemon ran, in no particular order."""
        return [r.get("FrontendAttrs", {}).get("platform", "") for r in self.records()]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class BuildKitLab:
    """The session's daemons and the private Docker config their builders live in."""

    def __init__(self, workdir: Path, registries: list[str]) -> None:
        self.workdir = workdir
        self.registries = registries
        self.docker_config = workdir / "docker"
        self.daemons: dict[str, Daemon] = {}
        self.builders: dict[str, Daemon] = {}
        self._lock = threading.Lock()
        plugin = need_tool("docker-buildx")
        plugins = self.docker_config / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        (plugins / "docker-buildx").symlink_to(plugin)
        self.bin_dir = str(Path(plugin).parent)

    @property
    def env(self) -> dict[str, str]:
        path = os.environ.get("PATH", "")
        if self.bin_dir not in path.split(os.pathsep):
            path = self.bin_dir + os.pathsep + path
        return {"DOCKER_CONFIG": str(self.docker_config), "PATH": path}

    def use(self, monkeypatch: pytest.MonkeyPatch) -> BuildKitLab:
        """Point this process (in-process CLI runs) at the lab's builders."""
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("BUILDX_BUILDER", raising=False)
        return self

    def buildx(self) -> list[str]:
        """The buildx command: the plugin through ``docker`` when there is one, else standalone."""
        docker = shutil.which("docker")
        return [docker, "buildx"] if docker else [need_tool("docker-buildx")]

    def daemon(self, name: str, platforms: list[str] | None = None) -> Daemon:
        with self._lock:
            if name not in self.daemons:
                d = Daemon(name, self.workdir / name, self.registries, platforms)
                self.daemons[name] = d.start()
            return self.daemons[name]

    def builder(self, name: str, daemon: Daemon, platforms: list[str] | None = None) -> str:
        """A remote-driver builder on ``daemon``; ``platforms`` are what buildx routes to it."""
        with self._lock:
            if name in self.builders:
                return name
            argv = [*self.buildx(), "create", "--name", name, "--driver", "remote"]
            if platforms:
                argv += ["--platform", ",".join(platforms)]
            subprocess.run([*argv, daemon.addr], check=True, capture_output=True, text=True,
                           env={**os.environ, **self.env}, timeout=60)
            self.builders[name] = daemon
            return name

    def run_buildx(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.buildx(), *args], check=False, capture_output=True,
                              text=True, env={**os.environ, **self.env}, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"buildx {' '.join(args)}: exit {proc.returncode}\n"
                                 f"{proc.stdout}{proc.stderr[-3000:]}")
        return proc

    def stop(self) -> None:
        for d in self.daemons.values():
            d.stop()


def busybox(arch: str) -> Path:
    """A static busybox for ``arch`` (a GOARCH name); missing → need_tool's rule."""
    path = Path(BUSYBOX[arch])
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"a static {arch} busybox is required in CI (.ci/test-tools fetches it "
                        f"into {path})")
        pytest.skip(f"no static {arch} busybox at {path} (run .ci/test-tools)")
    return path


def need_emulation(arch: str) -> None:
    """binfmt_misc must hold a QEMU handler for a foreign ``arch``."""
    handler = {"arm64": "qemu-aarch64", "arm": "qemu-arm"}.get(arch)
    if handler and not Path("/proc/sys/fs/binfmt_misc", handler).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"binfmt handler {handler} is not registered (.ci/test-tools does it)")
        pytest.skip(f"binfmt handler {handler} is not registered (run .ci/test-tools)")


@pytest.fixture(scope="session")
def buildkit(tmp_path_factory: pytest.TempPathFactory, registry) -> Iterator[BuildKitLab]:
    need_tool("buildkitd")
    need_tool("buildctl")
    need_tool("runc")
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the BuildKit tests run buildkitd rootful: CI runs as root")
        pytest.skip("buildkitd (rootful) needs root")
    lab = BuildKitLab(tmp_path_factory.mktemp("buildkit"), [registry.host])
    yield lab
    lab.stop()
