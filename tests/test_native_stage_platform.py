"""The platform in the image config when the final stage is ``FROM --platform=X`` and the node
builds Y, through the CLI against the real registry.

BuildKit (``dockerfile2llb.finalizeResultImage``) writes the *target* platform into the config
whenever one is given (``docker buildx build --platform Y``, which graphbuild always passes), and
only the stage's base image decides what the layers hold. The native backend does the same, so
an image's plain-tag index and a manifest over it list one entry per node platform, each agreeing
with its config, and push's index check accepts them. An os.version inherited from a base image
for another os/arch is dropped, as BuildKit drops it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest
import registry_fixtures as fx
from test_native_errors import refused

from graphbuild import platforms
from graphbuild.oci.store import Store
from graphbuild.registry.client import RegistryClient
from graphbuild.registry.transfer import PushPlan, PushTarget, publish

registry = fx.registry

LINUX = [{"os": "linux", "architecture": "amd64"},
         {"os": "linux", "architecture": "arm64", "variant": "v8"}]
# An image config names arm64 without its default variant v8, as BuildKit's does (containerd's
# platforms.Normalize); index entries keep it.
CONFIG_LINUX = [LINUX[0], {"os": "linux", "architecture": "arm64"}]
WINDOWS = [{"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.1879"},
           {"os": "windows", "architecture": "arm64", "variant": "v8",
            "os.version": "10.0.17763.1879"}]


def push_base(registry, plats: list[dict]) -> tuple[str, dict[str, str]]:
    """An index over one image per platform, pushed as REF:v1; (ref, platform -> layer digest).
    Each image's single layer names its platform, so a build shows which one it started from."""
    source = fx.DictSource()
    repo = fx.unique_repo("base")
    entries, layers = [], {}
    for plat in plats:
        name = str(platforms.from_oci(plat))
        tar_bytes = _tar({"platform.txt": f"{name}\n".encode()})
        layer = source.add(gzip.compress(tar_bytes, mtime=0), fx.OCI_LAYER)
        config = source.add_json({**plat, "created": "2024-01-01T00:00:00Z", "config": {},
                                  "rootfs": {"type": "layers", "diff_ids": [_sha(tar_bytes)]}},
                                 fx.OCI_CONFIG)
        manifest = source.add_json({"schemaVersion": 2, "mediaType": fx.OCI_MANIFEST,
                                    "config": config, "layers": [layer]}, fx.OCI_MANIFEST)
        entries.append({**manifest, "platform": plat})
        layers[name] = layer["digest"]
    index = source.add_json({"schemaVersion": 2, "mediaType": fx.OCI_INDEX,
                             "manifests": entries}, fx.OCI_INDEX)
    plan = PushPlan((PushTarget.to(f"{registry.host}/{repo}", [index],
                                   {"v1": index["digest"]}),))
    publish(plan, source, {registry.host: RegistryClient(registry.host,
                                                         retry=fx.fast_retry())})
    return f"{registry.host}/{repo}:v1", layers


def _tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(ws, node: str) -> tuple[dict, dict]:
    """(manifest, config) of a node (or an index, with an empty config) read from the store."""
    s = Store(ws.root / ".graphbuild" / "oci")
    desc = s.lookup(node)
    assert desc is not None, f"{node} is not in the store"
    manifest = s.read_json(desc["digest"])
    config = s.read_json(manifest["config"]["digest"]) if "config" in manifest else {}
    return manifest, config


def config_platform(config: dict) -> dict:
    return {k: config[k] for k in ("os", "architecture", "variant", "os.version") if k in config}


def other_than_host() -> str:
    return "linux/arm64" if platforms.host().arch == "amd64" else "linux/amd64"


# -- the config names the node's platform, whatever the final FROM --platform says ---------------

