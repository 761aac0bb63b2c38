"""What every benchmark script shares: the machine line, how graphbuild is invoked, and timing
a child process (wall time, peak RSS, CPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def machine_line() -> str:
    """nproc, CPU model, Python and load average: figures from a busy machine are not
    comparable, so every script prints this at its start and end."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}, "
            f"load average {load}")


def graphbuild_cmd() -> list[str]:
    exe = shutil.which("graphbuild")
    return [exe] if exe else [sys.executable, "-m", "graphbuild"]


def graphbuild_where() -> str:
    """Which graphbuild package the runs import (PYTHONPATH can point at a snapshot), with its
    bytecode compiled as `pip install` leaves it (see ``compile_bytecode``)."""
    code = "import graphbuild, graphbuild_rules as r; print(graphbuild.__file__, r.__file__)"
    probe = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False)
    files = probe.stdout.split()
    compiled = compile_bytecode([str(Path(f).parent) for f in files])
    return (f"graphbuild: {' '.join(graphbuild_cmd())} (package {files[0] if files else '?'}; "
            f"{compiled})")


def compile_bytecode(dirs: list[str]) -> str:
    """Compile graphbuild's modules to bytecode. `pip install` does this for every package it
    installs, but an editable install under PYTHONDONTWRITEBYTECODE=1 (set on some machines)
    would otherwise compile every module from source on every run, ~60 ms that no installed
    copy pays. Python itself (ninja's peer here) is measured with its own compiled stdlib."""
    import compileall

    ok = all(compileall.compile_dir(d, quiet=2) for d in dirs)
    return "bytecode compiled" if ok and dirs else "bytecode NOT compiled"


CPU = {"child": 0.0, "last": 0.0}  # CPU seconds (user + sys): all children, and the last one


def run(argv: list[str] | str, cwd: Path | None = None, shell: bool = False
        ) -> tuple[float, int, str]:
    """(wall seconds, the child's peak RSS in KiB from os.wait4, its stdout); exits on failure.
    The child's CPU time goes to ``CPU["last"]`` and is added to ``CPU["child"]``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, shell=shell)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        CPU["last"] = usage.ru_utime + usage.ru_stime
        CPU["child"] += CPU["last"]
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if code != 0:
        shown = argv if isinstance(argv, str) else " ".join(argv)
        sys.exit(f"{shown} failed (exit {code}):\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return elapsed, usage.ru_maxrss, stdout


def events(stdout: str) -> list[dict]:
    """The JSON Lines events of `graphbuild run --output json`."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


class BuildKitd:
    """A buildkitd of a benchmark's own (its root and socket under ``workdir``, the OCI worker
    and the native snapshotter, ``config`` as its buildkitd.toml) and a remote-driver buildx
    builder ``builder`` on it in a private DOCKER_CONFIG. ``stop`` is safe to call at any
    point, and runs at exit too."""

    def __init__(self, workdir: Path, builder: str, config: str) -> None:
        self.workdir, self.builder, self.config = workdir, builder, config
        self.sock = workdir / "buildkitd.sock"
        self.log = workdir / "buildkitd.log"
        self.docker_config = workdir / "docker"
        self.proc: subprocess.Popen | None = None

    def start(self) -> BuildKitd:
        import atexit

        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "buildkitd.toml").write_text(self.config)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [shutil.which("buildkitd"), "--config", str(self.workdir / "buildkitd.toml"),
                 "--root", str(self.workdir / "root"), "--addr", f"unix://{self.sock}",
                 "--oci-worker=true", "--containerd-worker=false",
                 "--oci-worker-snapshotter=native"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # Ctrl-C reaches it only through stop()
        atexit.register(self.stop)
        deadline = time.monotonic() + 30
        while self.buildctl("debug", "workers", check=False).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                sys.exit(f"buildkitd did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        plugins = self.docker_config / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        (plugins / "docker-buildx").symlink_to(shutil.which("docker-buildx"))
        made = subprocess.run([shutil.which("docker-buildx"), "create", "--name", self.builder,
                               "--driver", "remote", f"unix://{self.sock}"], env=self.env(),
                              capture_output=True, text=True, check=False)
        if made.returncode != 0:
            sys.exit(f"buildx create failed:\n{made.stderr[-2000:]}")
        return self

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for buildx (and graphbuild) to reach this builder only."""
        env = {k: v for k, v in os.environ.items() if k not in ("BUILDX_BUILDER", "DOCKER_HOST",
                                                               "DOCKER_CONTEXT")}
        return {**env, "DOCKER_CONFIG": str(self.docker_config), **extra}

    def buildctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([shutil.which("buildctl"), "--addr", f"unix://{self.sock}", *args],
                              capture_output=True, text=True, check=check, timeout=300)

    def cpu(self) -> float:
        """buildkitd's CPU seconds, with its children's that it waited for (runc, QEMU)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        import signal

        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: what it started goes too
            proc.wait()
