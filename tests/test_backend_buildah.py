"""The buildah backend against the real buildah (issue 5): RUN on a base image the test makes from
Debian's static busybox (there is no network), the result in the store, tagged, and read by
skopeo and umoci; a manifest over a buildah-built and a native-built image; reproducibility;
errors at their Dockerfile line. buildah runs as installed: rootful, `--storage-driver vfs
--isolation chroot`. Under CI=true a missing buildah or busybox-static fails these tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import registry_fixtures as fx
from conftest import need_tool
from oci_schema import validate_store

from graphbuild import platforms
from graphbuild.backends import buildah
from graphbuild.backends.base import BuildRequest, NamedContext
from graphbuild.oci.store import Store

registry = fx.registry

HOST = platforms.host()
OTHER = "linux/arm64" if HOST.arch != "arm64" else "linux/amd64"
OWN = "linux/amd64" if OTHER == "linux/arm64" else "linux/arm64"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _static(path: str) -> bool:
    """An ELF executable without a PT_INTERP program header needs no dynamic loader."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


@pytest.fixture(scope="module")
def busybox() -> tuple[str, list[str]]:
    """Debian's busybox-static: (its path, its applets)."""
    need_tool("buildah")
    path = need_tool("busybox")
    if not _static(path):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is not static: CI installs busybox-static")
        pytest.skip(f"{path} is dynamically linked; install busybox-static")
    applets = subprocess.run([path, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    return path, applets


def base_files(ws, busybox, arches=f"[{OWN}, {OTHER}]") -> None:
    """//base:base, built natively FROM scratch: busybox and its applet links. Its OTHER image
    holds the same host binary, so buildah runs RUN for OTHER without an emulator."""
    path, applets = busybox
    bin_dir = ws.path("base/rootfs/bin")
    bin_dir.mkdir(parents=True)
    shutil.copy(path, bin_dir / "busybox")
    for applet in applets:
        if applet != "busybox":
            (bin_dir / applet).symlink_to("busybox")
    ws.write({
        "base/BUILD.yaml": f"base: {{rule: image, backend: native, platforms: {arches}}}\n",
        "base/Dockerfile": "FROM scratch\nCOPY rootfs/ /\n",
    })


APP = {
    "app/BUILD.yaml": f"""
        app:
          rule: image
          backend: auto
          platforms: [{OWN}, {OTHER}]
          target: final
          contexts: {{base: //base:base, assets: assets}}
          build_args: {{GREETING: hello}}
          labels: {{org.example.team: build}}
          tags: ["app:{{arch}}"]
        plain:
          rule: image
          backend: native
          platforms: [{OTHER}]
          dockerfile: Dockerfile.plain
        release:
          rule: manifest
          images: ["//app:app[{OWN}]", "//app:plain[{OTHER}]"]
          tags: [release:1]
    """,
    "app/Dockerfile": """
        FROM base AS build
        ARG GREETING=hi
        RUN echo "$GREETING from $(uname -s)" > /hello && mkdir -p /srv && echo built > /srv/out

        FROM base AS final
        COPY --from=build /hello /srv/out /
        COPY --from=assets asset.txt /asset.txt
        COPY f.txt /f.txt
        RUN cat /hello /asset.txt > /both

        FROM base AS never
        RUN false
    """,
    "app/f.txt": "f\n",
    "app/assets/asset.txt": "asset\n",
    "app/Dockerfile.plain": "FROM scratch\nCOPY f.txt /f.txt\n",
}


def no_buildx(tmp_path: Path, monkeypatch) -> None:
    """A `docker` without the buildx plugin first on PATH, so `auto` means buildah here."""
    bin_dir = tmp_path / "nobuildx"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\necho \"docker: 'buildx' is not a docker "
                                    "command.\" >&2\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def store(ws) -> Store:
    return Store(ws.root / ".graphbuild" / "oci")


def image(s: Store, name: str) -> tuple[dict, dict, dict]:
    desc = s.lookup(name)
    assert desc is not None, name
    manifest = s.read_json(desc["digest"])
    return desc, manifest, s.read_json(manifest["config"]["digest"])


def test_run_on_busybox_store_tags_skopeo_umoci_manifest(ws, make_ws, busybox, tmp_path,
                                                         monkeypatch):
    no_buildx(tmp_path, monkeypatch)
    base_files(ws, busybox)
    ws.write(APP)
    events = tmp_path / "events.jsonl"
    res = ws.run("run", "//app:all", "--output", "plain", "--events", str(events))
    assert res.code == 0, res
    s = store(ws)
    validate_store(s)
    evs = [json.loads(line) for line in events.read_text().splitlines()]
    finished = {e["node"]: e for e in evs if e.get("event") == "action_finished"}

    desc, manifest, config = image(s, "app:" + OWN.split("/")[1])
    assert desc["digest"] == s.lookup(f"//app:app[{OWN}]")["digest"]
    assert platforms.from_oci(desc["platform"]).same_as(platforms.parse(OWN))
    _, base_manifest, _ = image(s, f"//base:base[{OWN}]")
    # the base layer is the stored one, byte for byte; buildah's one new layer is gzipped
    assert manifest["layers"][0] == base_manifest["layers"][0]
    assert [layer["mediaType"] for layer in manifest["layers"]] == [GZIP, GZIP]
    assert "annotations" not in manifest  # no tool annotations naming a temporary directory
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"]["Labels"]["org.example.team"] == "build"
    assert (config["architecture"], config["os"]) == (HOST.arch, "linux")
    assert "io.buildah.version" in config["config"]["Labels"]  # auto chose buildah

    # umoci unpacks what buildah built: RUN output, both named contexts, the build arg
    umoci = need_tool("umoci")
    bundle = tmp_path / "bundle"
    proc = subprocess.run([umoci, "unpack", "--rootless", "--image",
                           f"{s.root}:app:{OWN.split('/')[1]}", str(bundle)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    rootfs = bundle / "rootfs"
    assert (rootfs / "hello").read_text() == "hello from Linux\n"
    assert (rootfs / "out").read_text() == "built\n"
    assert (rootfs / "both").read_text() == "hello from Linux\nasset\n"
    assert (rootfs / "f.txt").read_text() == "f\n"
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"

    # the OTHER platform ran under "emulation" (a host binary, so it could run here) and says so
    note = finished[f"//app:app[{OTHER}]"]["reason"]
    assert f"emulated: RUN for {OTHER} on a {HOST} host" in note
    assert "emulated" not in finished[f"//app:app[{OWN}]"]["reason"]
    # and the plain progress line shows it without --explain
    line = next(ln for ln in res.err.splitlines() if f"//app:app[{OTHER}] (" in ln)
    assert f"emulated: RUN for {OTHER}" in line
    _, _, other_config = image(s, "app:" + OTHER.split("/")[1])
    assert other_config["architecture"] == OTHER.split("/")[1]

    # a manifest over a buildah-built and a native-built image, read back by skopeo
    skopeo = need_tool("skopeo")
    proc = subprocess.run([skopeo, "inspect", "--raw", f"oci:{s.root}:release:1"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    entries = {str(platforms.from_oci(m["platform"])): m["digest"]
               for m in json.loads(proc.stdout)["manifests"]}
    assert entries == {OWN: desc["digest"],
                       OTHER: s.lookup(f"//app:plain[{OTHER}]")["digest"]}
    proc = subprocess.run([skopeo, "inspect", f"oci:{s.root}:app:{OWN.split('/')[1]}"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout)["Architecture"] == HOST.arch

    # nothing changed: every node is a cache hit and buildah is not run
    again = ws.run("run", "//app:all", "--output", "json")
    assert again.code == 0 and "built" not in {
        e["status"] for e in again.events() if e.get("event") == "action_finished"}

    # the same inputs in another workspace (another cache, another buildah storage): same digest
    other = make_ws("again")
    base_files(other, busybox, f"[{OWN}]")
    other.write(APP)
    res = other.run("run", "//app:app", "--platform", OWN)
    assert res.code == 0, res
    assert store(other).lookup(f"//app:app[{OWN}]")["digest"] == desc["digest"]


def test_failed_run_names_its_line_and_settings_are_checked(ws, busybox):
    base_files(ws, busybox, f"[{OWN}]")
    ws.write({
        "bad/BUILD.yaml": f"""
            bad: {{rule: image, backend: buildah, platforms: [{OWN}],
                   contexts: {{base: //base:base}}}}
        """,
        "bad/Dockerfile": """
            FROM base AS one
            RUN echo one > /one

            FROM base AS unused
            RUN echo unused

            FROM base
            COPY --from=one /one /one
            RUN echo start && \\
                false
        """,
    })
    res = ws.run("run", "//bad:bad")
    assert res.code == 1, res
    assert ("bad/Dockerfile:9: //bad:bad: `RUN echo start &&     false` failed: exit status 1 "
            "(buildah)") in res.err
    assert "  | start" in res.err  # the command's own output follows

    ws.write({"WORKSPACE.yaml": "buildah: {storage_driver: vfs, isolaton: chroot}\n"})
    res = ws.run("run", "//bad:bad")
    assert res.code == 1, res
    assert "WORKSPACE.yaml: unknown buildah setting 'isolaton'" in res.err


def test_a_final_stage_that_is_only_from_a_stage_is_that_stages_image(ws, busybox):
    """buildah 1.28 cannot commit a last stage holding nothing but ``FROM base``; it is the
    same image as the stage it names, so that stage is built."""
    base_files(ws, busybox, f"[{OWN}]")
    dockerfile = "FROM base AS built\nRUN echo built > /out\nFROM built AS Alias\nFROM Alias\n"
    ws.write({
        "app/BUILD.yaml": f"""
            last: {{rule: image, backend: buildah, platforms: [{OWN}],
                    contexts: {{base: //base:base}}}}
            stage: {{rule: image, backend: buildah, platforms: [{OWN}], target: built,
                     contexts: {{base: //base:base}}}}
        """,
        "app/Dockerfile": dockerfile,
    })
    res = ws.run("run", "//app:all")
    assert res.code == 0, res
    s = store(ws)
    last, manifest, _ = image(s, f"//app:last[{OWN}]")
    assert last["digest"] == s.lookup(f"//app:stage[{OWN}]")["digest"]
    from graphbuild.oci.unpack import read_file

    assert read_file(s, manifest["layers"], "out") == b"built\n"


def test_exec_format_error_says_how_to_run_foreign_programs(ws, busybox):
    """A program for another architecture with no emulator registered: the hint says what to do.
    (A stub ELF for the other architecture stands in for a foreign base image.)"""
    if Path(f"/proc/sys/fs/binfmt_misc/qemu-{'aarch64' if OTHER.endswith('arm64') else 'x86_64'}"
            ).exists():
        pytest.skip("an emulator is registered here")
    base_files(ws, busybox, f"[{OTHER}]")
    machine = 183 if OTHER.endswith("arm64") else 62  # EM_AARCH64, EM_X86_64
    elf = (b"\x7fELF\x02\x01\x01" + b"\0" * 9
           + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x400000, 64, 0, 0, 64, 56, 1, 64, 0, 0)
           + struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 120, 120, 0x1000))
    ws.write({
        "foreign/BUILD.yaml": f"""
            foreign: {{rule: image, backend: buildah, platforms: [{OTHER}],
                       contexts: {{base: //base:base}}}}
        """,
        "foreign/Dockerfile": "FROM base\nCOPY --chmod=755 prog /prog\nRUN [\"/prog\"]\n",
        "foreign/prog": elf,
    })
    res = ws.run("run", "//foreign:foreign")
    assert res.code == 1, res
    assert "foreign/Dockerfile:3: //foreign:foreign: `RUN /prog` failed" in res.err
    assert f"hint: this {HOST} machine cannot execute {OTHER} programs: register QEMU" in res.err


def test_command_line(tmp_path):
    """The exact `buildah bud` for one node, as root (vfs, chroot) or with settings; the
    platform ARGs are graphbuild's (buildah's own are empty or spelt otherwise in places)."""
    from graphbuild.backends.plan import make_plan

    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM base\nRUN true\n")
    (tmp_path / "ctx" / "Dockerfile.dockerignore").write_text("*.log\n")
    plat = platforms.parse("linux/arm64")
    plan = make_plan("FROM base\nRUN true\n", "ctx/Dockerfile", "//ctx:img", {}, plat,
                     HOST, None, {"base"})
    req = BuildRequest(label="//ctx:img", node="//ctx:img[linux/arm64]", platform=plat,
                       context_dir=tmp_path / "ctx", dockerfile=tmp_path / "ctx" / "Dockerfile",
                       dockerfile_rel="ctx/Dockerfile", plan=plan, build_args={"B": "2", "A": "1"},
                       target="final", labels={"l": "v"}, source_date_epoch=1700000000,
                       contexts={"src": NamedContext("src", "dir", path=tmp_path / "src")})
    opts = {"storage_driver": "overlay", "isolation": "oci"}
    argv = buildah.command(req, "buildah", tmp_path / "state",
                           buildah.contexts(req, None, tmp_path), opts)
    assert argv == [
        "buildah", "--root", f"{tmp_path}/state/root-overlay", "--runroot",
        f"{tmp_path}/state/run-overlay", "--storage-driver", "overlay", "bud", "--format", "oci",
        "--layers=false", "--pull=never", "--disable-compression=false", "--platform",
        "linux/arm64", "--isolation", "oci",
        "--timestamp", "1700000000", "-f", f"{tmp_path}/ctx/Dockerfile",
        "--ignorefile", f"{tmp_path}/ctx/Dockerfile.dockerignore", "--target", "final",
        "--build-arg", "A=1", "--build-arg", "B=2", "--build-arg", f"BUILDARCH={HOST.arch}",
        "--build-arg", "BUILDOS=linux", "--build-arg", f"BUILDPLATFORM={HOST}",
        "--build-arg", f"BUILDVARIANT={HOST.variant}", "--build-arg", "TARGETARCH=arm64",
        "--build-arg", "TARGETOS=linux", "--build-arg", "TARGETPLATFORM=linux/arm64",
        "--build-arg", "TARGETVARIANT=", "--label", "l=v",
        "--build-context", f"src={tmp_path}/src", "--tag", "oci:out", f"{tmp_path}/ctx",
    ]
    assert buildah.settings({}) == ({"storage_driver": "vfs", "isolation": "chroot"}
                                    if os.geteuid() == 0 else {})
    assert buildah.settings({"isolation": "oci"})["isolation"] == "oci"

    # a last stage that is only FROM a stage builds that stage, when it has a name to target
    def target(text: str) -> str | None:
        req.plan = make_plan(text, "ctx/Dockerfile", "//ctx:img", {}, plat, HOST, None, set())
        req.target = None
        argv = buildah.command(req, "buildah", tmp_path / "state", [], {})
        return argv[argv.index("--target") + 1] if "--target" in argv else None

    assert target("FROM scratch AS Base\nRUN true\nFROM Base AS mid\nFROM mid\n") == "Base"
    assert target("FROM scratch\nRUN true\nFROM 0\n") is None


def test_interrupt_stops_buildah(ws, busybox):
    """Ctrl-C while RUN executes: graphbuild stops buildah's whole process group, exits 130."""
    base_files(ws, busybox, f"[{OWN}]")
    ws.write({
        "slow/BUILD.yaml": f"""
            slow: {{rule: image, backend: buildah, platforms: [{OWN}],
                    contexts: {{base: //base:base}}}}
        """,
        "slow/Dockerfile": "FROM base\nRUN echo started && sleep 67\n",
    })
    proc = subprocess.Popen([sys.executable, "-m", "graphbuild", "-C", str(ws.root), "run",
                             "//slow:slow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    logs = ws.root / ".graphbuild" / "tmp"
    while time.monotonic() < deadline:
        if any("started" in p.read_text(errors="replace") for p in logs.glob("*/buildah.log")):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("RUN never started")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    # no buildah of this workspace is left running, nor the RUN's sleep
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (str(ws.root) in text and "buildah" in text) or text.strip() == "sleep 67":
            left.append(text)
    assert left == []


def test_from_a_registry_image_by_reference(ws, busybox, registry):
    """FROM host/repo:tag: the engine pins and pulls it into the store; buildah gets it as the
    named context of that name (--pull=never: buildah itself never goes to the registry)."""
    repo = f"{registry.host}/{fx.unique_repo('bbase')}"
    base_files(ws, busybox, f"[{OWN}]")
    ws.write({"base/BUILD.yaml": f"""
        base: {{rule: image, backend: native, platforms: [{OWN}], tags: ["{repo}:v1"]}}
    """})
    res = ws.run("run", "//base:base", "--push")
    assert res.code == 0, res
    ws.write({
        "app/BUILD.yaml": f"app: {{rule: image, backend: buildah, platforms: [{OWN}]}}\n",
        "app/Dockerfile": f"FROM {repo}:v1\nRUN echo from-registry > /hi\n",
    })
    res = ws.run("run", "//app:app")
    assert res.code == 0, res
    s = store(ws)
    _, manifest, config = image(s, f"//app:app[{OWN}]")
    _, base_manifest, _ = image(s, f"//base:base[{OWN}]")
    assert manifest["layers"][0] == base_manifest["layers"][0]
    assert len(manifest["layers"]) == 2
    assert config["history"][-1]["created_by"].endswith("echo from-registry > /hi")
