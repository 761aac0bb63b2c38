"""The real-BuildKit fixture itself: two daemons, remote builders in a private DOCKER_CONFIG,
a multi-platform RUN under QEMU, and teardown."""

from __future__ import annotations

import buildkit_fixtures as bk
import registry_fixtures as fx

registry = fx.registry
buildkit = bk.buildkit


def test_remote_builder_runs_run_per_platform(buildkit, tmp_path):
    bk.need_emulation("arm64")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "busybox-amd64").write_bytes(bk.busybox("amd64").read_bytes())
    (ctx / "busybox-arm64").write_bytes(bk.busybox("arm64").read_bytes())
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nARG TARGETARCH\nCOPY --chmod=755 busybox-${TARGETARCH} /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /arch"]\n')
    daemon = buildkit.daemon("fixture")
    name = buildkit.builder("gb-fixture", daemon)
    out = tmp_path / "out"
    buildkit.run_buildx("build", "--builder", name, "--platform", "linux/amd64,linux/arm64",
                        "--provenance=false", "-o", f"type=local,dest={out}", str(ctx))
    assert (out / "linux_amd64" / "arch").read_text().strip() == "x86_64"
    assert (out / "linux_arm64" / "arch").read_text().strip() == "aarch64"
    assert not daemon.running_builds()
    assert name in buildkit.run_buildx("ls").stdout
