"""A hostile base image must never act on the build host.

Each test pushes a hand-made image to the real ``docker-registry`` through the registry API,
uses it as ``FROM <registry>/evil@sha256:... AS e`` + ``FROM scratch`` + ``COPY --from=e / /``
through the CLI, and checks that the host files and directories it aims at (under tmp_path)
are untouched, that no host content reached the store, and that the build either succeeded with
a safe result or failed with one message (no traceback).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import urllib.parse
from pathlib import Path

import httpx
import pytest
import registry_fixtures as fx

registry = fx.registry


class _URLRegistry(fx.RegistryServer):
    """A registry that accepts layers it does not hold when they name an http(s) URL (OCI
    non-distributable layers), so a manifest can carry any digest string for them."""

    def _config(self) -> dict:
        return {**super()._config(),
                "validation": {"manifests": {"urls": {"allow": ["^https?://"]}}}}


@pytest.fixture(scope="module")
def url_registry(tmp_path_factory: pytest.TempPathFactory):
    fx.require_tool("docker-registry")
    server = _URLRegistry(tmp_path_factory.mktemp("registry-urls")).start()
    yield server
    server.stop()

SECRET = b"host-secret-7f3a9c: must never reach an image\n"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
NONDIST_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"


# -- the host we protect -----------------------------------------------------------------------

@pytest.fixture
def host(tmp_path: Path) -> Path:
    """Sentinels: files, a directory with content, distinct modes."""
    root = tmp_path / "host"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "keep.txt").write_text("keep\n")
    (root / "secret.txt").write_bytes(SECRET)
    (root / "sub" / "inner.txt").write_text("inner\n")
    (root / "sub" / "deeper" / "leaf.txt").write_text("leaf\n")
    os.chmod(root / "sub", 0o750)
    os.chmod(root, 0o755)
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything at and below ``root``: kind, mode and content, without following symlinks."""
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            found[str(path)] = ("symlink", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            found[str(path)] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            found[str(path)] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return found


# -- hostile layers and their image ------------------------------------------------------------

def sym(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    return info


def link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.LNKTYPE, target, 0o644
    return info


def dir_(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info


def file_(name: str, data: bytes = b"", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def whiteout(path: str) -> tuple[tarfile.TarInfo, bytes]:
    parent, _, base = path.rpartition("/")
    return file_(f"{parent}/.wh.{base}" if parent else f".wh.{base}")


def opaque(directory: str) -> tuple[tarfile.TarInfo, bytes]:
    return file_(f"{directory}/.wh..wh..opq")


def layer(*entries) -> tuple[bytes, str]:
    """A gzipped tar of ``entries`` in the order given, and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info, data = entry if isinstance(entry, tuple) else (entry, b"")
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data else None)
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(reg: fx.RegistryServer, repo: str, data: bytes) -> str:
    """A monolithic upload through the registry API (POST, then PUT with the digest)."""
    digest = _digest(data)
    start = httpx.post(f"{reg.url}/v2/{repo}/blobs/uploads/", timeout=30)
    assert start.status_code == 202, start.text
    location = urllib.parse.urljoin(reg.url, start.headers["Location"])
    sep = "&" if "?" in location else "?"
    done = httpx.put(f"{location}{sep}digest={digest}", content=data, timeout=30,
                     headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return digest


def put_manifest(reg: fx.RegistryServer, repo: str, manifest: dict) -> httpx.Response:
    body = json.dumps(manifest).encode()
    return httpx.put(f"{reg.url}/v2/{repo}/manifests/{_digest(body)}", content=body,
                     headers={"Content-Type": OCI_MANIFEST}, timeout=30)


def push_image(reg: fx.RegistryServer, repo: str, layers: list[tuple[bytes, str]]) -> str:
    """Push a linux/amd64 image made of ``layers``; return its manifest digest."""
    descriptors = [{"mediaType": OCI_LAYER, "digest": put_blob(reg, repo, gz), "size": len(gz)}
                   for gz, _ in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
    }).encode()
    config_desc = {"mediaType": OCI_CONFIG, "digest": put_blob(reg, repo, config),
                   "size": len(config)}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc,
                "layers": descriptors}
    answer = put_manifest(reg, repo, manifest)
    assert answer.status_code == 201, answer.text
    return answer.headers["Docker-Content-Digest"]


# -- building from it --------------------------------------------------------------------------

def build_from(ws, reference: str):
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": """
            img:
              rule: image
        """,
        "app/Dockerfile": f"FROM {reference} AS e\nFROM scratch\nCOPY --from=e / /\n",
    })
    return ws.run("run", "//app:img")


def image_files(ws) -> dict[str, tuple]:
    """path -> (kind, content or link target) of //app:img as built, layers applied in order."""
    from graphbuild.oci.store import Store

    store = Store(ws.path(".graphbuild/oci"))
    entry = store.lookup("//app:img[linux/amd64]")
    assert entry is not None, "the image was not recorded"
    files: dict[str, tuple] = {}
    for desc in store.walk(entry):
        if "layer" not in desc["mediaType"]:
            continue
        with tarfile.open(fileobj=store.open_blob(desc["digest"]), mode="r:*") as tar:
            for member in tar:
                name = member.name.strip("/").removeprefix("./")
                if member.issym():
                    files[name] = ("symlink", member.linkname)
                elif member.isdir():
                    files[name] = ("dir", member.mode)
                elif member.islnk():
                    files[name] = ("hardlink", member.linkname)
                else:
                    files[name] = ("file", tar.extractfile(member).read())
    return files


def no_host_content_in_store(ws) -> None:
    """No blob of the workspace's store (layers decompressed) holds the host's secret."""
    for blob in ws.path(".graphbuild/oci/blobs/sha256").iterdir():
        data = blob.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        assert SECRET not in data, f"host content reached blob {blob.name}"


def run_hostile(ws, registry, host: Path, *layers) -> tuple:
    """Push ``layers``, build from them; check the host is untouched and the run clean.
    Returns (result, files of the built image or None when the build failed)."""
    before = snapshot(host)
    repo = fx.unique_repo("evil")
    digest = push_image(registry, repo, list(layers))
    res = build_from(ws, f"{registry.host}/{repo}@{digest}")
    assert snapshot(host) == before, f"the host changed\n{res}"
    assert "Traceback" not in res.err, res.err
    assert res.code in (0, 1), res
    assert "internal error" not in res.err, res.err
    if (ws.path(".graphbuild/oci/blobs/sha256")).is_dir():
        no_host_content_in_store(ws)
    return res, image_files(ws) if res.code == 0 else None


# -- the cases ---------------------------------------------------------------------------------

def test_file_whiteout_through_a_symlink(ws, registry, host):
    res, files = run_hostile(ws, registry, host,
                             layer(sym("w", str(host))),
                             layer(whiteout("w/keep.txt")))
    assert res.code == 0, res
    assert files["w"] == ("symlink", str(host))


def test_directory_whiteout_through_a_symlink(ws, registry, host):
    res, files = run_hostile(ws, registry, host,
                             layer(sym("d", str(host))),
                             layer(whiteout("d/sub"), whiteout("d/sub/deeper")))
    assert res.code == 0, res
    assert files["d"] == ("symlink", str(host))


def test_opaque_whiteout_through_a_symlink(ws, registry, host):
    res, _ = run_hostile(ws, registry, host,
                         layer(sym("c", str(host)), sym("s", f"{host}/sub")),
                         layer(opaque("c"), opaque("s/deeper")))
    assert res.code == 0, res


def test_directory_entry_over_a_symlink_replaces_the_link(ws, registry, host):
    res, files = run_hostile(ws, registry, host,
                             layer(sym("m", str(host)), sym("n", f"{host}/sub")),
                             layer(dir_("m", 0o7777), dir_("n/deeper", 0o7777),
                                   file_("m/new.txt", b"new\n", 0o4755)))
    assert res.code == 0, res
    assert files["m"][0] == "dir"  # as containerd: the link is replaced by a directory
    assert files["m/new.txt"] == ("file", b"new\n")
    assert "n" in files and files["n"] == ("symlink", f"{host}/sub")


def test_hardlink_to_a_host_file_through_a_symlink(ws, registry, host):
    res, files = run_hostile(ws, registry, host,
                             layer(sym("l", str(host)), file_("inside.txt", b"in the image\n")),
                             layer(link("stolen", "l/secret.txt"),
                                   link("stolen-abs", f"{host}/secret.txt"),
                                   link("stolen-up", f"../../../../../../../..{host}/secret.txt"),
                                   link("fine", "inside.txt")))
    if res.code == 0:
        assert all(name not in files for name in ("stolen", "stolen-abs", "stolen-up"))
        assert files["fine"] == ("file", b"in the image\n")


def test_symlink_chains_and_relative_links_climbing_out(ws, registry, host):
    climb = "/".join([".."] * 40)
    res, files = run_hostile(
        ws, registry, host,
        layer(sym("a", climb), sym("x", "y"), sym("y", "z"), sym("z", str(host)),
              sym("r", f"a{host}"), sym("deep/er/up", "../../../.."), dir_("deep/er")),
        layer(whiteout("x/keep.txt"),
              whiteout(f"a{host}/secret.txt"),
              whiteout("r/sub/inner.txt"),
              opaque(f"deep/er/up{host}/sub/deeper")))
    assert res.code == 0, res
    assert files["a"] == ("symlink", climb)


def test_symlink_planted_in_one_layer_used_two_layers_later(ws, registry, host):
    res, files = run_hostile(ws, registry, host,
                             layer(sym("p", str(host))),
                             layer(file_("other.txt", b"other\n"), dir_("q")),
                             layer(whiteout("p/keep.txt"), opaque("p/sub"),
                                   file_("p/planted.txt", b"planted\n")))
    assert res.code == 0, res
    assert files["other.txt"] == ("file", b"other\n")
    assert files["p"] == ("symlink", str(host))


def test_a_layer_replacing_a_directory_with_a_symlink(ws, registry, host):
    res, files = run_hostile(ws, registry, host,
                             layer(dir_("etc"), file_("etc/a.txt", b"a\n")),
                             layer(sym("etc", str(host))),
                             layer(whiteout("etc/keep.txt"), opaque("etc/sub"),
                                   dir_("etc/sub/deeper", 0o7777)))
    assert res.code == 0, res
    assert files["etc"] == ("symlink", str(host))
    assert "etc/a.txt" not in files


def test_absolute_and_dotdot_entry_names_are_rerooted(ws, registry, host):
    res, files = run_hostile(ws, registry, host,
                             layer(sym("w", str(host))),
                             layer(whiteout("/w/keep.txt"),
                                   whiteout("../../w/secret.txt"),
                                   whiteout("x/../../w/sub/inner.txt"),
                                   file_("../../escaped.txt", b"escaped\n"),
                                   file_(f"/{host.name}-abs.txt", b"abs\n")))
    assert res.code == 0, res
    # re-rooted as containerd does: `..` never climbs above the root, `/` is the image's root
    assert files["escaped.txt"] == ("file", b"escaped\n")
    assert files[f"{host.name}-abs.txt"] == ("file", b"abs\n")
    assert not (host.parent / "escaped.txt").exists()


def test_whiteouts_named_dot_and_dotdot_remove_nothing(ws, registry, host):
    res, files = run_hostile(ws, registry, host,
                             layer(sym("w", f"{host}/sub"), file_("kept.txt", b"kept\n")),
                             layer(file_("w/.wh..."), file_("w/.wh.."), file_("w/.wh."),
                                   file_(".wh..."), file_(".wh..")))
    assert res.code == 0, res
    assert files["kept.txt"] == ("file", b"kept\n")


def test_whiteouts_spare_their_own_layer(ws, registry, host):
    """Whiteouts hide lower layers only (OCI image spec), whatever their place in the tar."""
    res, files = run_hostile(ws, registry, host,
                             layer(dir_("d"), file_("d/old.txt", b"old\n"), file_("x.txt", b"1")),
                             layer(file_("d/new.txt", b"new\n"), dir_("d/sub"),
                                   file_("d/sub/f.txt", b"f\n"), opaque("d"),
                                   file_("x.txt", b"2"), whiteout("x.txt")))
    assert res.code == 0, res
    assert "d/old.txt" not in files
    assert files["d/new.txt"] == ("file", b"new\n")
    assert files["d/sub/f.txt"] == ("file", b"f\n")
    assert files["x.txt"] == ("file", b"2")


def test_symlink_loop_fails_cleanly(ws, registry, host):
    res, _ = run_hostile(ws, registry, host,
                         layer(sym("loop1", "loop2"), sym("loop2", "loop1")),
                         layer(file_("loop1/x.txt", b"x\n")))
    assert res.code == 1, res
    assert "at 'loop1/x.txt': too many levels of symbolic links" in res.err, res.err


def test_a_pull_target_used_as_a_named_context(ws, registry, host):
    """The same layers reached through a `pull` target and `contexts:` are unpacked the same way."""
    before = snapshot(host)
    repo = fx.unique_repo("evil")
    digest = push_image(registry, repo, [layer(sym("w", str(host)), sym("m", str(host))),
                                         layer(whiteout("w/keep.txt"), opaque("w/sub"),
                                               dir_("m", 0o7777))])
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": f"""
            evil:
              rule: pull
              image: "{registry.host}/{repo}@{digest}"
            img:
              rule: image
              contexts: {{e: ":evil"}}
        """,
        "app/Dockerfile": "FROM scratch\nCOPY --from=e / /\n",
    })
    res = ws.run("run", "//app:all")
    assert snapshot(host) == before, f"the host changed\n{res}"
    assert res.code == 0, res
    files = image_files(ws)
    assert files["w"] == ("symlink", str(host)) and files["m"][0] == "dir"


@pytest.mark.parametrize("entry", [
    file_("n" * 120 + "\x00/etc/x", b"x"),  # a long name goes into a PAX record, NUL and all
    sym("l", "t" * 120 + "\x00/etc"),
], ids=["name", "link-target"])
def test_a_nul_in_a_name_fails_cleanly(ws, registry, host, entry):
    res, _ = run_hostile(ws, registry, host, layer(entry))
    assert res.code == 1, res
    assert "cannot unpack layer sha256:" in res.err and "null" in res.err, res.err


# -- digests that would be paths ---------------------------------------------------------------

BAD_DIGEST = "sha256:../../../../x"


def test_dotdot_digest_in_from_is_bad_input(ws, registry, tmp_path):
    res = build_from(ws, f"{registry.host}/evil@{BAD_DIGEST}")
    assert res.code == 2, res
    assert "Traceback" not in res.err, res.err
    assert "invalid digest" in res.err or "digest" in res.err


def test_dotdot_digest_in_a_pull_target_is_bad_input(ws, registry):
    ws.write({"b/BUILD.yaml": f"""
        base:
          rule: pull
          image: "{registry.host}/evil@{BAD_DIGEST}"
    """})
    res = ws.run("run", "//b:base")
    assert res.code == 2, res
    assert "Traceback" not in res.err, res.err
    assert res.err.startswith("b/BUILD.yaml:3: //b:base:"), res


def test_dotdot_layer_digest_in_a_registry_manifest_fails_cleanly(ws, url_registry, tmp_path):
    """The registry accepts a non-distributable layer it does not hold: its digest comes
    straight from the manifest and must never become a path."""
    registry = url_registry
    repo = fx.unique_repo("evil")
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [BAD_DIGEST]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": put_blob(registry, repo, config),
                           "size": len(config)},
                "layers": [{"mediaType": NONDIST_LAYER, "digest": BAD_DIGEST, "size": 10,
                            "urls": ["http://127.0.0.1:9/x"]}]}
    answer = put_manifest(registry, repo, manifest)
    assert answer.status_code == 201, answer.text
    before = sorted(p.name for p in tmp_path.iterdir())
    res = build_from(ws, f"{registry.host}/{repo}@{answer.headers['Docker-Content-Digest']}")
    assert res.code == 1, res
    assert "Traceback" not in res.err, res.err
    assert "internal error" not in res.err, res.err
    assert f"names an invalid digest '{BAD_DIGEST}'" in res.err, res.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (ws.root.parent / "x").exists() and not (ws.root / "x").exists()
