"""``docker manifest inspect`` output: Go's JSON formatting, docker/cli's golden files, and a
byte-for-byte comparison with the real Docker CLI reading a real registry (when installed)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci_schema import put_image, put_index, require_tool, two_platform_index, validate

from graphbuild.oci import mediatypes as mt
from graphbuild.oci.inspect import (
    format_manifest_inspect,
    format_verbose,
    go_compact,
    go_indent,
    normalize_reference,
)
from graphbuild.oci.store import Store

# -- Go's json.Indent and the encoder's compaction ---------------------------------------------


@pytest.mark.parametrize(
    "src, want",
    [
        (b"{}", "{}"),
        (b" [ ] ", "[] "),  # leading space dropped, trailing kept, as Go does
        (b'{"a":[],"b":{}}', '{\n\t"a": [],\n\t"b": {}\n}'),
        (b'{"a" : [1, {"b":null}]}', '{\n\t"a": [\n\t\t1,\n\t\t{\n\t\t\t"b": null\n\t\t}\n\t]\n}'),
        (b'{"s":"x, {y}: [\\"z\\"]\\\\"}\n', '{\n\t"s": "x, {y}: [\\"z\\"]\\\\"\n}\n'),
        ('{"é":"\u2028<"}'.encode(), '{\n\t"é": "\u2028<"\n}'),
    ],
)
def test_go_indent(src: bytes, want: str) -> None:
    assert go_indent(src, "", "\t") == want


def test_go_indent_refuses_invalid_json() -> None:
    with pytest.raises(ValueError):
        go_indent(b'{"a":', "", "\t")


def test_go_compact_escapes_like_the_go_encoder() -> None:
    src = '{ "k" : "a<b>&c \u2028\u2029 é \\" ", "n": [1, 2] }\n'.encode()
    assert go_compact(src) == '{"k":"a\\u003cb\\u003e\\u0026c \\u2028\\u2029 é \\" ","n":[1,2]}'


@pytest.mark.parametrize(
    "ref, want",
    [
        ("myapp", "docker.io/library/myapp:latest"),
        ("myapp:v1", "docker.io/library/myapp:v1"),
        ("org/app:v1", "docker.io/org/app:v1"),
        ("index.docker.io/app", "docker.io/library/app:latest"),
        ("127.0.0.1:5000/myapp:v1", "127.0.0.1:5000/myapp:v1"),
        ("localhost/a/b", "localhost/a/b:latest"),
        ("example.com/alpine@sha256:" + "a" * 64, "example.com/alpine@sha256:" + "a" * 64),
    ],
)
def test_normalize_reference(ref: str, want: str) -> None:
    assert normalize_reference(ref) == want


# -- docker/cli's own golden files (cli/command/manifest/testdata) -----------------------------

LIST_DIGEST = "sha256:7328f6f8b41890597575cbaadc884e7386ae0acc53b747401ebce5cf0d62abcd"
GOLDEN_LIST = """{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 528,
         "digest": "%s",
         "platform": {
            "architecture": "amd64",
            "os": "linux"
         }
      },
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 528,
         "digest": "%s",
         "platform": {
            "architecture": "amd64",
            "os": "linux"
         }
      }
   ]
}
""".replace("%s", LIST_DIGEST)


def test_manifest_list_matches_docker_golden() -> None:
    entry = {
        "digest": LIST_DIGEST,
        "size": 528,
        "mediaType": mt.DOCKER_MANIFEST,
        "platform": {"os": "linux", "architecture": "amd64"},
        "annotations": {"x": "dropped"},
    }
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": [entry, entry]}
    ).encode()
    assert format_manifest_inspect(raw, mt.DOCKER_MANIFEST_LIST) == GOLDEN_LIST


def test_index_of_oci_manifests_prints_as_oci_index() -> None:
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": LIST_DIGEST, "size": 1}
    raw = json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()
    out = json.loads(format_manifest_inspect(raw, mt.OCI_INDEX))
    assert out["mediaType"] == mt.OCI_INDEX
    assert out["manifests"][0]["platform"] == {"architecture": "", "os": ""}


ANNOTATE_RAW = (
    "ewogICAic2NoZW1hVmVyc2lvbiI6IDIsCiAgICJtZWRpYVR5cGUiOiAiYXBwbGljYXRpb24vdm5kLmRvY2tlci5kaXN0"
    "cmlidXRpb24ubWFuaWZlc3QudjIranNvbiIsCiAgICJjb25maWciOiB7CiAgICAgICJtZWRpYVR5cGUiOiAiYXBwbGlj"
    "YXRpb24vdm5kLmRvY2tlci5jb250YWluZXIuaW1hZ2UudjEranNvbiIsCiAgICAgICJzaXplIjogMTUyMCwKICAgICAg"
    "ImRpZ2VzdCI6ICJzaGEyNTY6NzMyOGY2ZjhiNDE4OTA1OTc1NzVjYmFhZGM4ODRlNzM4NmFlMGFjYzUzYjc0NzQwMWVi"
    "Y2U1Y2YwZDYyNDU2MCIKICAgfSwKICAgImxheWVycyI6IFsKICAgICAgewogICAgICAgICAibWVkaWFUeXBlIjogImFw"
    "cGxpY2F0aW9uL3ZuZC5kb2NrZXIuaW1hZ2Uucm9vdGZzLmRpZmYudGFyLmd6aXAiLAogICAgICAgICAic2l6ZSI6IDE5"
    "OTA0MDIsCiAgICAgICAgICJkaWdlc3QiOiAic2hhMjU2Ojg4Mjg2ZjQxNTMwZTkzZGZmZDRiOTY0ZTFkYjIyY2U0OTM5"
    "ZmZmYTRhNGM2NjVkYWI4NTkxZmJhYjAzZDQ5MjYiCiAgICAgIH0KICAgXQp9"
)
GOLDEN_ANNOTATE = """{
\t"Ref": "example.com/alpine:3.0",
\t"Descriptor": {
\t\t"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
\t\t"digest": "sha256:1072e499f3f655a032e88542330cf75b02e7bdf673278f701d7ba61629ee3ebe",
\t\t"size": 528,
\t\t"platform": {
\t\t\t"architecture": "arm",
\t\t\t"os": "freebsd",
\t\t\t"os.version": "1",
\t\t\t"os.features": [
\t\t\t\t"feature1"
\t\t\t],
\t\t\t"variant": "v7"
\t\t}
\t},
\t"Raw": "%s",
\t"SchemaV2Manifest": {
\t\t"schemaVersion": 2,
\t\t"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
\t\t"config": {
\t\t\t"mediaType": "application/vnd.docker.container.image.v1+json",
\t\t\t"size": 1520,
\t\t\t"digest": "sha256:7328f6f8b41890597575cbaadc884e7386ae0acc53b747401ebce5cf0d624560"
\t\t},
\t\t"layers": [
\t\t\t{
\t\t\t\t"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
\t\t\t\t"size": 1990402,
\t\t\t\t"digest": "sha256:88286f41530e93dffd4b964e1db22ce4939fffa4a4c665dab8591fbab03d4926"
\t\t\t}
\t\t]
\t}
}
""".replace("%s", ANNOTATE_RAW)


def test_verbose_manifest_matches_docker_golden() -> None:
    raw = base64.b64decode(ANNOTATE_RAW)
    config = {
        "architecture": "arm",
        "os": "freebsd",
        "os.version": "1",
        "os.features": ["feature1"],
        "variant": "v7",
        "rootfs": {},
    }
    fetch = {json.loads(raw)["config"]["digest"]: json.dumps(config).encode()}.__getitem__
    out = format_verbose("example.com/alpine:3.0", raw, mt.DOCKER_MANIFEST, fetch)
    assert out == GOLDEN_ANNOTATE


def test_plain_manifest_is_the_raw_bytes_tab_indented(tmp_path: Path) -> None:
    store = Store(tmp_path / "oci")
    image = put_image(store, "amd64")
    raw = store.read_bytes(image["digest"])
    out = format_manifest_inspect(raw, mt.OCI_MANIFEST)
    assert out.endswith("}\n") and '\n\t"config": {\n\t\t"digest"' in out
    assert json.loads(out) == json.loads(raw)


def test_nested_index_is_refused() -> None:
    entry = {"mediaType": mt.OCI_INDEX, "digest": LIST_DIGEST, "size": 1}
    raw = json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()
    with pytest.raises(ValueError):
        format_manifest_inspect(raw, mt.OCI_INDEX)


# -- the real Docker CLI against a real registry ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("docker") is None:
        pytest.skip("the Docker CLI is not installed (only needed for this comparison)")
    binary = require_tool("docker-registry")
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {root / 'data'}}}, "
        f"delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"registry did not listen on {port}")


def _odd_manifest(store: Store) -> dict:
    """A manifest whose bytes are not canonical: odd indentation, key order, escapes, non-ASCII."""
    base = store.read_json(put_image(store, "amd64", files={"odd": b"1"})["digest"])
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "layers": base["layers"],
        "config": base["config"],
        "annotations": {"z": 'a<b>&c \u2028 é "q" \\ \t', "a": "<"},
    }
    validate("manifest", doc)
    digest, size = store.put_bytes(json.dumps(doc, indent=3, ensure_ascii=False).encode() + b"\n")
    return {
        "mediaType": mt.OCI_MANIFEST,
        "digest": digest,
        "size": size,
        "platform": {"architecture": "amd64", "os": "linux", "os.features": ["f1"]},
    }


def _docker_typed(store: Store) -> dict:
    """A Docker media-type manifest list over one Docker v2 manifest."""
    base = store.read_json(put_image(store, "arm", files={"d": b"2"}, variant="v7")["digest"])
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {**base["config"], "mediaType": mt.DOCKER_CONFIG},
        "layers": [{**x, "mediaType": mt.DOCKER_LAYER_GZIP} for x in base["layers"]],
    }
    child = {
        **store.put_json(manifest, mt.DOCKER_MANIFEST),
        "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
    }
    return store.put_json(
        {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": [child]},
        mt.DOCKER_MANIFEST_LIST,
    )


def _dir_layout(store: Store, desc: dict, path: Path) -> str:
    """skopeo's ``dir:`` transport: the OCI layout transport ignores Docker media types."""
    path.mkdir()
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    shutil.copy(store.blob_path(desc["digest"]), path / "manifest.json")
    for d in store.walk(desc):
        name = d["digest"][7:] + (".manifest.json" if mt.is_manifest(d["mediaType"]) else "")
        shutil.copy(store.blob_path(d["digest"]), path / name)
    return f"dir:{path}"


