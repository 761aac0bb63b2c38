"""Running an external tool (buildx, buildah) as the backends do: its exit status, its output in
the log, and Ctrl-C stopping it, with many files open (descriptor numbers past 1023, where
select() gives up)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from graphbuild.backends import external
from graphbuild.errors import ActionFailed


@pytest.fixture
def many_files():
    """Descriptors up to past 1100 held open, as in a busy run."""
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    yield
    for fd in fds:
        os.close(fd)


def test_exit_status_and_log_with_many_files_open(tmp_path, many_files):
    log = tmp_path / "tool.log"
    code = external.run_tool(["sh", "-c", "echo working; exit 3"], cwd=tmp_path, log_path=log,
                             cancelled=threading.Event())
    assert code == 3
    assert log.read_text().splitlines()[-1] == "working"


def test_cancel_stops_the_tool_and_its_children(tmp_path, many_files):
    cancelled = threading.Event()
    pid_file = tmp_path / "child.pid"
    threading.Timer(0.3, cancelled.set).start()
    with pytest.raises(ActionFailed, match="interrupted"):
        external.run_tool(["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"], cwd=tmp_path,
                          log_path=tmp_path / "tool.log", cancelled=cancelled)
    child = int(pid_file.read_text())
    for _ in range(100):  # the whole process group was stopped
        if not os.path.exists(f"/proc/{child}") or "Z" in _state(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the tool's child still runs")


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
