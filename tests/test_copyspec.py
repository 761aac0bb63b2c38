"""COPY/ADD source semantics (BuildKit's rules plus graphbuild's context checks)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from pathlib import Path

import pytest

from graphbuild.dockerfile.dockerignore import DockerIgnore
from graphbuild.errors import UserError
from graphbuild.oci.copyspec import (
    BaseLookup,
    CopyError,
    copy_from_tree,
    copy_inputs,
    parse_chmod,
    resolve_copy,
    resolve_dest,
)
from graphbuild.oci.layers import LayerEntry, write_layer

IGNORE = ["secret.env", "*.log", "build", "!build/keep", "node_modules"]


def _write(root: Path, files: dict[str, bytes | str], umask: int = 0o022) -> None:
    old = os.umask(umask)
    try:
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str) and content.startswith("->"):
                path.symlink_to(content[2:])
            else:
                path.write_bytes(content if isinstance(content, bytes) else content.encode())
    finally:
        os.umask(old)


def _tar(members: list[tuple[str, str, bytes | str]]) -> bytes:
    """A tar of (name, kind, content-or-linkname) with fixed owners 7:8 and mode 0640/0750."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.uid, info.gid = 7, 8
            if kind == "file":
                assert isinstance(data, bytes)
                info.size, info.mode = len(data), 0o640
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[
                kind
            ]
            info.mode = 0o750
            if kind in ("sym", "hard"):
                assert isinstance(data, str)
                info.linkname = data
            tf.addfile(info)
    return out.getvalue()


ARCHIVE = _tar(
    [
        ("./", "dir", b""),
        ("./etc/", "dir", b""),
        ("./etc/motd", "file", b"hello from tar\n"),
        ("./usr/lib/deep/lib.so", "file", b"\x7fELF"),
        ("./etc/motd.link", "sym", "motd"),
        ("./etc/motd.hard", "hard", "./etc/motd"),
        ("/abs/ok.txt", "file", b"absolute names land under dest\n"),
    ]
)


@pytest.fixture()
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (tmp_path / "outside.txt").write_text("outside\n")
    _write(
        root,
        {
            "a.txt": "A\n",
            "b.txt": "B\n",
            "secret.env": "TOKEN=1\n",
            "debug.log": "log\n",
            "src/main.py": "print(1)\n",
            "src/sub/x.py": "x\n",
            "src/.hidden": "h\n",
            "src/inner-link": "->../a.txt",
            "src/escape-link": "->../../outside.txt",
            "build/out.o": "obj\n",
            "build/keep/k.txt": "kept\n",
            "node_modules/m/index.js": "m\n",
            "link-to-a.txt": "->a.txt",
            "link-out": "->../outside.txt",
            "link-abs-out": "->/etc/hostname",
            "dirlink": "->src",
            "archive.tar": ARCHIVE,
            "archive.tar.gz": gzip.compress(ARCHIVE),
            "archive.tar.bz2": bz2.compress(ARCHIVE),
            "archive.tar.xz": lzma.compress(ARCHIVE),
            "notatar.gz": gzip.compress(b"just text\n"),
            "evil-dotdot.tar": _tar([("../../x", "file", b"x")]),
            "evil-symlink.tar": _tar([("a/link", "sym", "../../etc/passwd")]),
        },
    )
    os.chmod(root / "src/main.py", 0o775)  # as a checkout under umask 002 leaves it
    os.chmod(root / "b.txt", 0o4755)
    return root


def _copy(ctx: Path, sources: list[str], dest: str, **kwargs: object) -> dict[str, LayerEntry]:
    kwargs.setdefault("ignore", DockerIgnore(IGNORE))
    entries = resolve_copy(ctx, sources, dest, **kwargs)  # type: ignore[arg-type]
    return {e.path: e for e in entries}


def _files(entries: dict[str, LayerEntry]) -> set[str]:
    return {p for p, e in entries.items() if e.kind != "dir"}


# --- destination rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dest", "workdir", "expected"),
    [
        ("/app/", "/", ("app", True)),
        ("/app", "/", ("app", False)),
        ("app/", "/srv", ("srv/app", True)),
        (".", "/srv", ("srv", True)),
        ("", "/srv", ("srv", True)),
        ("x/.", "/srv", ("srv/x", True)),
        ("../../etc/", "/srv", ("etc", True)),  # the image root clamps, as a chroot
        ("/", "/srv", ("", True)),
    ],
)
def test_resolve_dest(dest: str, workdir: str, expected: tuple[str, bool]) -> None:
    assert resolve_dest(dest, workdir) == expected


