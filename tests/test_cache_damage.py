"""Crash leftovers in the action cache and a full disk, through the CLI: a garbled value and
flipped database pages are set aside with a warning and rebuilt; a full disk is exit 1 with one
line, leaves the store consistent, and never makes a healthy cache look unreadable."""

from __future__ import annotations

import errno
import os
import re
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


def _one_no_space_message(res, under: Path) -> str:
    """Exit 1, no traceback, and one message (a failed node's line says it again after the
    summary): no space left on device while writing a path below ``under``."""
    assert res.code == 1, res
    assert "Traceback" not in res.err and "internal error" not in res.err, res.err
    said = set(re.findall(r"no space left on device while writing (\S+)", res.err))
    assert len(said) == 1, res.err
    path = said.pop()
    assert Path(path).is_relative_to(under), res.err
    return path


def _no_temp_files(cache: Path) -> None:
    """What a full disk interrupted is not left behind (it would keep the disk full)."""
    left = [p for d in (cache / "oci" / ".tmp", cache / "cas" / "tmp") if d.is_dir()
            for p in d.iterdir()]
    assert left == [], left


def test_a_full_disk_during_a_build_is_exit_1_with_one_message(ws, small_fs):
    ws.write({**iw.files(), "WORKSPACE.yaml": f"cache_dir: {small_fs}/cache\n",
              "img/big.bin": os.urandom(3 << 20)})
    res = ws.run("run", "//...")
    _one_no_space_message(res, small_fs / "cache")
    _no_temp_files(small_fs / "cache")
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
    check (sizes only); the build of a dependent hashes it, finds it corrupt and removes it. The
    run then builds again, rebuilding that image, instead of failing."""
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
    assert "cached" == _status(ws.run("run", "//img", "--output", "json"),
                               "//img:img[linux/amd64]")  # a no-op checks sizes
    ws.write({"app/b.txt": "b changed\n"})  # app rebuilds: it reads img's images
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0, res
    assert "found damaged" in res.err, res.err
    assert _status(res, "//img:img[linux/amd64]") == "built"
    assert "Traceback" not in res.err
    assert ws.run("cache", "verify").code == 0


def _status(res, node: str) -> str:
    """The node's last status in the run (a second pass reports it again)."""
    return [e["status"] for e in res.events()
            if e["event"] == "action_finished" and e["node"] == node][-1]


def test_export_to_a_full_disk_is_exit_1_and_writes_no_archive(ws, small_fs):
    ws.write({**iw.files(), "img/big.bin": os.urandom(600 << 10)})  # the cache has room
    iw.build(ws)
    out = small_fs / "img.tar"  # 1 MiB cannot hold two copies
    (small_fs / "filler").write_bytes(b"\0" * (500 << 10))
    res = ws.run("export", iw.IMG, "-o", str(out))
    assert _one_no_space_message(res, small_fs) == str(out)
    assert list(small_fs.iterdir()) == [small_fs / "filler"]  # no archive, no temp file
    (small_fs / "filler").unlink()
    assert ws.run("export", iw.IMG, "-o", str(out)).code == 0


# -- a full disk injected (no mount needed): the error the kernel gives, where it strikes ------

def _fill_layer(monkeypatch, code: int) -> None:
    """Writing an image's layer: half of it written, then the disk is full."""
    from graphbuild.oci import layers

    def fills_up(entries, f, **kw):
        f.write(b"\0" * 4096)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(layers, "write_layer", fills_up)


def _fill_cas(monkeypatch, code: int) -> None:
    """Storing a command's output file in the CAS: half of it copied, then the disk is full."""
    import shutil

    from graphbuild.engine import cas

    real = shutil.copyfile

    def fills_up(src, dst, **kw):
        if f"{os.sep}cas{os.sep}tmp{os.sep}" not in str(dst):
            return real(src, dst, **kw)
        Path(dst).write_bytes(b"\0" * 4096)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(cas.shutil, "copyfile", fills_up)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
@pytest.mark.parametrize("where", ["layer", "cas"])
def test_a_full_disk_while_storing_is_one_line_and_leaves_nothing(ws, monkeypatch, where, code):
    ws.write(iw.files())
    {"layer": _fill_layer, "cas": _fill_cas}[where](monkeypatch, code)
    res = ws.run("run", "//...")
    cache = ws.path(".graphbuild")
    said = _one_no_space_message(res, cache / {"layer": "oci", "cas": "cas"}[where])
    assert Path(said).parent.name in (".tmp", "tmp"), res.err  # the file being written
    _no_temp_files(cache)
    monkeypatch.undo()
    assert set(iw.build(ws).values()) <= {"built", "cached"}
    assert iw.verify_json(ws)["ok"]


def test_a_full_disk_while_restoring_an_output_is_not_taken_for_damage(ws, monkeypatch):
    from graphbuild.engine import cas

    _built(ws)
    out = ws.path(".graphbuild/out/gen/gen@host/gen.txt")
    out.write_text("tampered\n")  # restored from the CAS when the image reads it
    ws.write({"img/big.bin": b"other"})
    real = cas._copy_hashing

    def fills_up(src, dest):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))

    monkeypatch.setattr(cas, "_copy_hashing", fills_up)
    res = ws.run("run", "//...")
    _one_no_space_message(res, ws.path(".graphbuild"))
    assert "cached copy" not in res.err and "damaged" not in res.err, res.err
    monkeypatch.setattr(cas, "_copy_hashing", real)
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0 and "restored the output of //gen:gen" in iw.reasons(res)[iw.IMG], res
    assert iw.statuses(res)[iw.GEN] == "cached"  # its CAS copy was kept, not dropped
    assert iw.file_in_image(ws, "gen.txt") == b"generated\n"


@pytest.mark.parametrize("error", [
    sqlite3.OperationalError("database or disk is full"),
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)),
    "disk I/O error on a full file system",
], ids=["sqlite-full", "ENOSPC", "EDQUOT", "io-error-when-full"])
def test_a_full_disk_when_the_cache_opens_is_exit_1_and_keeps_the_cache(ws, monkeypatch,
                                                                        error):
    from graphbuild.engine import action_cache

    _built(ws)
    cache = ws.path(".graphbuild")
    (cache / "action-index.pickle").unlink()  # the next run opens the database
    if isinstance(error, str):  # what SQLite says opening its journal on a full disk
        error = sqlite3.OperationalError("disk I/O error")

        class Full:
            f_bavail, f_frsize = 0, 4096

        monkeypatch.setattr(action_cache.os, "statvfs", lambda path: Full)

    def full(self):
        raise error

    monkeypatch.setattr(action_cache.ActionCache, "_open", full)
    res = ws.run("run", "//...")
    assert _one_no_space_message(res, cache / "actions") == str(cache / "actions" / "cache.db")
    assert not (cache / "actions.bad").exists(), res.err
    assert "warning" not in res.err, res.err
    monkeypatch.undo()
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}  # the healthy cache kept
