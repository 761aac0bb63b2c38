"""Reproducible streaming layers: same entries, same bytes, anywhere; bounded memory."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from graphbuild.oci import layers
from graphbuild.oci.layers import (
    FileSlice,
    LayerEntry,
    LayerError,
    LayerResult,
    prepare_entries,
    source_date_epoch,
    write_layer,
    write_layer_to_dir,
    write_layers_parallel,
)

LONG_DIR = "d" * 60 + "/" + "e" * 60
LONG_NAME = LONG_DIR + "/" + "f" * 80 + ".txt"


def _populate(root: Path, *, mtime: int, umask: int, owner: int) -> list[LayerEntry]:
    """The same logical content, written with different host metadata."""
    old = os.umask(umask)
    try:
        (root / "src").mkdir()
        (root / "src" / "app.py").write_bytes(b"print('hello')\n" * 1000)
        (root / "src" / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
        big = root / "src" / "big.bin"
        big.write_bytes(os.urandom(0) + bytes(range(256)) * 5000)
    finally:
        os.umask(old)
    for path in (root / "src").iterdir():
        os.utime(path, (mtime, mtime))
        if os.geteuid() == 0:
            os.chown(path, owner, owner)
    src = root / "src"
    return [
        LayerEntry("app/main.py", "file", 0o644, source=src / "app.py"),
        LayerEntry("/app/bin/run.sh", "file", 0o4755, 1000, 1000, source=src / "run.sh"),
        LayerEntry("./app/data/big.bin", "file", 0o600, source=src / "big.bin"),
        LayerEntry("app/inline.txt", "file", 0o644, source=b"inline heredoc\n"),
        LayerEntry("app/link", "symlink", linkname="main.py"),
        LayerEntry("app/hard", "hardlink", linkname="app/main.py"),
        LayerEntry("app/empty", "dir", 0o700, 5, 6),
        LayerEntry("usr/share/ünïcødé/ファイル.txt", "file", 0o644, source=b"utf8\n"),
        LayerEntry(LONG_NAME, "file", 0o644, source=b"long\n"),
        LayerEntry("app/longlink", "symlink", linkname="/" + LONG_NAME),
    ]


def _layer_bytes(entries: list[LayerEntry], **kwargs: int) -> bytes:
    out = io.BytesIO()
    write_layer(entries, out, **kwargs)
    return out.getvalue()


def _members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        return tf.getmembers()


def test_byte_identical_from_different_dirs_times_owners_umask(tmp_path: Path) -> None:
    a, b = tmp_path / "one", tmp_path / "two" / "deeper"
    a.mkdir()
    b.mkdir(parents=True)
    blob_a = _layer_bytes(_populate(a, mtime=1_000_000, umask=0o022, owner=0))
    blob_b = _layer_bytes(_populate(b, mtime=1_700_000_000, umask=0o077, owner=4242))
    assert blob_a == blob_b


def test_digest_diff_id_and_size(tmp_path: Path) -> None:
    entries = _populate(tmp_path, mtime=5, umask=0o022, owner=0)
    with open(tmp_path / "layer.tar.gz", "wb") as f:
        result = write_layer(entries, f)
    blob = (tmp_path / "layer.tar.gz").read_bytes()
    assert result == LayerResult(
        digest="sha256:" + hashlib.sha256(blob).hexdigest(),
        diff_id="sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest(),
        size=len(blob),
    )


def test_gzip_header_is_fixed(tmp_path: Path) -> None:
    blob = _layer_bytes([LayerEntry("a", source=b"x")])
    assert blob[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME/FEXTRA/FCOMMENT flags
    assert blob[4:8] == b"\0\0\0\0"  # mtime 0
    assert blob[9] == 255  # OS unknown: no host OS leaks in
    assert _layer_bytes([LayerEntry("a", source=b"x")], compress_level=9)[8] == 2


def test_tarfile_reads_it_back(tmp_path: Path) -> None:
    entries = _populate(tmp_path, mtime=5, umask=0o022, owner=0)
    members = _members(_layer_bytes(entries, mtime=1234))
    names = [m.name for m in members]
    assert names == [
        "app",
        "app/bin",
        "app/bin/run.sh",
        "app/data",
        "app/data/big.bin",
        "app/empty",
        "app/hard",
        "app/inline.txt",
        "app/link",
        "app/longlink",
        "app/main.py",
        LONG_DIR.split("/")[0],
        LONG_DIR,
        LONG_NAME,
        "usr",
        "usr/share",
        "usr/share/ünïcødé",
        "usr/share/ünïcødé/ファイル.txt",
    ]
    by_name = {m.name: m for m in members}
    for m in members:
        assert m.mtime == 1234
        assert m.uname == "" and m.gname == ""
        assert m.devmajor == 0 and m.devminor == 0
    assert by_name["app"].isdir() and by_name["app"].mode == 0o755  # implicit parent
    assert (by_name["app"].uid, by_name["app"].gid) == (0, 0)
    assert by_name["app/bin/run.sh"].mode == 0o4755
    assert (by_name["app/bin/run.sh"].uid, by_name["app/bin/run.sh"].gid) == (1000, 1000)
    assert by_name["app/empty"].mode == 0o700 and by_name["app/empty"].uid == 5
    assert by_name["app/link"].issym() and by_name["app/link"].linkname == "main.py"
    assert by_name["app/link"].mode == 0o777
    assert by_name["app/longlink"].linkname == "/" + LONG_NAME
    # The hard-link group's first path in layer order carries the content.
    assert by_name["app/hard"].isreg() and by_name["app/hard"].size == 15000
    assert by_name["app/main.py"].islnk() and by_name["app/main.py"].linkname == "app/hard"


def test_contents_and_names_round_trip(tmp_path: Path) -> None:
    entries = _populate(tmp_path, mtime=5, umask=0o022, owner=0)
    blob = _layer_bytes(entries)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        assert tf.extractfile("app/data/big.bin").read() == (tmp_path / "src/big.bin").read_bytes()
        assert tf.extractfile("usr/share/ünïcødé/ファイル.txt").read() == b"utf8\n"
        assert tf.extractfile(LONG_NAME).read() == b"long\n"
        assert tf.extractfile("app/inline.txt").read() == b"inline heredoc\n"


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs tar")
def test_gnu_tar_extracts_it(tmp_path: Path) -> None:
    entries = _populate(tmp_path, mtime=5, umask=0o022, owner=0)
    layer = tmp_path / "layer.tar.gz"
    with open(layer, "wb") as f:
        write_layer(entries, f)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(layer), "-C", str(out)], check=True)
    assert (out / LONG_NAME).read_bytes() == b"long\n"
    assert (out / "usr/share/ünïcødé/ファイル.txt").read_bytes() == b"utf8\n"
    assert os.readlink(out / "app/link") == "main.py"
    assert os.stat(out / "app/hard").st_ino == os.stat(out / "app/main.py").st_ino


def test_large_ids_use_pax() -> None:
    members = _members(_layer_bytes([LayerEntry("a", uid=3_000_000, gid=70_000_000, source=b"")]))
    assert (members[0].uid, members[0].gid) == (3_000_000, 70_000_000)


def test_file_slice_source(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"0123456789")
    members_blob = _layer_bytes([LayerEntry("x", source=FileSlice(blob, 3, 4))])
    with tarfile.open(fileobj=io.BytesIO(members_blob), mode="r:gz") as tf:
        assert tf.extractfile("x").read() == b"3456"


def test_peak_memory_is_bounded_for_a_200mb_file(tmp_path: Path) -> None:
    big = tmp_path / "sparse.bin"
    with open(big, "wb") as f:
        f.truncate(200 * 1024 * 1024)
        f.seek(100 * 1024 * 1024)
        f.write(os.urandom(1024 * 1024))  # some incompressible data in the middle
    entries = [LayerEntry("big/sparse.bin", source=big)]
    tracemalloc.start()
    try:
        with open(tmp_path / "layer.tar.gz", "wb") as f:
            result = write_layer(entries, f, compress_level=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024
    assert result.size == (tmp_path / "layer.tar.gz").stat().st_size


def test_duplicates_last_wins_and_order_is_component_wise() -> None:
    prepared = prepare_entries(
        [
            LayerEntry("a-b", source=b"1"),
            LayerEntry("a/b", source=b"old"),
            LayerEntry("a/b", source=b"new"),
            LayerEntry("a", "dir", 0o750),
        ]
    )
    assert [e.path for e in prepared] == ["a", "a/b", "a-b"]  # a walk's order, parents first
    assert prepared[1].source == b"new"
    assert prepared[0].mode == 0o750


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([LayerEntry("a", source=b""), LayerEntry("a/b", source=b"")], "not a directory"),
        ([LayerEntry("h", "hardlink", linkname="missing")], "not in the layer"),
        ([LayerEntry("d", "dir"), LayerEntry("h", "hardlink", linkname="d")], "is a dir"),
    ],
)
def test_invalid_layers(entries: list[LayerEntry], message: str) -> None:
    with pytest.raises(LayerError, match=message):
        prepare_entries(entries)


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/", "."])
def test_invalid_paths(path: str) -> None:
    with pytest.raises(LayerError):
        LayerEntry(path, source=b"")


def test_entry_validation() -> None:
    with pytest.raises(LayerError, match="needs a source"):
        LayerEntry("a")
    with pytest.raises(LayerError, match="needs a linkname"):
        LayerEntry("a", "symlink")
    with pytest.raises(LayerError, match="unknown entry kind"):
        LayerEntry("a", "fifo")  # type: ignore[arg-type]


@pytest.mark.parametrize(("new_content", "message"), [(b"abcdef", "grew"), (b"a", "shrank")])
def test_file_that_changes_while_written_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_content: bytes, message: str
) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    real_header = layers._entry_header

    def header_then_change(*args: object) -> bytes:  # the size is in the header by now
        header = real_header(*args)
        src.write_bytes(new_content)
        return header

    monkeypatch.setattr(layers, "_entry_header", header_then_change)
    with pytest.raises(LayerError, match=message):
        write_layer([LayerEntry("f", source=src)], io.BytesIO())


def test_mtime_and_source_date_epoch() -> None:
    assert source_date_epoch({}) == 0
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"}) == 1_700_000_000
    with pytest.raises(LayerError):
        source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"})
    members = _members(_layer_bytes([LayerEntry("a", source=b"")], mtime=1_700_000_000))
    assert members[0].mtime == 1_700_000_000
    with pytest.raises(LayerError):
        _layer_bytes([LayerEntry("a", source=b"")], mtime=-1)


def test_write_to_dir_and_parallel(tmp_path: Path) -> None:
    jobs = [[LayerEntry(f"layer{i}/file", source=bytes([i]) * 100_000)] for i in range(5)]
    results = write_layers_parallel(jobs, tmp_path, max_workers=3)
    assert len(results) == 5
    for job, (result, path) in zip(jobs, results):
        assert path.parent == tmp_path and path.name.startswith(".layer-")
        assert path.read_bytes() == _layer_bytes(job)
        assert result.digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    single, path = write_layer_to_dir(jobs[0], tmp_path)
    assert single == results[0][0] and path.read_bytes() == results[0][1].read_bytes()


def test_parallel_failure_cleans_up(tmp_path: Path) -> None:
    good = [LayerEntry("ok", source=b"x")]
    bad = [LayerEntry("a", source=tmp_path / "does-not-exist")]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FileNotFoundError):
        write_layers_parallel([good, bad, good], out, max_workers=2)
    assert list(out.iterdir()) == []
