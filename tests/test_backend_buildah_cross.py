"""The cross-compile pattern with the real buildah (issue 10): ``FROM --platform=$BUILDPLATFORM
base AS build`` runs its RUN on this machine, and ``FROM base`` takes each target platform's
image, for a base that is an image target given as a named context and for one pulled from the
registry. Each platform's base holds its own static busybox, so a build stage that took the
arm64 image would say aarch64 (or fail), not x86_64. buildah runs as installed: Debian's 1.28,
rootful, ``--storage-driver vfs --isolation chroot``."""

from __future__ import annotations

import os
import shutil

import buildkit_fixtures as bk
import pytest
import registry_fixtures as fx
from conftest import need_tool
from test_buildx_real import config, file_in
from test_native_errors import refused

from graphbuild import platforms

registry = fx.registry

HOST = platforms.host()
OTHER = "linux/arm64" if HOST.arch != "arm64" else "linux/amd64"
ARCHES = ("amd64", "arm64")
APPLETS = ("sh", "uname", "mkdir", "echo", "cat")

CROSS = """\
FROM --platform=$BUILDPLATFORM {base} AS build
ARG TARGETARCH TARGETPLATFORM BUILDPLATFORM
RUN mkdir /out && uname -m > /out/ran-on && echo $TARGETARCH > /out/target-arch \\
    && echo "$BUILDPLATFORM $TARGETPLATFORM" > /out/platforms
FROM {base}
COPY --from=build /out /out
"""


def base_image(ws, tags: str = "[]") -> None:
    """//base:base for amd64 and arm64, built natively: that platform's static busybox, a few
    applet links and /base.txt naming the platform."""
    need_tool("buildah")
    for arch in ARCHES:
        bin_dir = ws.path(f"base/rootfs-{arch}/bin")
        bin_dir.mkdir(parents=True)
        shutil.copyfile(bk.busybox(arch), bin_dir / "busybox")
        (bin_dir / "busybox").chmod(0o755)
        for applet in APPLETS:
            (bin_dir / applet).symlink_to("busybox")
        ws.write({f"base/{arch}.txt": f"{arch} base\n"})
    ws.write({
        "base/BUILD.yaml": f"""
            base: {{rule: image, backend: native, platforms: [linux/amd64, linux/arm64]}}
            m: {{rule: manifest, images: [":base"], tags: {tags}}}
        """,
        "base/Dockerfile": "FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\n"
                           "COPY ${TARGETARCH}.txt /base.txt\n",
    })


def app(ws, base: str, contexts: str = "{}") -> None:
    ws.write({
        "app/BUILD.yaml": f"""
            app:
              rule: image
              backend: buildah
              platforms: [linux/amd64, linux/arm64]
              contexts: {contexts}
        """,
        "app/Dockerfile": CROSS.format(base=base),
    })


@pytest.mark.parametrize("source", ["context", "registry"])
def test_cross_compile_pattern(ws, registry, source):
    """The build stage ran on the build platform in both images; the final stage is each
    target platform's base, and the config names that platform. No emulation note: the only
    RUN ran natively."""
    if source == "context":
        base_image(ws)
        app(ws, "base", "{base: //base}")
    else:
        ref = f"{registry.host}/{fx.unique_repo('xbase')}:v1"
        base_image(ws, f'["{ref}"]')
        res = ws.run("run", "//base:m", "--push")
        assert res.code == 0, res
        app(ws, ref)
    res = ws.run("run", "//app:app", "--output", "json")
    assert res.code == 0, res
    notes = {e["node"]: e["notes"] for e in res.events() if e.get("event") == "action_finished"}
    for arch in ARCHES:
        node = f"//app:app[linux/{arch}]"
        assert file_in(ws, node, "out/ran-on") == f"{os.uname().machine}\n", node
        assert file_in(ws, node, "out/target-arch") == f"{arch}\n", node
        assert file_in(ws, node, "out/platforms") == f"{HOST} linux/{arch}\n", node
        assert file_in(ws, node, "base.txt") == f"{arch} base\n", node
        assert config(ws, node)["architecture"] == arch
        assert not any("emulated" in n for n in notes[node]), notes[node]


COPY_IMAGE = """\
FROM --platform=$BUILDPLATFORM base AS build
COPY --from=assets /base.txt /assets.txt
RUN mkdir /out && cat /assets.txt > /out/assets
FROM base
COPY --from=build /out /out
"""