def test_file_into_directory(ctx: Path) -> None:
    entries = _copy(ctx, ["a.txt"], "/app/")
    assert set(entries) == {"app", "app/a.txt"}
    assert entries["app"] == LayerEntry("app", "dir", 0o755, 0, 0)
    f = entries["app/a.txt"]
    assert (f.kind, f.mode, f.uid, f.gid, f.source) == ("file", 0o644, 0, 0, ctx / "a.txt")


def test_file_to_non_slash_dest_renames(ctx: Path) -> None:
    assert _files(_copy(ctx, ["a.txt"], "/app/renamed.txt")) == {"app/renamed.txt"}


def test_relative_dest_uses_workdir(ctx: Path) -> None:
    assert _files(_copy(ctx, ["a.txt"], "x/", workdir="/srv")) == {"srv/x/a.txt"}
    assert _files(_copy(ctx, ["a.txt"], ".", workdir="/srv")) == {"srv/a.txt"}


def test_directory_source_copies_its_contents(ctx: Path) -> None:
    entries = _copy(ctx, ["src"], "/app")
    assert _files(entries) == {
        "app/main.py",
        "app/sub/x.py",
        "app/.hidden",
        "app/inner-link",
        "app/escape-link",
    }
    assert entries["app/sub"].kind == "dir"
    # Symlinks inside a copied directory stay symlinks, even one pointing out of the context.
    assert entries["app/inner-link"].kind == "symlink"
    assert entries["app/inner-link"].linkname == "../a.txt"
    assert entries["app/escape-link"].linkname == "../../outside.txt"


def test_multiple_sources_need_a_slash(ctx: Path) -> None:
    with pytest.raises(CopyError, match="must be a directory and end with a /"):
        _copy(ctx, ["a.txt", "b.txt"], "/app")
    with pytest.raises(CopyError, match="When using ADD"):
        _copy(ctx, ["*.txt"], "/app", is_add=True)  # two matches count as two sources
    assert _files(_copy(ctx, ["a.txt", "b.txt"], "/app/")) == {"app/a.txt", "app/b.txt"}
    assert _files(_copy(ctx, ["a.txt", "b.txt"], ".", workdir="/w")) == {"w/a.txt", "w/b.txt"}


def test_later_source_overrides_earlier(ctx: Path) -> None:
    entries = resolve_copy(ctx, ["a.txt", "src/../a.txt"], "/app/", inline=[("a.txt", b"new")])
    assert [e.path for e in entries] == ["app", "app/a.txt"]
    assert entries[1].source == b"new"


# --- wildcards and .dockerignore ------------------------------------------------------------------


def test_wildcards(ctx: Path) -> None:
    assert _files(_copy(ctx, ["*.txt"], "/app/")) == {"app/a.txt", "app/b.txt", "app/link-to-a.txt"}
    assert _files(_copy(ctx, ["src/*.py"], "/app/")) == {"app/main.py"}
    assert _files(_copy(ctx, ["src/*/x.py"], "/app/")) == {"app/x.py"}
    assert _files(_copy(ctx, ["[ab].txt"], "/app/")) == {"app/a.txt", "app/b.txt"}
    # A matched directory is copied by its contents, like a directory source.
    assert "app/main.py" in _copy(ctx, ["sr?"], "/app/")


def test_wildcard_matching_nothing_copies_nothing(ctx: Path) -> None:
    assert resolve_copy(ctx, ["*.nothing"], "/app/") == []
    assert _files(_copy(ctx, ["a.txt", "nope*"], "/app/")) == {"app/a.txt"}
    assert resolve_copy(ctx, ["*.env"], "/app/", ignore=DockerIgnore(IGNORE)) == []


def test_missing_source_is_an_error(ctx: Path) -> None:
    with pytest.raises(CopyError, match="'nope.txt': not found in the build context"):
        _copy(ctx, ["nope.txt"], "/app/")
    with pytest.raises(CopyError, match=r"not found in the build context \(excluded by"):
        _copy(ctx, ["secret.env"], "/app/")
    with pytest.raises(CopyError, match="not found"):
        _copy(ctx, ["nodir/*.txt"], "/app/")


