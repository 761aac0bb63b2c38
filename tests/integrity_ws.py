"""A small workspace for the data-integrity tests: a command whose output an image copies, an
image copying a source file, and an optional gate that holds the command until the test opens it
(so that a `cache gc` or `cache clean` can be started while a build is live)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from graphbuild.oci.store import Store

GEN = "//gen:gen"
IMG = "//img:img[linux/amd64]"
NODES = {GEN, IMG}


def files(gate: Path | None = None) -> dict[str, str | bytes]:
    wait = ""
    if gate is not None:
        wait = (f" && touch {gate}/started && while [ ! -e {gate}/go ]; do sleep 0.02; done"
                f" && head -c 100000 /dev/urandom > $OUT/late.bin")
    return {
        "gen/BUILD.yaml": f"""
            gen:
              rule: command
              cmd: mkdir -p $OUT && cat in.txt > $OUT/gen.txt{wait}
              srcs: [in.txt]
              outs: [gen.txt]
        """,
        "gen/in.txt": "generated\n",
        "img/BUILD.yaml": """
            img:
              rule: image
              platforms: [linux/amd64]
              contexts: {gen: "//gen"}
              tags: ["img:1"]
        """,
        "img/Dockerfile": "FROM scratch\nCOPY --from=gen gen.txt /gen.txt\nCOPY big.bin /big.bin\n",
        "img/big.bin": bytes(range(256)) * 400,
    }


def statuses(res) -> dict[str, str]:
    return {e["node"]: e["status"] for e in res.events() if e["event"] == "action_finished"}


def reasons(res) -> dict[str, str]:
    return {e["node"]: e["reason"] for e in res.events() if e["event"] == "action_finished"}


def build(ws, *extra: str) -> dict[str, str]:
    res = ws.run("run", "//...", "--output", "json", *extra)
    assert res.code == 0 and "Traceback" not in res.err, res
    return statuses(res)


def store(ws) -> Store:
    return Store(ws.path(".graphbuild/oci"))


def image_blobs(ws, node: str = IMG) -> dict[str, str]:
    """manifest, config and each layer's digest of the node's image."""
    s = store(ws)
    desc = s.lookup(node)
    assert desc is not None, f"{node} is not in the store"
    manifest = s.read_json(desc["digest"])
    out = {"manifest": desc["digest"], "config": manifest["config"]["digest"]}
    out.update({f"layer{i}": layer["digest"] for i, layer in enumerate(manifest["layers"])})
    return out


def blob_file(ws, digest: str) -> Path:
    return ws.path(".graphbuild/oci/blobs/sha256") / digest.split(":", 1)[1]


def damage(path: Path, how: str) -> None:
    """Flip a byte, truncate, or delete a file (blobs are read-only: make it writable first)."""
    if how == "delete":
        path.unlink()
        return
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    elif how == "truncate":
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


def cli(ws, *args: str, **kw) -> subprocess.Popen:
    """The CLI as a separate process (for races with a live build)."""
    return subprocess.Popen([sys.executable, "-m", "graphbuild", "-C", str(ws.root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(path: Path, proc: subprocess.Popen | None = None) -> None:
    """Until ``path`` exists (no time limit of its own: pytest's timeout or the build's end)."""
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} before {path} appeared\n{out}\n{err}")
        time.sleep(0.02)


def read_line_with(proc: subprocess.Popen, text: str) -> str:
    """Read the process's stderr until a line holds ``text``; fail if it ends first."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"never said {text!r}; stderr:\n{''.join(seen)}")


def verify_json(ws) -> dict:
    res = ws.run("cache", "verify", "--output", "json")
    assert "Traceback" not in res.err, res
    return json.loads(res.out)


def file_in_image(ws, path: str, node: str = IMG) -> bytes | None:
    from graphbuild.oci.unpack import read_file

    s = store(ws)
    return read_file(s, s.read_json(s.lookup(node)["digest"])["layers"], path)


def cas_blob_of(ws, name: str, node_dir: str = "gen/gen@host") -> Path:
    """The CAS file blob holding an output file of the command node."""
    from graphbuild.engine.hashing import digest_file

    digest = digest_file(ws.path(f".graphbuild/out/{node_dir}/{name}"))
    hexd = digest.split(":", 1)[1]
    return ws.path(".graphbuild/cas/blobs") / hexd[:2] / hexd
