"""``FROM --platform=X <named context>``: the stage starts from the context's image for X, as
BuildKit resolves it (dockerfile2llb ``resolveBaseImage`` passes the stage's platform to dockerui
``NamedContext``, which looks up ``name::X`` and then ``name`` and resolves an image for X),
whatever platform the node builds. Through the CLI, for a label context (its node for X is a
dependency of the image node) and a ``docker-image://`` context pulled from the real registry.

The toolchain image writes the platform it was built for into ``/out/built-on``; each image
copies that file from its build stage, so its content names the toolchain image it came from.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import registry_fixtures as fx
from conftest import need_tool
from test_backend_buildx import Docker
from test_native_errors import refused
from test_native_stage_platform import LINUX, push_base

from graphbuild import platforms
from graphbuild.oci.store import Store
from graphbuild.oci.unpack import read_file
from graphbuild.registry.client import RegistryClient

registry = fx.registry

HOST = str(platforms.host())
OTHER = "linux/arm64" if platforms.host().arch == "amd64" else "linux/amd64"
BOTH = ["linux/amd64", "linux/arm64"]

TOOLCHAIN = {
    "p/tc.Dockerfile": "FROM scratch\nARG TARGETARCH\nCOPY built-on-${TARGETARCH} /out/built-on\n",
    "p/built-on-amd64": "amd64\n",
    "p/built-on-arm64": "arm64\n",
    "p/built-on-s390x": "s390x\n",
}
CROSS = ("FROM --platform=$BUILDPLATFORM toolchain AS build\n"
         "FROM scratch\n"
         "COPY --from=build /out/built-on /built-on\n")


def workspace(dockerfile: str, app_platforms: list[str], tc_platforms: list[str] = BOTH,
              backend: str = "native") -> dict:
    return {
        **TOOLCHAIN,
        "p/BUILD.yaml": f"""
            toolchain:
              rule: image
              dockerfile: tc.Dockerfile
              platforms: [{", ".join(tc_platforms)}]
            app:
              rule: image
              backend: {backend}
              platforms: [{", ".join(app_platforms)}]
              contexts: {{toolchain: ":toolchain"}}
        """,
        "p/Dockerfile": dockerfile,
    }


def file_in(ws, node: str, path: str = "built-on") -> str | None:
    store = Store(Path(ws.root) / ".graphbuild" / "oci")
    desc = store.lookup(node)
    assert desc is not None, f"{node} is not in the store"
    data = read_file(store, store.read_json(desc["digest"])["layers"], path)
    return data.decode().strip() if data is not None else None


def statuses(res) -> dict[str, str]:
    return {f"{e['label']}[{e['platform']}]": e["status"] for e in res.events()
            if e["event"] == "action_finished" and e["platform"]}


def run(ws, *args: str):
    res = ws.run("run", "//p:app", "--output", "json", *args)
    assert res.code == 0, res
    return res


# -- a label context ------------------------------------------------------------------------------

def test_build_platform_stage_uses_the_build_platform_image_of_a_label_context(ws):
    """(a) Both platforms' images hold the file of the toolchain built for the build platform;
    that toolchain node is what each image node depends on, and is keyed on."""
    ws.write(workspace(CROSS, BOTH))
    run(ws)
    for plat in BOTH:
        assert file_in(ws, f"//p:app[{plat}]") == HOST.split("/")[1], plat
    # the other platform's toolchain is no input of any image: changing it rebuilds neither
    ws.write({f"p/built-on-{OTHER.split('/')[1]}": "changed\n"})
    assert statuses(run(ws)) == {f"//p:toolchain[{OTHER}]": "built",
                                 f"//p:toolchain[{HOST}]": "cached",
                                 "//p:app[linux/amd64]": "cached",
                                 "//p:app[linux/arm64]": "cached"}
    # the build platform's is an input of both
    ws.write({f"p/built-on-{HOST.split('/')[1]}": "host changed\n"})
    got = statuses(run(ws))
    assert got[f"//p:toolchain[{HOST}]"] == "built"
    assert got["//p:app[linux/amd64]"] == got["//p:app[linux/arm64]"] == "built", got
    for plat in BOTH:
        assert file_in(ws, f"//p:app[{plat}]") == "host changed", plat


def test_literal_platform_on_a_node_of_another_platform(ws):
    """(b) ``--platform=linux/arm64`` on an amd64 node: the arm64 toolchain, nothing else."""
    ws.write(workspace(CROSS.replace("$BUILDPLATFORM", "linux/arm64"), ["linux/amd64"]))
    run(ws)
    assert file_in(ws, "//p:app[linux/amd64]") == "arm64"


@pytest.mark.parametrize("backend", ["native", "buildah"])
def test_a_context_read_for_two_platforms_in_one_node(ws, backend):
    """The build stage reads arm64's toolchain, the final stage the node's (amd64) one (buildah
    is given both images, under ``toolchain::linux/arm64`` and ``toolchain``)."""
    if backend == "buildah":
        need_tool("buildah")
    ws.write(workspace("FROM --platform=linux/arm64 toolchain AS build\nFROM toolchain\n"
                       "COPY --from=build /out/built-on /built-on\n", ["linux/amd64"],
                       backend=backend))
    run(ws)
    assert file_in(ws, "//p:app[linux/amd64]") == "arm64"
    assert file_in(ws, "//p:app[linux/amd64]", "out/built-on") == "amd64"


def test_without_platform_the_node_platform_image_is_used(ws):
    ws.write(workspace("FROM toolchain AS build\nFROM scratch\n"
                       "COPY --from=build /out/built-on /built-on\n", BOTH))
    run(ws)
    for plat in BOTH:
        assert file_in(ws, f"//p:app[{plat}]") == plat.split("/")[1], plat


@pytest.mark.parametrize("flag", ["linux/s390x", "$BUILDPLATFORM"])
def test_context_image_lacking_the_stage_platform_is_exit_2(ws, flag):
    """(c) One message at the FROM line naming the image and the platform, and a hint."""
    tc = "linux/s390x" if flag == "$BUILDPLATFORM" else HOST
    ws.write(workspace(CROSS.replace("$BUILDPLATFORM", flag), BOTH, tc_platforms=[tc]))
    want = "linux/s390x" if flag != "$BUILDPLATFORM" else HOST
    refused(ws, "p/Dockerfile:1: //p:app", f"context 'toolchain' is read for {want}",
            f"//p:toolchain does not build {want}",
            hint=f"add {want} to the platforms of //p:toolchain")


def test_run_platform_that_drops_the_stage_platform_is_exit_2_with_its_hint(ws):
    """`run --platform OTHER` keeps only OTHER's nodes: a build stage reading the toolchain for
    the build platform then lacks it, and the hint names the run's --platform."""
    ws.write(workspace(CROSS, BOTH))
    refused(ws, "p/Dockerfile:1: //p:app", f"context 'toolchain' is read for {HOST}",
            hint=f"add {HOST} to --platform", patterns=("//p:all", "--platform", OTHER))


