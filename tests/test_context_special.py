"""Special files in a build context (issue 12, "Hangs and exhaustion"): nothing but a regular
file is ever opened while hashing or copying, so a FIFO or a symlink to /dev/zero cannot block a
build. What `COPY` of a directory holding them gives matches buildah where that is safe: symlinks
(dangling, looping, absolute) are copied as symlinks and sockets are skipped; a FIFO or device
node is exit 2 at the COPY line under native (buildah copies them as such).

The runs that used to block go through a subprocess with a generous timeout, so a regression
fails instead of hanging the suite."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest
from conftest import need_tool

from graphbuild.oci.store import Store

GUARD = 120  # seconds: only so that a hang fails the test; nothing is timed


def context_ws(ws, dockerfile: str = "FROM scratch\nCOPY . /app/\n", backend: str = "native",
               **files: str) -> Path:
    ws.write({
        "p/BUILD.yaml": f"img: {{rule: image, platforms: [linux/amd64], context: ctx, "
                        f"backend: {backend}}}\n",
        "p/Dockerfile": dockerfile,
        "p/ctx/a.txt": "A\n",
        **{f"p/ctx/{k}": v for k, v in files.items()},
    })
    return ws.path("p/ctx")


def make_socket(path: Path) -> None:
    """A unix socket at ``path`` (bound from its directory: socket paths are short)."""
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path.name)
        sock.close()
    finally:
        os.chdir(here)


def members(ws, node: str = "//p:img[linux/amd64]") -> dict[str, tarfile.TarInfo]:
    s = Store(ws.root / ".graphbuild" / "oci")
    manifest = s.read_json(s.lookup(node)["digest"])
    out: dict[str, tarfile.TarInfo] = {}
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(s.read_bytes(layer["digest"]))) as tar:
            out.update({m.name.rstrip("/"): m for m in tar})
    return out


def refused_at_copy(res, line: int, *phrases: str) -> None:
    assert res.code == 2, res
    assert "Traceback" not in res.out + res.err, res
    first = next(x for x in res.err.splitlines() if x.strip())
    assert first.startswith(f"p/Dockerfile:{line}: //p:img: "), res
    for phrase in phrases:
        assert phrase in first, res
    assert "hint:" in res.err, res


def test_a_fifo_copied_by_native_is_exit_2_at_the_copy_line(ws):
    ctx = context_ws(ws)
    os.mkfifo(ctx / "pipe")
    res = ws.run_subprocess("run", "//p:img", timeout=GUARD)
    refused_at_copy(res, 2, "'pipe' is a FIFO")
    assert "dockerignore" in res.err and "buildah" in res.err


def test_a_fifo_that_no_copy_reaches_is_never_opened(ws):
    ctx = context_ws(ws, "FROM scratch\nCOPY a.txt /a.txt\nCOPY sub/ /sub/\n",
                     **{"sub/b.txt": "B\n", ".dockerignore": "sub/pipe\n"})
    os.mkfifo(ctx / "pipe")  # in the context, not copied
    os.mkfifo(ctx / "sub" / "pipe")  # below a copied directory, excluded by .dockerignore
    res = ws.run_subprocess("run", "//p:img", timeout=GUARD)
    assert res.code == 0, res
    assert {"a.txt", "sub", "sub/b.txt"} <= set(members(ws)) and "sub/pipe" not in members(ws)


def test_a_fifo_as_command_input_is_hashed_not_read(ws):
    ws.write({"c/BUILD.yaml": "lib: {rule: command, cmd: 'true', srcs: ['**']}\n"})
    os.mkfifo(ws.path("c/pipe"))
    res = ws.run_subprocess("run", "//c:lib", timeout=GUARD)
    assert res.code == 0, res


def test_a_symlink_to_dev_zero_is_copied_as_a_symlink(ws):
    ctx = context_ws(ws)
    os.symlink("/dev/zero", ctx / "zero")
    res = ws.run_subprocess("run", "//p:img", timeout=GUARD)
    assert res.code == 0, res
    zero = members(ws)["app/zero"]
    assert zero.issym() and zero.linkname == "/dev/zero"
    again = ws.run_subprocess("run", "//p:img", "--output", "json", timeout=GUARD)
    assert [e["status"] for e in again.events() if e["event"] == "action_finished"] == ["cached"]


def test_copying_a_symlink_to_dev_zero_by_name_is_exit_2(ws):
    ctx = context_ws(ws, "FROM scratch\nCOPY a.txt /a.txt\nCOPY zero /zero\n")
    os.symlink("/dev/zero", ctx / "zero")
    res = ws.run_subprocess("run", "//p:img", timeout=GUARD)
    refused_at_copy(res, 3, "outside the build context")


def test_sockets_loops_and_dangling_symlinks_are_copied_as_buildah_does(ws):
    ctx = context_ws(ws)
    make_socket(ctx / "sock")
    os.symlink("loop", ctx / "loop")
    os.symlink("nowhere", ctx / "dangling")
    res = ws.run("run", "//p:img")
    assert res.code == 0, res
    got = members(ws)
    assert "app/sock" not in got
    assert got["app/loop"].issym() and got["app/loop"].linkname == "loop"
    assert got["app/dangling"].issym() and got["app/dangling"].linkname == "nowhere"
    again = ws.run("run", "//p:img", "--output", "json")
    assert [e["status"] for e in again.events() if e["event"] == "action_finished"] == ["cached"]
    os.unlink(ctx / "dangling")
    os.symlink("elsewhere", ctx / "dangling")
    again = ws.run("run", "//p:img", "--output", "json")
    assert [e["status"] for e in again.events() if e["event"] == "action_finished"] == ["built"]


def test_a_device_node_copied_by_native_is_exit_2(ws):
    ctx = context_ws(ws)
    try:
        os.mknod(ctx / "null", 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    res = ws.run_subprocess("run", "//p:img", timeout=GUARD)
    refused_at_copy(res, 2, "'null' is a device node")


def test_buildah_copies_the_same_context(ws):
    """The reference: buildah, given the same context, copies the symlinks as symlinks, skips
    the socket and keeps the FIFO; native gives the same entries but refuses the FIFO."""
    need_tool("buildah")
    ctx = context_ws(ws, backend="buildah")
    make_socket(ctx / "sock")
    os.symlink("loop", ctx / "loop")
    os.symlink("nowhere", ctx / "dangling")
    os.symlink("/dev/zero", ctx / "zero")
    os.mkfifo(ctx / "pipe")
    res = ws.run_subprocess("run", "//p:img", timeout=600)
    assert res.code == 0, res
    theirs = members(ws)
    assert theirs["app/pipe"].isfifo() and "app/sock" not in theirs
    os.unlink(ctx / "pipe")
    ws.write({"p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64], context: ctx}\n"})
    res = ws.run("run", "//p:img")
    assert res.code == 0, res
    ours = members(ws)
    kinds = {n: (m.type, m.linkname) for n, m in ours.items()}
    assert kinds == {n: (m.type, m.linkname) for n, m in theirs.items() if n != "app/pipe"}


def test_a_fifo_dockerfile_is_exit_2(ws):
    context_ws(ws)
    ws.path("p/Dockerfile").unlink()
    os.mkfifo(ws.path("p/Dockerfile"))
    res = ws.run_subprocess("run", "//p:img", timeout=GUARD)
    assert res.code == 2, res
    assert res.err.startswith("p/Dockerfile: //p:img: not a regular file"), res
