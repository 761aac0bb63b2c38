"""A registry that drips one byte at a time never holds a run: `run --push` stops at its push
deadline (`--push-timeout`) with one message naming the registry, and one Ctrl-C or SIGTERM
ends it at once, with no tag moved and no traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import WorkspaceFixture

DRIP_EVERY_S = 0.5  # far below the 60 s idle timeout: only an overall deadline ends it


class DripServer:
    """Answers every HTTP request one byte per DRIP_EVERY_S, forever."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                self.requests += 1
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000:
                    if self.stopped.wait(DRIP_EVERY_S):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.fixture
def drip():
    server = DripServer()
    yield server
    server.stop()


def _workspace(ws: WorkspaceFixture, host: str) -> None:
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": f"app:\n  rule: image\n  tags: ['{host}/app:1']\n",
        "app/Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n",
        "app/a.txt": "a\n",
    })


def test_push_to_a_dripping_registry_stops_at_the_push_deadline(ws, drip):
    _workspace(ws, drip.host)
    assert ws.run("run", "//...").code == 0  # built; only the push is left
    t0 = time.monotonic()
    res = ws.run("run", "//...", "--push", "--push-timeout", "2s")
    took = time.monotonic() - t0
    assert res.code == 1, res
    assert took < 15, took
    assert drip.host in res.err and "push deadline" in res.err, res.err
    assert "nothing was tagged" in res.err
    assert "Traceback" not in res.err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_ends_a_push_to_a_dripping_registry(ws, drip, sig):
    _workspace(ws, drip.host)
    assert ws.run("run", "//...").code == 0
    proc = subprocess.Popen([sys.executable, "-m", "graphbuild", "-C", str(ws.root), "run",
                             "//...", "--push", "--output", "plain"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while drip.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert drip.requests, "the push never reached the registry"
    time.sleep(0.5)  # well inside a dripping answer
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"one {sig.name} did not end the run within 10 s:\n{err[-2000:]}")
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err, err
    assert "interrupted" in err


def test_push_timeout_must_be_a_positive_duration(ws):
    ws.write({"BUILD.yaml": "g:\n  rule: command\n  cmd: 'true'\n"})
    for value, words in (("soon", "invalid duration"), ("0s", "more than 0"),
                         ("10", "missing unit")):
        res = ws.run("run", "//:g", "--push", "--push-timeout", value)
        assert res.code == 2 and words in res.err and "hint" in res.err, (value, res)