def test_buildah_is_given_the_image_for_the_stage_platform(ws):
    """An external tool takes one image per context name: the one for the stage's platform."""
    need_tool("buildah")
    ws.write(workspace(CROSS.replace("$BUILDPLATFORM", "linux/arm64"), ["linux/amd64"],
                       backend="buildah"))
    run(ws)
    assert file_in(ws, "//p:app[linux/amd64]") == "arm64"


def test_buildx_cannot_take_a_context_for_two_platforms(ws, tmp_path, monkeypatch):
    buildx_double(tmp_path, monkeypatch)
    ws.write(workspace("FROM --platform=linux/arm64 toolchain AS build\nFROM toolchain\n"
                       "RUN true\nCOPY --from=build /out/built-on /built-on\n", ["linux/amd64"],
                       backend="buildx"))
    refused(ws, "p/Dockerfile:1: //p:app", "read for linux/arm64", "buildx",
            hint="second name under contexts")


def buildx_double(tmp_path: Path, monkeypatch) -> None:
    """A `docker` with buildx first on PATH: analysis asks it `docker buildx version` only."""
    double = Docker(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{double.dir}{os.pathsep}{os.environ['PATH']}")


# -- a docker-image:// context --------------------------------------------------------------------

def test_docker_image_context_is_pulled_for_the_stage_platform(ws, registry):
    """(d) The index behind ``docker-image://ref@sha256:`` resolved for the build platform."""
    tagged, layers = push_base(registry, LINUX)
    repo = tagged.split("/", 1)[1].rsplit(":", 1)[0]
    client = RegistryClient(registry.host, retry=fx.fast_retry())
    pinned = f"{registry.host}/{repo}@{client.head_manifest(repo, 'v1').digest}"
    ws.write({
        "p/BUILD.yaml": f"""
            app:
              rule: image
              platforms: [linux/amd64, linux/arm64]
              contexts: {{toolchain: "docker-image://{pinned}"}}
            node:
              rule: image
              dockerfile: node.Dockerfile
              platforms: [linux/amd64, linux/arm64]
              contexts: {{toolchain: "docker-image://{pinned}"}}
        """,
        "p/Dockerfile": CROSS.replace("/out/built-on", "/platform.txt"),
        "p/node.Dockerfile": "FROM toolchain\n",
    })
    res = ws.run("run", "//p:all")
    assert res.code == 0, res
    store = Store(Path(ws.root) / ".graphbuild" / "oci")
    for plat in BOTH:
        assert file_in(ws, f"//p:app[{plat}]") == HOST, plat
        # no --platform: the node's own platform, as before
        layer = store.read_json(store.lookup(f"//p:node[{plat}]")["digest"])["layers"][0]
        assert layer["digest"] == layers[plat], plat


# -- a base image reference read for two platforms -----------------------------------------------

def test_a_reference_read_for_the_build_platform_and_the_node_platform(ws, registry):
    """``FROM --platform=$BUILDPLATFORM ref AS tools`` and ``FROM ref``: each stage starts from
    its own platform's image (one reference, two pulls), not both from the build platform's."""
    tagged, layers = push_base(registry, LINUX)
    ws.write({
        "p/BUILD.yaml": "app: {rule: image, platforms: [linux/amd64, linux/arm64]}\n",
        "p/Dockerfile": f"FROM --platform=$BUILDPLATFORM {tagged} AS tools\nFROM {tagged}\n"
                        "COPY --from=tools /platform.txt /tools.txt\n",
    })
    run(ws)
    store = Store(Path(ws.root) / ".graphbuild" / "oci")
    for plat in BOTH:
        manifest = store.read_json(store.lookup(f"//p:app[{plat}]")["digest"])
        assert manifest["layers"][0]["digest"] == layers[plat], plat
        assert file_in(ws, f"//p:app[{plat}]", "tools.txt") == HOST, plat


def test_buildx_cannot_take_a_reference_for_two_platforms(ws, registry, tmp_path, monkeypatch):
    """buildx takes one image per --build-context name: exit 2 before anything runs (it used to
    be given the build platform's image for both stages)."""
    buildx_double(tmp_path, monkeypatch)
    tagged, _ = push_base(registry, LINUX)
    ws.write({
        "p/BUILD.yaml": "app: {rule: image, backend: buildx, platforms: [linux/amd64, "
                        "linux/arm64]}\n",
        "p/Dockerfile": f"FROM --platform=linux/s390x {tagged} AS tools\nFROM {tagged}\n"
                        "RUN true\nCOPY --from=tools /platform.txt /tools.txt\n",
    })
    refused(ws, "p/Dockerfile:1: //p:app", f"image {tagged} is read for linux/s390x",
            "buildx cannot be given", hint="backend: buildah or native")