def test_dockerignore_filters_directory_copies(ctx: Path) -> None:
    files = _files(_copy(ctx, ["."], "/app/", follow_symlinks_inside=True))
    assert "app/secret.env" not in files and "app/debug.log" not in files
    assert "app/build/out.o" not in files
    assert not any(f.startswith("app/node_modules") for f in files)
    assert "app/build/keep/k.txt" in files  # re-included below an excluded directory
    assert {"app/a.txt", "app/src/main.py", "app/dirlink", "app/archive.tar"} <= files
    # Without .dockerignore everything is there.
    assert "app/secret.env" in _files(_copy(ctx, ["."], "/app/", ignore=None))


def test_excluded_directory_kept_for_reincluded_content(ctx: Path) -> None:
    entries = _copy(ctx, ["build"], "/app/")
    assert _files(entries) == {"app/keep/k.txt"}
    with pytest.raises(CopyError, match="excluded"):
        _copy(ctx, ["node_modules"], "/app/")


# --- escaping the context -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["../outside.txt", "src/../../outside.txt", ".."])
def test_dotdot_escape_is_an_error(ctx: Path, source: str) -> None:
    with pytest.raises(CopyError, match="outside the build context") as caught:
        _copy(ctx, [source], "/app/")
    assert isinstance(caught.value, UserError) and caught.value.hint


def test_absolute_source_is_an_error(ctx: Path) -> None:
    with pytest.raises(CopyError, match="absolute"):
        _copy(ctx, [str(ctx / "a.txt")], "/app/")
    with pytest.raises(CopyError, match="absolute"):
        _copy(ctx, ["/a.txt"], "/app/")


def test_dotdot_that_stays_inside_is_fine(ctx: Path) -> None:
    assert _files(_copy(ctx, ["src/../a.txt"], "/app/")) == {"app/a.txt"}


@pytest.mark.parametrize("source", ["link-out", "link-abs-out", "link-*"])
def test_symlink_leading_out_is_an_error(ctx: Path, source: str) -> None:
    with pytest.raises(CopyError, match="outside the build context|leads out"):
        _copy(ctx, [source], "/app/")


def test_symlink_source_is_followed(ctx: Path) -> None:
    entry = _copy(ctx, ["link-to-a.txt"], "/app/")["app/link-to-a.txt"]
    assert (entry.kind, entry.source) == ("file", ctx / "a.txt")
    entries = _copy(ctx, ["dirlink/main.py", "dirlink"], "/app/")
    assert entries["app/main.py"].source == ctx / "src/main.py"
    assert "app/sub/x.py" in entries  # a symlinked directory source copies the target's contents
    # Not following: the link itself is copied.
    entry = _copy(ctx, ["link-to-a.txt"], "/app/", follow_symlinks_inside=False)[
        "app/link-to-a.txt"
    ]
    assert (entry.kind, entry.linkname) == ("symlink", "a.txt")


def test_absolute_symlink_inside_the_context_is_followed(ctx: Path) -> None:
    (ctx / "abs-in").symlink_to(ctx / "b.txt")
    assert _copy(ctx, ["abs-in"], "/app/")["app/abs-in"].source == ctx / "b.txt"


# --- --chmod, --chown, modes and the base image ---------------------------------------------------


def test_chmod_applies_to_copied_files_and_dirs(ctx: Path) -> None:
    entries = _copy(ctx, ["src"], "/opt/app/", chmod="0700")
    assert entries["opt/app/main.py"].mode == 0o700
    assert entries["opt/app/sub"].mode == 0o700  # BuildKit chmods directories too
    assert entries["opt/app/inner-link"].mode == 0o777  # not symlinks
    # the directories the COPY creates too (BuildKit v0.21+, checked against BuildKit in
    # test_native_vs_buildkit's chmod_dirs)
    assert entries["opt"].mode == 0o700 and entries["opt/app"].mode == 0o700


@pytest.mark.parametrize("bad", ["u+q", "999", "", "0o755", "17777", "x=y", "u+x,"])
def test_invalid_chmod(ctx: Path, bad: str) -> None:
    with pytest.raises(CopyError, match="--chmod"):
        _copy(ctx, ["a.txt"], "/app/", chmod=bad)
    assert parse_chmod("4755").apply(0o644, False) == 0o4755


@pytest.mark.parametrize("text,mode,is_dir,want", [
    ("u+x,g=r", 0o644, False, 0o744), ("go-w,a+X", 0o664, False, 0o644),
    ("go-w,a+X", 0o775, True, 0o755), ("a+X", 0o644, True, 0o755),
    ("u=rwx,go=rx", 0o600, False, 0o755), ("+x", 0o644, False, 0o755),
    ("g=u", 0o640, False, 0o660), ("u+s", 0o755, False, 0o4755),
])
def test_symbolic_chmod_is_chmod_1(text: str, mode: int, is_dir: bool, want: int) -> None:
    assert parse_chmod(text).apply(mode, is_dir) == want