def test_copy_from_an_image_in_a_build_platform_stage_is_exit_2(ws):
    """COPY --from=<image> reads the target platform's image (BuildKit); buildah looks it up
    for the stage's platform and fails midway. So: exit 2 at the line, before anything runs;
    the hint's way (copy from a stage FROM that image) builds."""
    base_image(ws)
    app(ws, "base", "{base: //base, assets: //base}")
    ws.write({"app/Dockerfile": COPY_IMAGE})
    refused(ws, "app/Dockerfile:2: //app:app",
            f"COPY --from=assets in a stage built for {HOST} (FROM --platform): buildah",
            f"cannot read the {OTHER} image of assets there",
            hint="start a stage from it (FROM assets AS files) and COPY --from=files, or use "
                 "backend: buildx", patterns=("//app:app",))
    ws.write({"app/Dockerfile": "FROM assets AS files\n"
                                + COPY_IMAGE.replace("--from=assets", "--from=files")})
    res = ws.run("run", "//app:app")
    assert res.code == 0, res
    for arch in ARCHES:
        assert file_in(ws, f"//app:app[linux/{arch}]", "out/assets") == f"{arch} base\n"


def test_a_mount_from_an_image_in_a_build_platform_stage_is_exit_2(ws):
    """RUN --mount=from=<image> is read like COPY --from: the same refusal, at the RUN line."""
    base_image(ws)
    app(ws, "base", "{base: //base, assets: //base}")
    ws.write({"app/Dockerfile": COPY_IMAGE.replace(
        "COPY --from=assets /base.txt /assets.txt\nRUN mkdir /out && cat /assets.txt",
        "RUN --mount=type=bind,from=assets,target=/a mkdir /out && cat /a/base.txt")})
    refused(ws, "app/Dockerfile:2: //app:app",
            f"RUN --mount=from=assets in a stage built for {HOST} (FROM --platform): buildah",
            hint="start a stage from it (FROM assets AS files) and RUN --mount=from=files, or "
                 "use backend: buildx", patterns=("//app:app",))


DOCKERFILE = """\
ARG REG=example.com
FROM --platform=$BUILDPLATFORM \\
    ${REG}/tools:1 AS Tools
RUN make
FROM --platform=linux/s390x unused AS never
FROM --platform=$BUILDPLATFORM scratch AS files
COPY --from=tools /bin /bin
FROM tools AS again
FROM ${REG}/tools:1
COPY --from=again / /
COPY --from=files / /
"""


def test_the_dockerfile_buildah_reads(tmp_path):
    """Each FROM of a stage to build names its platform and the build context holding its
    image (a reference read for two platforms: ``ref::os/arch`` for the build platform), on the
    same lines; the rest is as written. Without FROM --platform or expansion: the file itself."""
    from graphbuild.backends import buildah
    from graphbuild.backends.base import BuildRequest, NamedContext
    from graphbuild.backends.plan import make_plan

    node = platforms.parse("linux/riscv64")
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    plan = make_plan(DOCKERFILE, "Dockerfile", "//:img", {}, node, HOST, None, set())
    ref = "example.com/tools:1"
    contexts = {f"ref:{ref}": NamedContext(ref, "image"),
                f"ref:{ref}::{HOST}": NamedContext(f"{ref}::{HOST}", "image")}
    req = BuildRequest(label="//:img", node="//:img[linux/riscv64]", platform=node,
                       context_dir=tmp_path, dockerfile=tmp_path / "Dockerfile",
                       dockerfile_rel="Dockerfile", plan=plan, build_args={}, target=None,
                       labels={}, contexts=contexts)
    path = buildah.dockerfile(req, tmp_path)
    assert path == tmp_path / "dockerfile" / "Dockerfile"
    want = DOCKERFILE.split("\n")
    want[1:3] = [f"FROM --platform={HOST} {ref}::{HOST} AS Tools", ""]
    want[5] = "FROM --platform=linux/riscv64 scratch AS files"  # BuildKit: the target's
    want[7] = f"FROM --platform={HOST} tools AS again"  # a stage's: its base stage's
    want[8] = f"FROM --platform=linux/riscv64 {ref}"
    assert path.read_text().split("\n") == want
    plain = "FROM example.com/tools:1\nRUN make\n"
    (tmp_path / "Dockerfile").write_text(plain)
    req.plan = make_plan(plain, "Dockerfile", "//:img", {}, node, HOST, None, set())
    assert buildah.dockerfile(req, tmp_path) == tmp_path / "Dockerfile"
