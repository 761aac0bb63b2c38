"""Crash leftovers in the action cache and a full disk, through the CLI: a garbled value and
flipped database pages are set aside with a warning and rebuilt; a full disk is exit 1 with one
line, leaves the store consistent, and never makes a healthy cache look unreadable."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import integrity_ws as iw
import pytest


def _built(ws) -> None:
    ws.write(iw.files())
    assert iw.build(ws) == {iw.GEN: "built", iw.IMG: "built"}


def test_a_garbled_action_cache_value_is_dropped_and_rebuilt(ws):
    _built(ws)
    cache = ws.path(".graphbuild")
    (cache / "action-index.pickle").unlink()  # else the hot index answers without the db
    with sqlite3.connect(cache / "actions" / "cache.db") as db:
        n = db.execute("UPDATE Cache SET value = X'8004deadbeef' WHERE key LIKE 'k:%'").rowcount
    assert n == 2
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0 and "Traceback" not in res.err, res
    assert "unreadable" in res.err and "warning" in res.err
    assert iw.statuses(res) == {iw.GEN: "built", iw.IMG: "built"}
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}


def test_flipped_database_pages_set_the_cache_aside_and_rebuild(ws):
    _built(ws)
    cache = ws.path(".graphbuild")
    (cache / "action-index.pickle").unlink()
    db = cache / "actions" / "cache.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    assert len(data) > 8192
    for i in range(4096, len(data), 97):  # every page after the first, many bytes
        data[i] ^= 0xFF
    db.write_bytes(bytes(data))
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0 and "Traceback" not in res.err, res
    assert "unreadable" in res.err and "actions.bad" in res.err, res.err
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}


# -- a full disk: the cache directory on a small tmpfs -----------------------------------------

@pytest.fixture
def small_fs(tmp_path) -> Path:
    """A 1 MiB tmpfs (root only; elsewhere the test skips: a mount is not a tool)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _grow(mnt: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)


def test_a_full_disk_during_a_build_is_exit_1_with_one_message(ws, small_fs):
    ws.write({**iw.files(), "WORKSPACE.yaml": f"cache_dir: {small_fs}/cache\n",
              "img/big.bin": os.urandom(3 << 20)})
    res = ws.run("run", "//...")
    assert res.code == 1, res
    assert "no space left on device while writing" in res.err, res.err
    assert "Traceback" not in res.err and "internal error" not in res.err, res.err
    _grow(small_fs, "64m")
    verify = ws.run("cache", "verify")
    assert verify.code == 0, verify  # nothing half-written is taken for good
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0 and iw.statuses(res)[iw.IMG] == "built", res


def test_a_full_disk_when_the_cache_opens_does_not_set_it_aside(ws, small_fs):
    ws.write({**iw.files(), "WORKSPACE.yaml": f"cache_dir: {small_fs}/cache\n"})
    assert iw.build(ws) == {iw.GEN: "built", iw.IMG: "built"}
    (small_fs / "cache" / "action-index.pickle").unlink()  # the next run opens the database
    filler = small_fs / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    res = ws.run("run", "//...")
    assert "Traceback" not in res.err, res
    assert res.code == 0 or "no space left on device" in res.err, res
    assert not (small_fs / "cache" / "actions.bad").exists(), res.err
    filler.unlink()
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}


def test_damage_found_by_a_dependent_is_rebuilt_in_the_same_run(ws):
    """A platform's manifest flipped in place keeps its size, so its own node passes the no-op
    check; the index over it hashes it, finds it corrupt and removes it. The run then builds
    again, rebuilding that image, instead of failing."""
    import json

    ws.write({  # app's builds hash img's per-platform images (remembered); img's index not
        "WORKSPACE.yaml": "default_platforms: [linux/amd64, linux/arm64]\n",
        "img/BUILD.yaml": "img:\n  rule: image\n",
        "img/Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n",
        "img/a.txt": "a\n",
        "app/BUILD.yaml": "app:\n  rule: image\n  contexts: {img: '//img'}\n",
        "app/Dockerfile": "FROM img\nCOPY b.txt /b.txt\n",
        "app/b.txt": "b\n",
    })
    assert ws.run("run", "//...").code == 0
    oci = ws.path(".graphbuild/oci")
    index = json.loads((oci / "index.json").read_text())
    amd = next(e["digest"] for e in index["manifests"]
               if e["annotations"].get("dev.graphbuild.label") == "//img:img[linux/amd64]")
    blob = oci / "blobs" / "sha256" / amd[7:]
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-2] ^= 0x01  # inside the JSON, same length
    blob.write_bytes(bytes(data))
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0, res
    assert "found damaged" in res.err, res.err
    assert "Traceback" not in res.err
    assert ws.run("cache", "verify").code == 0