def test_chown_applies_to_copies_and_created_dirs(ctx: Path) -> None:
    entries = _copy(ctx, ["src"], "/opt/app/", chown=(1000, 1001))
    assert {(e.uid, e.gid) for e in entries.values()} == {(1000, 1001)}
    assert entries["opt"].mode == 0o755


def test_context_modes_drop_umask_bits(ctx: Path) -> None:
    entries = _copy(ctx, ["src/main.py", "b.txt"], "/app/")
    assert entries["app/main.py"].mode == 0o755  # 0775 on disk
    assert entries["app/b.txt"].mode == 0o4755  # setuid kept
    exact = _copy(ctx, ["src/main.py"], "/app/", mode_mask=0o7777)
    assert exact["app/main.py"].mode == 0o775


def _base(entries: list[LayerEntry]) -> BaseLookup:
    return {e.path: e for e in entries}.get


def test_base_image_directories_and_symlinks(ctx: Path) -> None:
    base = _base(
        [
            LayerEntry("tmp", "dir", 0o1777),
            LayerEntry("usr", "dir", 0o755),
            LayerEntry("usr/bin", "dir", 0o755),
            LayerEntry("bin", "symlink", linkname="usr/bin"),
            LayerEntry("srv", "dir", 0o750, 33, 33),
        ]
    )
    entries = _copy(ctx, ["a.txt"], "/tmp/", base=base, chown=(5, 5))
    assert entries["tmp"].mode == 0o1777 and entries["tmp"].uid == 0  # existing: kept as is
    assert _files(_copy(ctx, ["a.txt"], "/bin/", base=base)) == {"usr/bin/a.txt"}
    # An existing directory named without a trailing slash is copied into.
    assert _files(_copy(ctx, ["a.txt"], "/srv", base=base)) == {"srv/a.txt"}
    assert _copy(ctx, ["a.txt"], "/srv", base=base)["srv"].uid == 33
    with pytest.raises(CopyError, match="is a file"):
        _copy(ctx, ["a.txt"], "/etc/x/", base=_base([LayerEntry("etc", source=b"")]))


def test_heredoc_sources(ctx: Path) -> None:
    entries = resolve_copy(ctx, [], "/app/", inline=[("EOF", b"hi\n")], chown=(1, 2))
    assert entries[-1] == LayerEntry("app/EOF", "file", 0o644, 1, 2, source=b"hi\n")
    entries = resolve_copy(ctx, [], "/app/run.sh", inline=[("EOF", b"#!/bin/sh\n")], chmod="755")
    assert entries[-1].path == "app/run.sh" and entries[-1].mode == 0o755


def test_url_sources_are_refused(ctx: Path) -> None:
    with pytest.raises(CopyError, match="URL"):
        _copy(ctx, ["https://example.com/x.tar.gz"], "/app/", is_add=True)


# --- ADD of local archives ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "archive", ["archive.tar", "archive.tar.gz", "archive.tar.bz2", "archive.tar.xz"]
)
def test_add_extracts_local_archives(ctx: Path, tmp_path: Path, archive: str) -> None:
    entries = _copy(
        ctx, [archive], "/opt/x", is_add=True, chown=(9, 9), scratch_dir=tmp_path / "scratch"
    )
    assert _files(entries) == {
        "opt/x/etc/motd",
        "opt/x/etc/motd.link",
        "opt/x/etc/motd.hard",
        "opt/x/usr/lib/deep/lib.so",
        "opt/x/abs/ok.txt",
    }
    motd = entries["opt/x/etc/motd"]
    # the archive's mode; --chown owns the members (BuildKit v0.23+, checked in add_tar of
    # test_native_vs_buildkit)
    assert (motd.mode, motd.uid, motd.gid) == (0o640, 9, 9)
    assert entries["opt/x/etc"].mode == 0o750
    assert (entries["opt/x"].uid, entries["opt"].uid) == (9, 9)  # dest dirs get --chown
    assert entries["opt/x/usr"] == LayerEntry("opt/x/usr", "dir", 0o755, 0, 0)  # implied
    assert entries["opt/x/etc/motd.link"].linkname == "motd"
    assert entries["opt/x/etc/motd.hard"].linkname == "opt/x/etc/motd"
    # The layer reads member contents straight out of the (decompressed) archive.
    blob = io.BytesIO()
    write_layer(entries.values(), blob)
    with tarfile.open(fileobj=io.BytesIO(blob.getvalue()), mode="r:gz") as tf:
        assert tf.extractfile("opt/x/etc/motd").read() == b"hello from tar\n"
        assert tf.extractfile("opt/x/usr/lib/deep/lib.so").read() == b"\x7fELF"


