"""COPY and ADD under the native backend, through the CLI, checked by unpacking each platform's
image with `umoci unpack --rootless` (files, contents, modes) and by reading the layer tars
(owners, which a rootless unpack cannot keep). Issue 3, items 2 and 9."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import need_tool

from graphbuild.oci.store import Store

PLATFORMS = ("amd64", "arm64")


def store(ws) -> Store:
    return Store(ws.root / ".graphbuild" / "oci")


def build(ws, *patterns: str) -> None:
    res = ws.run("run", *patterns)
    assert res.code == 0, res


def unpack(ws, tag: str, dest: Path) -> Path:
    """The rootfs of the image ``tag`` names in the store, unpacked by umoci."""
    umoci = need_tool("umoci")
    proc = subprocess.run([umoci, "unpack", "--rootless", "--image",
                           f"{ws.root / '.graphbuild' / 'oci'}:{tag}", str(dest)],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return dest / "rootfs"


def layer_headers(ws, node: str) -> dict[str, tarfile.TarInfo]:
    """path -> tar header of the image's filesystem, later layers winning."""
    s = store(ws)
    manifest = s.read_json(s.lookup(node)["digest"])
    out: dict[str, tarfile.TarInfo] = {}
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(s.read_bytes(layer["digest"])), mode="r:gz") as tar:
            out.update({m.name.rstrip("/"): m for m in tar})
    return out


def mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o7777


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def tar_gz(members: list[tuple[str, bytes | None, int, int, int]]) -> bytes:
    """A .tar.gz of (name, content or None for a directory, mode, uid, gid)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, perm, uid, gid in members:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = perm, uid, gid, 1_600_000_000
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


COPY_WS = {
    "app/BUILD.yaml": """
        img:
          rule: image
          platforms: [linux/amd64, linux/arm64]
          tags: ["copy:{arch}"]
        other:
          rule: image
          dockerfile: other/Other.Dockerfile
          platforms: [linux/amd64]
          tags: ["other:{arch}"]
    """,
    "app/Dockerfile": """
        FROM scratch
        COPY a.txt /file-as-name
        COPY a.txt /intodir/
        COPY a.txt b.txt /multi/
        COPY *.txt /wild/
        COPY dir /contents/
        COPY dir/*.py /py/
        COPY d?r/sub /sub-only/
        COPY --chmod=0640 a.txt run.sh /chmod/
        COPY --chmod=750 dir /chmod-dir/
        COPY run.sh /modes/
        COPY --chown=1000:2000 a.txt /owned/deep/
        WORKDIR /work
        COPY b.txt rel/
        COPY b.txt .
        COPY . /all/
        ADD data.tar.gz /unpacked/
        ADD a.txt /added/
        COPY data.tar.gz /not-unpacked/
        ARG TARGETARCH
        COPY <<EOF /heredoc/expanded
        arch=${TARGETARCH}
        EOF
        COPY <<"EOF" /heredoc/literal
        arch=${TARGETARCH}
        EOF
        COPY --chmod=0755 <<one <<two /heredoc/dir/
        #!/bin/sh first
        one
        second
        two
    """,
    "app/a.txt": "A\n",
    "app/b.txt": "B\n",
    "app/run.sh": "#!/bin/sh\necho run\n",
    "app/dir/x.py": "x = 1\n",
    "app/dir/z.txt": "z\n",
    "app/dir/sub/y.py": "y = 2\n",
    "app/dir/debug.log": "ignored\n",
    "app/app.log": "ignored\n",
    "app/keep.log": "kept by an exception\n",
    "app/logs/deep/x.log": "ignored at any depth\n",
    "app/secret/key": "never copied\n",
    "app/.dockerignore": """
        # comments and blank lines are ignored

        **/*.log
        !keep.log
        secret
        other
    """,
    "app/data.tar.gz": tar_gz([("pkg", None, 0o750, 0, 0), ("pkg/bin", b"bin\n", 0o755, 0, 0),
                               ("pkg/cfg", b"cfg\n", 0o600, 7, 8)]),
    # a Dockerfile's own <name>.dockerignore wins over the context's .dockerignore
    "app/other/Other.Dockerfile": "FROM scratch\nCOPY . /all/\n",
    "app/other/Other.Dockerfile.dockerignore": "a.txt\ndir/sub\n",
}


def test_copy_and_add_rules_per_platform(ws, tmp_path):
    ws.write(COPY_WS)
    os.chmod(ws.path("app/run.sh"), 0o775)  # group write is a umask artefact: dropped
    os.chmod(ws.path("app/a.txt"), 0o664)
    build(ws, "//app:all")
    for arch in PLATFORMS:
        root = unpack(ws, f"copy:{arch}", tmp_path / arch)

        def read(rel: str, root: Path = root) -> str:
            return (root / rel).read_text()

        # a dest without a trailing slash names the file; with one, a directory
        assert read("file-as-name") == "A\n" and mode(root / "file-as-name") == 0o644
        assert tree(root / "intodir") == {"a.txt"}
        assert tree(root / "multi") == {"a.txt", "b.txt"}
        # wildcards (Go filepath.Match: * does not cross /), .dockerignore applied first
        assert tree(root / "wild") == {"a.txt", "b.txt"}
        assert tree(root / "py") == {"x.py"}
        assert tree(root / "sub-only") == {"y.py"}
        # a directory source copies its contents, minus what .dockerignore excludes
        assert tree(root / "contents") == {"x.py", "z.txt", "sub", "sub/y.py"}
        assert mode(root / "contents/sub") == 0o755
        # --chmod applies to every copied file and directory
        assert mode(root / "chmod/a.txt") == mode(root / "chmod/run.sh") == 0o640
        assert mode(root / "chmod-dir/x.py") == mode(root / "chmod-dir/sub") == 0o750
        assert mode(root / "modes/run.sh") == 0o755
        # relative destinations follow WORKDIR; "." is the WORKDIR itself
        assert read("work/rel/b.txt") == "B\n" and read("work/b.txt") == "B\n"
        # COPY . with ** and ! exceptions
        everything = tree(root / "all")
        assert {"a.txt", "b.txt", "keep.log", "run.sh", "dir/x.py", "dir/sub/y.py",
                "data.tar.gz"} <= everything
        assert not {"app.log", "dir/debug.log", "logs/deep/x.log", "secret", "secret/key",
                    "other", "other/Other.Dockerfile"} & everything
        # ADD extracts a local tar (keeping its modes); COPY and ADD of a plain file do not
        assert read("unpacked/pkg/bin") == "bin\n" and mode(root / "unpacked/pkg/bin") == 0o755
        assert mode(root / "unpacked/pkg/cfg") == 0o600
        assert mode(root / "unpacked/pkg") == 0o750
        assert tree(root / "not-unpacked") == {"data.tar.gz"}
        assert (root / "not-unpacked/data.tar.gz").read_bytes() == COPY_WS["app/data.tar.gz"]
        assert read("added/a.txt") == "A\n"
        # heredocs: expanded unless the delimiter is quoted; several to a directory
        assert read("heredoc/expanded") == f"arch={arch}\n"
        assert read("heredoc/literal") == "arch=${TARGETARCH}\n"
        assert read("heredoc/dir/one") == "#!/bin/sh first\n"
        assert read("heredoc/dir/two") == "second\n"
        assert mode(root / "heredoc/expanded") == 0o644
        assert mode(root / "heredoc/dir/one") == 0o755

        heads = layer_headers(ws, f"//app:img[linux/{arch}]")
        # owners: 0:0 unless --chown, which also owns the directories COPY creates
        assert (heads["owned/deep/a.txt"].uid, heads["owned/deep/a.txt"].gid) == (1000, 2000)
        assert (heads["owned/deep"].uid, heads["owned/deep"].gid) == (1000, 2000)
        assert (heads["all/a.txt"].uid, heads["all/a.txt"].gid) == (0, 0)
        assert all(h.uname == "" and h.gname == "" for h in heads.values())
        assert all(h.mtime == 0 for h in heads.values())
        # an extracted tar keeps its members' owners
        assert (heads["unpacked/pkg/cfg"].uid, heads["unpacked/pkg/cfg"].gid) == (7, 8)

    other = tree(unpack(ws, "other:amd64", tmp_path / "other") / "all")
    assert {"b.txt", "app.log", "secret/key", "dir/x.py", "logs/deep/x.log"} <= other
    assert not {"a.txt", "dir/sub", "dir/sub/y.py"} & other


BASE_WS = {
    "svc/BUILD.yaml": """
        bin:
          rule: command
          cmd: >-
            mkdir -p $OUT/bin &&
            printf 'binary for %s/%s\\n' "$TARGETOS" "$TARGETARCH" > $OUT/bin/app &&
            chmod 755 $OUT/bin/app
          outs: [bin/app]
          platforms: [linux/amd64, linux/arm64]
        base:
          rule: image
          dockerfile: base.Dockerfile
          platforms: [linux/amd64, linux/arm64]
        app:
          rule: image
          platforms: [linux/amd64, linux/arm64]
          contexts: {bin: ":bin", base: ":base"}
          tags: ["svc:{arch}"]
    """,
    "svc/base.Dockerfile": """
        FROM scratch
        COPY passwd group /etc/
        ARG TARGETARCH
        COPY <<EOF /etc/base-arch
        ${TARGETARCH}
        EOF
        ENV APPDIR=/opt/app
        LABEL base=yes
    """,
    "svc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1234:4321::/home/app:/bin/sh\n",
    "svc/group": "root:x:0:\nstaff:x:50:\napp:x:4321:\n",
    "svc/a.txt": "A\n",
    "svc/Dockerfile": """
        FROM scratch AS build
        COPY --chown=5:6 --chmod=0755 a.txt /out/tool

        FROM base
        COPY --from=bin bin/app /usr/local/bin/app
        COPY --from=build /out/tool /usr/bin/
        COPY --from=base /etc/base-arch /copied-from-base
        COPY --chown=app a.txt /home/app/
        COPY --chown=app:staff a.txt /home/staff.txt
        COPY --chown=app:50 a.txt /home/mixed.txt
        WORKDIR $APPDIR
        LABEL app=yes
    """,
}


def test_from_image_context_and_copy_from_stage_context_and_command_output(ws, tmp_path):
    ws.write(BASE_WS)
    build(ws, "//svc:app")
    for arch in PLATFORMS:
        root = unpack(ws, f"svc:{arch}", tmp_path / arch)
        # the command's output for this platform, its mode kept
        assert (root / "usr/local/bin/app").read_text() == f"binary for linux/{arch}\n"
        assert mode(root / "usr/local/bin/app") == 0o755
        # FROM another image target: its files, for the same platform
        assert (root / "etc/passwd").read_text() == BASE_WS["svc/passwd"]
        assert (root / "etc/base-arch").read_text() == f"{arch}\n"
        assert (root / "copied-from-base").read_text() == f"{arch}\n"
        assert (root / "usr/bin/tool").read_text() == "A\n"
        assert mode(root / "usr/bin/tool") == 0o755

        heads = layer_headers(ws, f"//svc:app[linux/{arch}]")
        owners = {p: (heads[p].uid, heads[p].gid) for p in (
            "usr/bin/tool", "home/app/a.txt", "home/staff.txt", "home/mixed.txt",
            "usr/local/bin/app", "etc/passwd")}
        assert owners == {
            "usr/bin/tool": (5, 6),  # COPY --from a stage keeps the owners it had there
            "home/app/a.txt": (1234, 4321),  # a user alone: its primary group (BuildKit)
            "home/staff.txt": (1234, 50),  # names from the base image's /etc/passwd, /etc/group
            "home/mixed.txt": (1234, 50),
            "usr/local/bin/app": (0, 0),
            "etc/passwd": (0, 0),
        }

        s = store(ws)
        manifest = s.read_json(s.lookup(f"//svc:app[linux/{arch}]")["digest"])
        base = s.read_json(s.lookup(f"//svc:base[linux/{arch}]")["digest"])
        # the base image's layers, shared by digest, then this Dockerfile's own
        assert manifest["layers"][:len(base["layers"])] == base["layers"]
        assert len(manifest["layers"]) == len(base["layers"]) + 7  # 6 COPY, WORKDIR's mkdir
        assert heads["opt/app"].isdir() and (heads["opt/app"].uid, heads["opt/app"].mode) == (
            0, 0o755)
        cfg = s.read_json(manifest["config"]["digest"])
        assert cfg["config"]["Labels"] == {"base": "yes", "app": "yes"}
        assert "APPDIR=/opt/app" in cfg["config"]["Env"]
        # variables of a base image's ENV expand in the stage built on it, as in BuildKit
        assert cfg["config"]["WorkingDir"] == "/opt/app"
        assert cfg["architecture"] == arch
        assert [h["created_by"].split()[0] for h in cfg["history"]] == [
            "COPY", "ARG", "COPY", "ENV", "LABEL",  # the base image's
            "COPY", "COPY", "COPY", "COPY", "COPY", "COPY", "WORKDIR", "LABEL"]


def test_chown_to_a_name_the_image_lacks_is_root_as_in_buildkit(ws):
    """It failed the node; BuildKit copies as 0:0."""
    from conftest import last_layer

    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64]}\n",
        "p/Dockerfile": "FROM scratch\nCOPY --chown=nobody a.txt /a\n",
        "p/a.txt": "A\n",
    })
    res = ws.run("run", "//p:img")
    assert res.code == 0, res
    a = last_layer(ws, "//p:img[linux/amd64]")["a"]
    assert (a.uid, a.gid) == (0, 0)


@pytest.mark.parametrize("link_target", ["inside.txt", "dir"])
def test_symlink_sources_inside_the_context_are_followed(ws, tmp_path, link_target):
    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64], tags: ['l:{arch}']}\n",
        "p/Dockerfile": "FROM scratch\nCOPY link /followed\nCOPY dir /d/\n",
        "p/inside.txt": "inside\n",
        "p/dir/f.txt": "f\n",
    })
    os.symlink(link_target, ws.path("p/link"))
    os.symlink("f.txt", ws.path("p/dir/rel-link"))
    build(ws, "//p:img")
    root = unpack(ws, "l:amd64", tmp_path / "u")
    if link_target == "dir":
        assert (root / "followed/f.txt").read_text() == "f\n"
    else:
        assert (root / "followed").read_text() == "inside\n"
        assert not (root / "followed").is_symlink()
    # a symlink inside a copied directory stays a symlink
    assert os.readlink(root / "d/rel-link") == "f.txt"


def _files_of(ws, node: str) -> list[str]:
    return sorted(name for name, head in layer_headers(ws, node).items() if head.isfile())


def test_copy_exclude_filters_below_each_source_as_buildkit_does(ws):
    """--exclude patterns (.dockerignore syntax, ARGs expanded) match paths below each source
    directory, never a source itself; excluded files are not inputs of the node."""
    ws.write({
        "p/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64]\n",
        "p/Dockerfile": """
            FROM scratch AS s
            COPY app/ /x/
            FROM scratch
            ARG PAT=*.md
            COPY --exclude=$PAT --exclude=sub/*.tmp app /app/
            COPY --from=s --exclude=**/*.md /x /fromstage/
            COPY --exclude=*.md app/a.md /single.md
        """,
        **{f"p/app/{f}": f"{f}\n" for f in ("a.md", "b.txt", "sub/c.tmp", "sub/d.txt",
                                            "sub/f.md")},
    })
    build(ws, "//p:img")
    node = "//p:img[linux/amd64]"
    assert _files_of(ws, node) == [
        "app/b.txt", "app/sub/d.txt", "app/sub/f.md",  # *.md is top-level only, as in patterns
        "fromstage/b.txt", "fromstage/sub/c.tmp", "fromstage/sub/d.txt",
        "single.md"]  # a source named outright is never excluded
    ws.write({"p/app/sub/c.tmp": "changed\n"})  # copied only through the stage: an input
    res = ws.run("run", "//p:img", "--output", "json", "--explain")
    assert {e["node"]: e["status"] for e in res.events()
            if e["event"] == "action_finished"}[node] == "built"
    ws.write({"p/Dockerfile": "FROM scratch\nCOPY --exclude=*.tmp app/sub /s/\n"})
    build(ws, "//p:img")
    ws.write({"p/app/sub/c.tmp": "changed again\n"})  # excluded everywhere: not an input
    res = ws.run("run", "//p:img", "--output", "json")
    assert [e["status"] for e in res.events() if e["event"] == "action_finished"] == ["cached"]


def test_copy_parents_keeps_the_source_paths(ws):
    """As BuildKit (checked in copy_parents of test_native_vs_buildkit): each source keeps its
    path under dest, from a /./ pivot on when there is one; from a stage's root with --from."""
    from conftest import last_layer

    ws.write({
        "p/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64]\n",
        "p/Dockerfile": "FROM scratch\nCOPY --parents app/*.txt ./lib/./pkg/ /dst/\n",
        "p/app/x.txt": "x\n",
        "p/lib/pkg/y.txt": "y\n",
    })
    res = ws.run("run", "//p:img")
    assert res.code == 0, res
    names = {n for n, m in last_layer(ws, "//p:img[linux/amd64]").items() if m.isfile()}
    assert names == {"dst/app/x.txt", "dst/pkg/y.txt"}, names
    ws.write({"p/Dockerfile": "FROM scratch AS s\nCOPY app /srv/app\nCOPY lib /srv/lib\n"
                              "FROM scratch\nCOPY --from=s --parents /srv/app/x.txt "
                              "srv/./lib/pkg/ /dst/\n"})
    res = ws.run("run", "//p:img")
    assert res.code == 0, res
    names = {n for n, m in last_layer(ws, "//p:img[linux/amd64]").items() if m.isfile()}
    assert names == {"dst/srv/app/x.txt", "dst/lib/pkg/y.txt"}, names
