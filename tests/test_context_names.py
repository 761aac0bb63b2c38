"""File names that are not UTF-8 in a build context or in a command's srcs (issue 12): they
build as they do in buildah, the name kept byte for byte in the layer, and a change to such a
file rebuilds while an unchanged one stays cached."""

from __future__ import annotations

import io
import os
import tarfile

from conftest import need_tool

from graphbuild.oci.store import Store

LATIN1 = b"caf\xe9.txt"  # "café" in Latin-1: not UTF-8


def layer_names(ws, node: str = "//p:img[linux/amd64]") -> dict[bytes, bytes]:
    """name (raw bytes) -> content of each file in the image's layers."""
    s = Store(ws.root / ".graphbuild" / "oci")
    manifest = s.read_json(s.lookup(node)["digest"])
    out: dict[bytes, bytes] = {}
    for layer in manifest["layers"]:
        data = io.BytesIO(s.read_bytes(layer["digest"]))
        with tarfile.open(fileobj=data, encoding="utf-8", errors="surrogateescape") as tar:
            for m in tar:
                raw = m.name.encode("utf-8", "surrogateescape").rstrip(b"/")
                out[raw] = tar.extractfile(m).read() if m.isfile() else b""
    return out


def write_bytes_name(directory, name: bytes, data: bytes) -> None:
    with open(os.path.join(os.fsencode(directory), name), "wb") as fh:
        fh.write(data)


def statuses(res) -> list[str]:
    assert res.code == 0, res
    return [e["status"] for e in res.events() if e["event"] == "action_finished"]


def test_a_latin1_name_in_the_context_is_copied_byte_for_byte(ws):
    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64]}\n",
        "p/Dockerfile": "FROM scratch\nCOPY . /app/\n",
    })
    write_bytes_name(ws.path("p"), LATIN1, b"one\n")
    write_bytes_name(ws.path("p"), b"dir\xff", b"")
    res = ws.run("run", "//p:img", "--output", "json")
    assert "Traceback" not in res.out + res.err, res
    assert statuses(res) == ["built"]
    names = layer_names(ws)
    assert names[b"app/" + LATIN1] == b"one\n" and b"app/dir\xff" in names
    assert statuses(ws.run("run", "//p:img", "--output", "json")) == ["cached"]
    write_bytes_name(ws.path("p"), LATIN1, b"two\n")
    res = ws.run("run", "//p:img", "--explain")
    assert res.code == 0 and "Traceback" not in res.out + res.err, res
    assert layer_names(ws)[b"app/" + LATIN1] == b"two\n"


def test_a_latin1_name_in_command_srcs(ws):
    ws.write({"c/BUILD.yaml": "lib: {rule: command, cmd: 'cat * > $OUT/all', srcs: ['*']}\n"})
    write_bytes_name(ws.path("c"), LATIN1, b"one\n")
    assert statuses(ws.run("run", "//c:lib", "--output", "json")) == ["built"]
    assert statuses(ws.run("run", "//c:lib", "--output", "json")) == ["cached"]
    write_bytes_name(ws.path("c"), LATIN1, b"two\n")
    assert statuses(ws.run("run", "//c:lib", "--output", "json")) == ["built"]


def test_buildah_keeps_the_same_bytes(ws):
    need_tool("buildah")
    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64], backend: buildah}\n",
        "p/Dockerfile": "FROM scratch\nCOPY . /app/\n",
    })
    write_bytes_name(ws.path("p"), LATIN1, b"one\n")
    res = ws.run_subprocess("run", "//p:img", timeout=600)
    assert res.code == 0, res
    theirs = layer_names(ws)
    ws.write({"p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64]}\n"})
    assert ws.run("run", "//p:img").code == 0
    ours = layer_names(ws)
    assert theirs[b"app/" + LATIN1] == ours[b"app/" + LATIN1] == b"one\n"
    assert set(theirs) == set(ours)
