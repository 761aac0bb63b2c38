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