def test_add_of_non_archives_and_copy_of_archives(ctx: Path) -> None:
    entries = _copy(ctx, ["notatar.gz"], "/app/", is_add=True)
    assert entries["app/notatar.gz"].source == ctx / "notatar.gz"
    assert _files(_copy(ctx, ["archive.tar.gz"], "/app/")) == {"app/archive.tar.gz"}


@pytest.mark.parametrize(
    ("archive", "message"),
    [("evil-dotdot.tar", "outside the destination"), ("evil-symlink.tar", "leads out")],
)
def test_add_refuses_archive_breakouts(ctx: Path, archive: str, message: str) -> None:
    with pytest.raises(CopyError, match=message):
        _copy(ctx, [archive], "/app/", is_add=True)


# --- copy_inputs ------------------------------------------------------------------------------------


def test_copy_inputs_lists_what_copy_reaches(ctx: Path) -> None:
    ignore = DockerIgnore(IGNORE)
    inputs = copy_inputs(ctx, ["src", "link-to-a.txt", "*.log", "build"], ignore)
    assert inputs == sorted(
        [
            ctx / "src/.hidden",
            ctx / "src/escape-link",
            ctx / "src/inner-link",
            ctx / "src/main.py",
            ctx / "src/sub/x.py",
            ctx / "link-to-a.txt",
            ctx / "a.txt",
            ctx / "build/keep/k.txt",
        ],
        key=lambda p: str(p).encode(),
    )
    everything = copy_inputs(ctx, ["."], ignore)
    assert ctx / "secret.env" not in everything and ctx / "archive.tar" in everything
    with pytest.raises(CopyError):
        copy_inputs(ctx, ["../outside.txt"], ignore)
    assert copy_inputs(ctx, ["https://example.com/x.tar.gz", "a.txt"], ignore) == [ctx / "a.txt"]


# --- COPY --from ------------------------------------------------------------------------------------


def test_copy_from_tree(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    _write(
        root,
        {
            "app/bin/server": b"\x7fELF",
            "app/config.yaml": "a: 1\n",
            "data/f": "f\n",
            "abs-link": "->/data/f",  # resolves inside the stage, as in a chroot
            "up-link": "->../../../data/f",
        },
    )
    os.chmod(root / "app/bin/server", 0o775)
    entries = {
        e.path: e
        for e in copy_from_tree(
            root,
            ["/app/bin/server", "abs-link", "up-link", "/../app/config.yaml"],
            "/usr/local/bin/",
            owner_of=lambda rel: (100, 101) if rel.startswith("app/") else (0, 0),
        )
    }
    assert entries["usr/local/bin/server"].mode == 0o775  # a stage's modes are kept exactly
    assert (entries["usr/local/bin/server"].uid, entries["usr/local/bin/server"].gid) == (100, 101)
    assert entries["usr/local/bin/abs-link"].source == root / "data/f"
    assert entries["usr/local/bin/up-link"].source == root / "data/f"
    assert entries["usr/local/bin/config.yaml"].source == root / "app/config.yaml"
    whole = {e.path for e in copy_from_tree(root, ["/app"], "/srv", chown=(1, 1))}
    assert {"srv/bin/server", "srv/config.yaml"} <= whole
    with pytest.raises(CopyError, match="not found in the source stage"):
        copy_from_tree(root, ["/missing"], "/x/")


# --- determinism ------------------------------------------------------------------------------------


def test_same_context_same_layer_anywhere(tmp_path: Path) -> None:
    files = {"src/app.py": "x = 1\n", "src/run.sh": "#!/bin/sh\n", "README": "r\n"}
    digests = set()
    for name, umask in (("one", 0o022), ("two/nested", 0o002)):
        root = tmp_path / name
        _write(root, files, umask=umask)
        os.chmod(root / "src/run.sh", 0o777 & ~umask)
        for path in (root / "src/app.py", root / "README"):
            os.utime(path, (12345 if umask == 0o022 else 99999,) * 2)
        entries = resolve_copy(root, ["src", "README"], "/app/")
        assert entries == sorted(entries, key=lambda e: e.path.split("/"))
        blob = io.BytesIO()
        digests.add(write_layer(entries, blob).digest)
    assert len(digests) == 1