@pytest.fixture(scope="module")
def pushed(registry: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict]:
    require_tool("skopeo")
    work = tmp_path_factory.mktemp("store")
    store = Store(work / "oci")
    index, amd64, _ = two_platform_index(store)
    odd = _odd_manifest(store)
    images = {
        "index": index,
        "amd64": amd64,
        "odd": odd,
        "oddindex": put_index(store, [odd, amd64]),
        "docker": _docker_typed(store),
    }
    for tag, desc in images.items():
        if tag == "docker":
            source = _dir_layout(store, desc, work / tag)
        else:
            store.set_refs(f"//t:{tag}", desc, [f"t:{tag}"])
            source = f"oci:{store.root}:t:{tag}"
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--all",
                "--dest-tls-verify=false",
                source,
                f"docker://{registry}/t:{tag}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return store, images


@pytest.mark.parametrize("tag", ["index", "amd64", "odd", "oddindex", "docker"])
@pytest.mark.parametrize("verbose", [False, True])
def test_matches_docker_manifest_inspect(
    registry: str, pushed: tuple[Store, dict], tag: str, verbose: bool, tmp_path: Path
) -> None:
    store, images = pushed
    ref = f"{registry}/t:{tag}"
    args = ["docker", "manifest", "inspect", "--insecure", *(["--verbose"] if verbose else []), ref]
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    proc = subprocess.run(args, check=False, capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    desc = images[tag]
    raw = store.read_bytes(desc["digest"])
    if verbose:
        ours = format_verbose(ref, raw, desc["mediaType"], store.read_bytes)
    else:
        ours = format_manifest_inspect(raw, desc["mediaType"])
    assert ours == proc.stdout.decode()