@pytest.mark.parametrize("flag", ["linux/amd64", "$BUILDPLATFORM", "$TARGETPLATFORM", "$BASE"])
def test_final_stage_from_platform_keeps_the_node_platform_in_the_config(ws, registry, flag):
    """The base is the image of the expanded --platform; the config, the index entries of the
    plain tag and of a manifest are the node's platform; push's index check accepts them."""
    base, layers = push_base(registry, LINUX)
    out = f"{registry.host}/{fx.unique_repo('out')}"
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64, linux/arm64]\n",
        "c/BUILD.yaml": f"""
            img:
              rule: image
              build_args: {{BASE: {other_than_host()}}}
              tags: ["{out}:img"]
            m:
              rule: manifest
              images: [":img"]
              require_platforms: [linux/amd64, linux/arm64]
              tags: ["{out}:m"]
        """,
        "c/Dockerfile": f"ARG BASE\nFROM --platform={flag} {base}\nCOPY a.txt /a.txt\n",
        "c/a.txt": "A\n",
    })
    res = ws.run("run", "//c:all", "--push")
    assert res.code == 0, res
    expected_base = {"linux/amd64": "linux/amd64", "$BUILDPLATFORM": str(platforms.host()),
                     "$BASE": other_than_host()}
    for node_plat, plat in (("linux/amd64", CONFIG_LINUX[0]), ("linux/arm64", CONFIG_LINUX[1])):
        manifest, config = image(ws, f"//c:img[{node_plat}]")
        assert config_platform(config) == plat, node_plat
        started_from = expected_base.get(flag, node_plat)  # $TARGETPLATFORM: the node's own
        assert manifest["layers"][0]["digest"] == layers[started_from], node_plat
    for label in ("//c:img", "//c:m"):
        index, _ = image(ws, label)
        assert [e["platform"] for e in index["manifests"]] == LINUX, label


# -- os.version: the base's only while it is for the same os/arch --------------------------------

@pytest.mark.parametrize(("node", "os_version"), [("windows/amd64", "10.0.17763.1879"),
                                                  ("windows/arm64", None)])
def test_os_version_of_a_base_for_another_platform_is_dropped(ws, registry, node, os_version):
    base, layers = push_base(registry, WINDOWS)
    ws.write({
        "c/BUILD.yaml": f"img: {{rule: image, platforms: [{node}]}}\n",
        "c/Dockerfile": f"FROM --platform=windows/amd64 {base} AS base\nFROM base\n"
                        "LABEL built=yes\n",
    })
    res = ws.run("run", "//c:img")
    assert res.code == 0, res
    manifest, config = image(ws, f"//c:img[{node}]")
    assert manifest["layers"][0]["digest"] == layers["windows/amd64"]
    assert (config["os"], config["architecture"]) == tuple(node.split("/"))
    assert config.get("os.version") == os_version


# -- bad input: the expanded --platform of the final stage must be a platform --------------------

@pytest.mark.parametrize(("value", "hint"), [("linux/aarch64", "linux/arm64"),
                                             ("", "os/arch")])
def test_final_stage_platform_from_a_build_arg_must_name_a_platform(ws, value, hint):
    build = f"img: {{rule: image, platforms: [linux/amd64], build_args: {{P: '{value}'}}}}\n"
    ws.write({"p/BUILD.yaml": build, "p/a.txt": "A\n",
              "p/Dockerfile": "ARG P\nFROM scratch AS s\nCOPY a.txt /a\n"
                              "FROM --platform=$P scratch\nCOPY --from=s /a /b\n"})
    refused(ws, "p/Dockerfile:4: //p:img", "FROM --platform", hint=hint)


@pytest.mark.parametrize("flag", ["linux/amd64", "$BUILDPLATFORM"])
def test_scratch_final_stage_is_the_node_platform_without_a_registry(ws, flag):
    """``FROM --platform=X scratch``: BuildKit starts from emptyImage(target platform)."""
    ws.write({"p/BUILD.yaml": "img: {rule: image, platforms: [linux/arm64, linux/amd64],"
                              " tags: ['img:v1']}\n",
              "p/Dockerfile": f"FROM --platform={flag} scratch\nCOPY a.txt /a\n",
              "p/a.txt": "A\n"})
    res = ws.run("run", "//p:img")
    assert res.code == 0, res
    for node_plat, plat in (("linux/amd64", CONFIG_LINUX[0]), ("linux/arm64", CONFIG_LINUX[1])):
        _, config = image(ws, f"//p:img[{node_plat}]")
        assert config_platform(config) == plat, node_plat
    index, _ = image(ws, "//p:img")
    assert sorted(str(platforms.from_oci(e["platform"])) for e in index["manifests"]) == [
        "linux/amd64", "linux/arm64"]
