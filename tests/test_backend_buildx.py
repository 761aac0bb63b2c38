"""The buildx backend and `auto`, through a test double of the `docker` executable (issue 5).

buildx cannot be installed on these machines, so a `docker` script placed first on PATH records
every command line and, for `buildx build`, writes a real OCI archive the way BuildKit's oci
exporter does (an index holding the image and an attestation manifest; the base image's layers
kept byte for byte). What is asserted: the exact command lines, the builder per platform, cache
flags, builder creation, the import into the store, and the messages when Docker, its daemon or
the buildx plugin is missing. Nothing here runs a real BuildKit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from oci_schema import require_tool, validate_store

from graphbuild import platforms
from graphbuild.oci.store import Store

DOUBLE = r'''#!PYTHON
"""A test double of the `docker` CLI (see tests/test_backend_buildx.py)."""
import gzip, hashlib, io, json, os, sys, tarfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
STATE = os.path.join(HERE, "state.json")


def state():
    with open(STATE) as f:
        return json.load(f)


def out(text, code=0, err=False):
    print(text, file=sys.stderr if err else sys.stdout)
    sys.exit(code)


def main(argv):
    with open(os.path.join(HERE, "calls.jsonl"), "a") as f:
        f.write(json.dumps({"argv": argv, "sde": os.environ.get("SOURCE_DATE_EPOCH"),
                            "via": os.environ.get("DOUBLE_VIA", "docker")}) + "\n")
    st = state()
    if argv[:1] != ["buildx"]:
        out("docker double: only buildx", 1, True)
    if st.get("mode") == "no-buildx":
        out("docker: 'buildx' is not a docker command.\nSee 'docker --help'", 1, True)
    sub, args = argv[1], argv[2:]
    if sub == "version":
        out("github.com/docker/buildx v0.12.1 30feaa1a")
    if st.get("mode") == "no-daemon":
        out("ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
            "Is the docker daemon running?", 1, True)
    if sub == "inspect":
        name = args[0] if args else st["current"]
        b = st["builders"].get(name)
        if b is None:
            out(f'ERROR: no builder "{name}" found', 1, True)
        out(f"Name:          {name}\nDriver:        {b['driver']}\nLast Activity: now\n\n"
            f"Nodes:\nName:      {name}0\nEndpoint:  unix:///var/run/docker.sock\n"
            f"Status:    running\nBuildKit:  v0.12.5\nPlatforms: {b.get('platforms', 'linux/amd64')}")
    if sub == "create":
        name = args[args.index("--name") + 1]
        driver = args[args.index("--driver") + 1]
        plats = args[args.index("--platform") + 1] if "--platform" in args else "linux/amd64*"
        st["builders"][name] = {"driver": driver, "platforms": plats}
        with open(STATE, "w") as f:
            json.dump(st, f)
        out(name)
    if sub == "build":
        build(args, st)
    out(f"docker double: unknown buildx {sub}", 1, True)


def build_image(plat, multi, put):
    """One platform's image: the base layers of each named context, then one layer."""
    os_, arch, *variant = plat.split("/")
    layers, diff_ids = [], []
    for spec in multi.get("--build-context", []):
        name, value = spec.split("=", 1)
        if not value.startswith("oci-layout://"):
            assert os.path.isdir(value), value
            continue
        layout, digest = value[len("oci-layout://"):].split("@")
        index = json.load(open(os.path.join(layout, "index.json")))
        assert index["manifests"][0]["digest"] == digest
        read = lambda d: open(os.path.join(layout, "blobs", "sha256", d.split(":")[1]), "rb").read()
        manifest = json.loads(read(digest))
        if "manifests" in manifest:  # an index: this platform's image
            manifest = json.loads(read(next(
                m["digest"] for m in manifest["manifests"]
                if [m["platform"]["os"], m["platform"]["architecture"], *variant[:1]]
                == [os_, arch, *([m["platform"].get("variant")] if variant else [])])))
        config = json.loads(read(manifest["config"]["digest"]))
        for layer in manifest["layers"]:  # BuildKit keeps a base image's compressed blobs
            layers.append(put(read(layer["digest"]), layer["mediaType"]))
        diff_ids += config["rootfs"]["diff_ids"]
    body = ("args: " + " ".join(sorted(multi.get("--build-arg", []))) + "\n").encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello")
        info.size, info.mtime, info.mode = len(body), 0, 0o644
        tar.addfile(info, io.BytesIO(body))
    diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
    layers.append(put(gzip.compress(raw.getvalue(), mtime=0),
                      "application/vnd.oci.image.layer.v1.tar+gzip"))
    labels = dict(kv.split("=", 1) for kv in multi.get("--label", []))
    config = {"architecture": arch, "os": os_, "created": "1970-01-01T00:00:00Z",
              "config": {"Labels": labels}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created_by": "RUN double"}]}
    if variant:
        config["variant"] = variant[0]
    cfg = put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    return put(json.dumps({"schemaVersion": 2, "mediaType":
                           "application/vnd.oci.image.manifest.v1+json", "config": cfg,
                           "layers": layers}).encode(),
               "application/vnd.oci.image.manifest.v1+json",
               platform={"architecture": arch, "os": os_})


def build(args, st):
    opts, multi, positional = {}, {}, []
    it = iter(args)
    for a in it:
        if a in ("--build-arg", "--label", "--build-context", "--cache-from", "--cache-to"):
            multi.setdefault(a, []).append(next(it))
        elif a.startswith("--"):
            opts[a] = next(it)
        else:
            positional.append(a)
    builder = opts.get("--builder", st["current"])
    if st["builders"][builder]["driver"] == "docker":
        out("ERROR: OCI exporter is not supported for the docker driver.", 1, True)
    if st.get("fail_line"):
        n = st["fail_line"]
        print(f"#5 [2/2] RUN false\n#5 ERROR: process \"/bin/sh -c false\" did not complete "
              f"successfully: exit code: 1\n------\n > [2/2] RUN false:\n------\nDockerfile:{n}\n"
              f"--------------------\n   {n} | >>> RUN false\n--------------------\n"
              "ERROR: failed to solve: process \"/bin/sh -c false\" did not complete "
              "successfully: exit code: 1")
        sys.exit(1)
    if st.get("fail_joint") and "," in opts["--platform"]:
        out("ERROR: failed to solve: the double refuses joint builds", 1, True)
    busy = os.path.join(HERE, "busy")  # a file per build running
    os.makedirs(busy, exist_ok=True)
    if os.listdir(busy):  # another build runs at the same time
        open(os.path.join(HERE, "overlaps"), "a").write(opts["--platform"] + "\n")
    mine = os.path.join(busy, str(os.getpid()))
    open(mine, "w").close()
    time.sleep(st.get("slow", 0))
    try:
        write_archive(opts, multi)
    finally:
        os.remove(mine)
    print("#1 exporting to oci image format\n#1 DONE 0.0s")
    sys.exit(0)


def write_archive(opts, multi):
    output = dict(kv.split("=", 1) for kv in opts["--output"].split(","))
    assert output["type"] == "oci" and output["tar"] == "true", output
    blobs = {}

    def put(data, media_type, **extra):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    entries = []
    for plat in opts["--platform"].split(","):  # several: one image each, as BuildKit does
        image = build_image(plat, multi, put)
        statement = put(b'{"_type": "https://in-toto.io/Statement/v0.1"}',
                        "application/vnd.in-toto+json")
        att = put(json.dumps({"schemaVersion": 2, "mediaType":
                              "application/vnd.oci.image.manifest.v1+json",
                              "config": put(b"{}", "application/vnd.oci.image.config.v1+json"),
                              "layers": [statement]}).encode(),
                  "application/vnd.oci.image.manifest.v1+json",
                  platform={"architecture": "unknown", "os": "unknown"},
                  annotations={"vnd.docker.reference.type": "attestation-manifest",
                               "vnd.docker.reference.digest": image["digest"]})
        entries += [image, att]
    index = put(json.dumps({"schemaVersion": 2, "mediaType":
                            "application/vnd.oci.image.index.v1+json",
                            "manifests": entries}).encode(),
                "application/vnd.oci.image.index.v1+json")
    with tarfile.open(output["dest"], "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        for digest, data in sorted(blobs.items()):
            add("blobs/sha256/" + digest.split(":")[1], data)
        add("index.json", json.dumps({"schemaVersion": 2, "manifests": [index]}).encode())


main(sys.argv[1:])
'''


class Docker:
    """The double's directory (first on PATH), its state and the calls it recorded."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        root.mkdir(parents=True, exist_ok=True)
        exe = root / "docker"
        exe.write_text(DOUBLE.replace("PYTHON", sys.executable, 1))
        exe.chmod(0o755)
        self.set(mode="ok", current="default", builders={"default": {"driver": "docker"}})

    def set(self, **changes) -> None:
        path = self.dir / "state.json"
        st = json.loads(path.read_text()) if path.exists() else {}
        st.update(changes)
        path.write_text(json.dumps(st))
        # a new mtime: graphbuild caches `docker buildx version` per executable version
        os.utime(self.dir / "docker", ns=(0, os.stat(self.dir / "docker").st_mtime_ns + 1000))

    def state(self) -> dict:
        return json.loads((self.dir / "state.json").read_text())

    def plugin(self, folder: Path) -> Path:
        """A buildx plugin double in ``folder``: run alone, it is ``docker buildx``."""
        folder.mkdir(parents=True, exist_ok=True)
        exe = folder / "docker-buildx"
        exe.write_text(f'#!/bin/sh\nDOUBLE_VIA={exe} exec {self.dir / "docker"} buildx "$@"\n')
        exe.chmod(0o755)
        return exe

    def via(self) -> list[str]:
        """What ran each recorded command: the docker double, or a plugin double's path."""
        path = self.dir / "calls.jsonl"
        return [json.loads(line)["via"] for line in path.read_text().splitlines()]

    def calls(self, *prefix: str) -> list[list[str]]:
        path = self.dir / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        argvs = [json.loads(line)["argv"] for line in lines]
        return [a for a in argvs if a[:len(prefix)] == list(prefix)]

    def builds(self) -> dict[str, list[str]]:
        """`buildx build` command lines by --platform."""
        out = {}
        for argv in self.calls("buildx", "build"):
            out[argv[argv.index("--platform") + 1]] = argv
        return out


@pytest.fixture
def docker(tmp_path: Path, monkeypatch) -> Docker:
    double = Docker(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{double.dir}{os.pathsep}{os.environ['PATH']}")
    return double


BASE = {
    "base/BUILD.yaml": """
        base:
          rule: image
          platforms: [linux/amd64, linux/arm64]
          backend: native
    """,
    "base/Dockerfile": "FROM scratch\nCOPY etc/ /etc/\n",
    "base/etc/os-release": "ID=double\n",
}


def store(ws) -> Store:
    return Store(ws.root / ".graphbuild" / "oci")


def events(res) -> dict[str, dict]:
    return {e["node"]: e for e in res.events() if e.get("event") == "action_finished"}


def test_command_lines_builder_per_platform_cache_and_import(ws, docker):
    docker.set(builders={"default": {"driver": "docker"},
                         "amd-native": {"driver": "docker-container"},
                         "arm-native": {"driver": "remote", "platforms": "linux/arm64"}})
    ws.write({**BASE,
        "WORKSPACE.yaml": """
            builders: {linux/arm64: arm-native}
            buildx:
              cache_from: type=local,src=/var/cache/bx-{platform}
              cache_to: ["type=local,dest=/var/cache/bx-{platform},mode=max", type=inline]
        """,
        "platforms/BUILD.yaml": """
            amd64:
              rule: platform
              os: linux
              arch: amd64
              builder: amd-native
        """,
        "app/BUILD.yaml": """
            app:
              rule: image
              backend: buildx
              platforms: [//platforms:amd64, linux/arm64]
              target: final
              contexts: {base: //base:base, assets: assets}
              build_args: {B: "2", A: "1"}
              labels: {org.example.team: build}
              tags: ["app:{arch}"]
        """,
        "app/Dockerfile": "FROM base AS final\nCOPY --from=assets x /x\nRUN make\n",
        "app/assets/x": "x\n",
    })
    res = ws.run("run", "//app:app", "--output", "json")
    assert res.code == 0, res
    root = str(ws.root)
    builds = docker.builds()
    assert sorted(builds) == ["linux/amd64", "linux/arm64"]
    s = store(ws)
    for plat, builder in (("linux/amd64", "amd-native"), ("linux/arm64", "arm-native")):
        argv = builds[plat]
        base_digest = s.lookup(f"//base:base[{plat}]")["digest"]
        ctx = next(a for a in argv if a.startswith("base=oci-layout://"))
        layout, digest = ctx[len("base=oci-layout://"):].split("@")
        assert digest == base_digest and Path(layout).name == f"base-{digest[7:19]}"
        dest = next(a for a in argv if a.startswith("type=oci,dest="))
        assert dest.endswith("/image.tar,tar=true,rewrite-timestamp=true")
        tag = plat.replace("/", "-")
        assert argv == [
            "buildx", "build", "--builder", builder, "--platform", plat,
            "--file", f"{root}/app/Dockerfile", "--target", "final",
            "--build-arg", "A=1", "--build-arg", "B=2", "--label", "org.example.team=build",
            "--build-context", f"assets={root}/app/assets", "--build-context", ctx,
            "--cache-from", f"type=local,src=/var/cache/bx-{tag}",
            "--cache-to", f"type=local,dest=/var/cache/bx-{tag},mode=max",
            "--cache-to", "type=inline",
            "--provenance=false", "--sbom=false",
            "--progress", "plain", "--output", dest, f"{root}/app",
        ]
    # named builders exist: nothing is created, and the default builder is never consulted
    assert docker.calls("buildx", "create") == []
    assert ["buildx", "inspect"] not in docker.calls("buildx", "inspect")
    # the import: the image (not the attestation) for each platform, base layers shared
    validate_store(s)
    for plat in ("linux/amd64", "linux/arm64"):
        desc = s.lookup(f"//app:app[{plat}]")
        assert platforms.from_oci(desc["platform"]).same_as(platforms.parse(plat))
        manifest = s.read_json(desc["digest"])
        base = s.read_json(s.lookup(f"//base:base[{plat}]")["digest"])
        assert manifest["layers"][:-1] == base["layers"]
        assert [m["mediaType"] for m in manifest["layers"]] == [
            "application/vnd.oci.image.layer.v1.tar+gzip"] * 2
        config = s.read_json(manifest["config"]["digest"])
        assert config["config"]["Labels"] == {"org.example.team": "build"}
        assert "annotations" not in manifest
    assert s.lookup("app:arm64")["digest"] == s.lookup("//app:app[linux/arm64]")["digest"]
    # a builder named for a platform counts as native: no emulation note
    assert "emulat" not in events(res)["//app:app[linux/arm64]"]["reason"]
    # SOURCE_DATE_EPOCH reaches buildx (0 when unset, as the native backend's dates)
    lines = (docker.dir / "calls.jsonl").read_text().splitlines()
    assert {json.loads(x)["sde"] for x in lines if '"build"' in x} == {"0"}
    skopeo = require_tool("skopeo")
    proc = subprocess.run([skopeo, "inspect", "--raw", f"oci:{s.root}:app:arm64"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout)["layers"] == manifest["layers"]


def test_docker_driver_gets_a_docker_container_builder_once(ws, docker):
    ws.write({**BASE,
        "app/BUILD.yaml": """
            app:
              rule: image
              backend: buildx
              platforms: [linux/amd64, linux/arm64]
              contexts: {base: //base:base}
        """,
        "app/Dockerfile": "FROM base\nRUN make\n",
    })
    res = ws.run("run", "//app:app", "--output", "json")
    assert res.code == 0, res
    assert docker.calls("buildx", "create") == [
        ["buildx", "create", "--name", "graphbuild", "--driver", "docker-container"]]
    assert docker.state()["builders"]["graphbuild"]["driver"] == "docker-container"
    for argv in docker.builds().values():
        assert argv[2:4] == ["--builder", "graphbuild"]
    # one builder for both platforms: one build for both, as bake does; the base is given as
    # an index of its two platform images, from which BuildKit takes each platform's
    assert list(docker.builds()) == ["linux/amd64,linux/arm64"]
    argv = docker.builds()["linux/amd64,linux/arm64"]
    digest = next(a for a in argv if a.startswith("base=oci-layout://"))[
        len("base=oci-layout://"):].split("@")[1]
    s = store(ws)
    assert {m["digest"] for m in s.read_json(digest)["manifests"]} == {
        s.lookup(f"//base:base[{p}]")["digest"] for p in ("linux/amd64", "linux/arm64")}
    for plat in ("amd64", "arm64"):
        config = s.read_json(s.read_json(s.lookup(f"//app:app[linux/{plat}]")["digest"])
                             ["config"]["digest"])
        assert config["architecture"] == plat
    ev = events(res)
    # RUN for arm64 on the default builder of an amd64 host: emulated, and said so
    host = platforms.host()
    other = "linux/arm64" if host.arch != "arm64" else "linux/amd64"
    assert "emulated: RUN for " + other in ev[f"//app:app[{other}]"]["reason"]
    assert "native builder" in ev[f"//app:app[{other}]"]["reason"]
    own = "linux/amd64" if other == "linux/arm64" else "linux/arm64"
    assert "emulated" not in ev[f"//app:app[{own}]"]["reason"]

    # a builder that can export OCI is used as it is, without --builder
    docker.set(current="ci", builders={"ci": {"driver": "docker-container"}})
    (docker.dir / "calls.jsonl").unlink()
    assert ws.run("run", "//app:app", "--no-cache").code == 0
    assert docker.calls("buildx", "create") == []
    assert all("--builder" not in argv for argv in docker.builds().values())


def test_a_joint_build_reads_each_platforms_cache(ws, docker):
    """A joint build reads every platform's cache source and writes the one destination; a
    destination per platform keeps the platforms' builds apart (a joint build would write
    every platform's cache to each)."""
    docker.set(current="bk", builders={"bk": {"driver": "docker-container"}})
    ws.write({
        "WORKSPACE.yaml": """
            buildx:
              cache_from: ["type=local,src=/c/{platform}", "type=registry,ref=r/cache"]
              cache_to: "type=registry,ref=r/cache,mode=max"
        """,
        "app/BUILD.yaml": "app: {rule: image, backend: buildx, "
                          "platforms: [linux/amd64, linux/arm64]}\n",
        "app/Dockerfile": "FROM scratch\nLABEL a=b\n",
    })
    assert ws.run("run", "//app:app").code == 0
    argv = docker.builds()["linux/amd64,linux/arm64"]
    pairs = [(a, argv[i + 1]) for i, a in enumerate(argv) if a.startswith("--cache")]
    assert pairs == [("--cache-from", "type=local,src=/c/linux-amd64"),
                     ("--cache-from", "type=local,src=/c/linux-arm64"),
                     ("--cache-from", "type=registry,ref=r/cache"),
                     ("--cache-to", "type=registry,ref=r/cache,mode=max")]

    ws.write({"WORKSPACE.yaml": 'buildx: {cache_to: "type=local,dest=/c/{platform}"}\n'})
    (docker.dir / "calls.jsonl").unlink()
    assert ws.run("run", "//app:app", "--no-cache").code == 0  # the settings are no input
    builds = docker.builds()
    assert sorted(builds) == ["linux/amd64", "linux/arm64"]
    assert "type=local,dest=/c/linux-arm64" in builds["linux/arm64"]


def test_platforms_that_cannot_share_a_build_take_turns_in_one_slot(ws, docker):
    """A joint build that fails is retried per platform (so a failure names its platform);
    the batch holds one -j slot, so those builds run one after the other. A context that is a
    command's output (a directory per platform) never joins."""
    docker.set(current="bk", builders={"bk": {"driver": "docker-container"}}, fail_joint=True,
               slow=0.3)
    ws.write({
        "app/BUILD.yaml": "app: {rule: image, backend: buildx, "
                          "platforms: [linux/amd64, linux/arm64]}\n",
        "app/Dockerfile": "FROM scratch\nLABEL a=b\n",
    })
    assert ws.run("run", "//app:app", "-j", "1").code == 0
    assert sorted(docker.builds()) == ["linux/amd64", "linux/amd64,linux/arm64", "linux/arm64"]
    assert not (docker.dir / "overlaps").exists()

    docker.set(fail_joint=False, slow=0)
    (docker.dir / "calls.jsonl").unlink()
    ws.write({
        "gen/BUILD.yaml": "out: {rule: command, platforms: [linux/amd64, linux/arm64], "
                          "outs: [f], cmd: 'echo $PLATFORM > $OUT/f'}\n",
        "app/BUILD.yaml": "app: {rule: image, backend: buildx, contexts: {gen: //gen:out}, "
                          "platforms: [linux/amd64, linux/arm64]}\n",
        "app/Dockerfile": "FROM scratch\nCOPY --from=gen f /f\n",
    })
    res = ws.run("run", "//app:app", "--output", "json")
    assert res.code == 0, [e for e in res.events() if e.get("status") == "failed"]
    assert sorted(docker.builds()) == ["linux/amd64", "linux/arm64"]


def test_failure_names_the_dockerfile_line(ws, docker):
    docker.set(current="bk", builders={"bk": {"driver": "docker-container"}}, fail_line=2)
    ws.write({
        "app/BUILD.yaml": "app: {rule: image, backend: buildx, platforms: [linux/amd64]}\n",
        "app/Dockerfile": "FROM scratch\nRUN false\n",
    })
    res = ws.run("run", "//app:app")
    assert res.code == 1, res
    assert ("app/Dockerfile:2: //app:app: failed to solve: process \"/bin/sh -c false\" did not "
            "complete successfully: exit code: 1 (buildx)") in res.err
    assert "  | Dockerfile:2" in res.err  # BuildKit's own report follows


def test_the_plugin_runs_without_the_docker_cli(ws, docker, tmp_path, monkeypatch):
    """buildx is run as the plugin file the Docker CLI would pick, alone: config.json's
    cliPluginsExtraDirs first, then the config directory's cli-plugins."""
    ws.write({
        "app/BUILD.yaml": "app: {rule: image, backend: buildx, platforms: [linux/amd64]}\n",
        "app/Dockerfile": "FROM scratch\nLABEL a=b\n",
    })
    docker.set(current="bk", builders={"bk": {"driver": "docker-container"}})
    config = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    usual = docker.plugin(config / "cli-plugins")
    assert ws.run("run", "//app:app").code == 0
    assert docker.calls("buildx", "build") and set(docker.via()) == {str(usual)}

    extra = docker.plugin(tmp_path / "extra")
    (config / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": [str(extra.parent)]}))
    (docker.dir / "calls.jsonl").unlink()
    assert ws.run("run", "//app:app", "--no-cache").code == 0
    assert docker.calls("buildx", "build") and set(docker.via()) == {str(extra)}

    # no plugin where the CLI looks by default: `docker buildx`, as before
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "other-config"))
    (docker.dir / "calls.jsonl").unlink()
    assert ws.run("run", "//app:app", "--no-cache").code == 0
    assert docker.calls("buildx", "build") and set(docker.via()) == {"docker"}


def test_missing_docker_plugin_and_daemon(ws, docker, tmp_path, monkeypatch):
    ws.write({
        "app/BUILD.yaml": "app: {rule: image, backend: buildx, platforms: [linux/amd64]}\n",
        "app/Dockerfile": "FROM scratch\nLABEL a=b\n",
    })
    docker.set(mode="no-buildx")
    res = ws.run("run", "//app:app")
    assert res.code == 2, res
    assert ("app/BUILD.yaml:1: //app:app: backend 'buildx' cannot run here: the Docker CLI has "
            "no buildx plugin (`docker buildx version`: docker: 'buildx' is not a docker "
            "command.)") in res.err

    docker.set(mode="no-daemon")
    res = ws.run("run", "//app:app")
    assert res.code == 1, res
    assert ("the Docker daemon is not reachable (Cannot connect to the Docker daemon at "
            "unix:///var/run/docker.sock. Is the docker daemon running?)") in res.err
    assert "hint: start Docker" in res.err

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    res = ws.run("run", "//app:app")
    assert res.code == 2, res
    assert "backend 'buildx' cannot run here: Docker is not installed (no `docker` or `docker-buildx` on PATH)" \
        in res.err
    res = ws.run("builders")
    assert res.code == 2 and "Docker is not installed" in res.err


def test_a_missing_named_builder_is_an_error_until_created(ws, docker):
    ws.write({
        "WORKSPACE.yaml": "builders: {linux/arm64: arm-native}\n",
        "platforms/BUILD.yaml": """
            amd64: {rule: platform, os: linux, arch: amd64, builder: amd-native}
        """,
        "app/BUILD.yaml": """
            app:
              rule: image
              backend: buildx
              platforms: [//platforms:amd64, linux/arm64, linux/s390x]
        """,
        "app/Dockerfile": "FROM scratch\nRUN make\n",
    })
    res = ws.run("run", "//app:app", "--platform", "linux/arm64")
    assert res.code == 1, res
    assert "the buildx builder 'arm-native' does not exist" in res.err
    assert "graphbuild builders --create" in res.err

    res = ws.run("builders")
    assert res.code == 0, res
    lines = res.out.splitlines()
    assert lines[0].split() == ["BUILDER", "PLATFORMS", "NEEDED", "BY", "STATUS", "BUILDKIT",
                                "REPORTS"]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert "linux/amd64" in rows["amd-native"] and "//platforms:amd64" in rows["amd-native"]
    assert rows["amd-native"].endswith("missing")
    assert "WORKSPACE.yaml builders" in rows["arm-native"]
    assert "linux/s390x" in rows["graphbuild"] and "uses the docker driver" in rows["graphbuild"]
    assert "3 missing" in res.out, res.out
    assert docker.calls("buildx", "create") == []

    res = ws.run("builders", "--create")
    assert res.code == 0, res
    assert sorted(docker.calls("buildx", "create")) == [
        ["buildx", "create", "--name", "amd-native", "--driver", "docker-container",
         "--platform", "linux/amd64"],
        ["buildx", "create", "--name", "arm-native", "--driver", "docker-container",
         "--platform", "linux/arm64"],
        ["buildx", "create", "--name", "graphbuild", "--driver", "docker-container"],
    ]
    assert res.out.count("created") == 3
    res = ws.run("builders")
    assert "missing" not in res.out and res.out.count("running (docker-container)") == 3
    assert res.out.count("v0.12.5") == 3
    assert ws.run("run", "//app:app").code == 0
    builders = {p: a[a.index("--builder") + 1] for p, a in docker.builds().items()}
    assert builders == {"linux/amd64": "amd-native", "linux/arm64": "arm-native",
                        "linux/s390x": "graphbuild"}


# -- auto -------------------------------------------------------------------------------------

AUTO = {
    "WORKSPACE.yaml": "backend: auto\n",
    "plain/BUILD.yaml": "plain: {rule: image, platforms: [linux/amd64]}\n",
    "plain/Dockerfile": "FROM scratch\nCOPY f /f\n",
    "plain/f": "f\n",
    "runs/BUILD.yaml": "runs: {rule: image, platforms: [linux/amd64]}\n",
    "runs/Dockerfile": "FROM scratch\nLABEL a=b\nRUN make\n",
}


def test_auto_native_without_run_buildx_with_run(ws, docker):
    docker.set(current="bk", builders={"bk": {"driver": "docker-container"}})
    ws.write(AUTO)
    res = ws.run("run", "//plain:plain")
    assert res.code == 0, res
    assert docker.calls() == []  # native: docker is not even asked
    res = ws.run("run", "//runs:runs")
    assert res.code == 0, res
    assert list(docker.builds()) == ["linux/amd64"]
    assert store(ws).lookup("//runs:runs[linux/amd64]") is not None


def test_auto_with_neither_backend_is_exit_2(ws, docker, monkeypatch):
    docker.set(mode="no-buildx")
    monkeypatch.setenv("PATH", str(docker.dir))  # a docker without buildx, and no buildah
    ws.write(AUTO)
    assert ws.run("run", "//plain:plain").code == 0
    res = ws.run("run", "//runs:runs")
    assert res.code == 2, res
    assert res.err.startswith(
        "runs/Dockerfile:3: //runs:runs: RUN needs a backend that runs containers (native "
        "cannot), and neither buildx nor buildah can build here: the Docker CLI has no buildx "
        "plugin")
    assert "buildah is not installed (no `buildah` on PATH)" in res.err
    assert "hint: install buildah (daemonless) or Docker with the buildx plugin" in res.err


def test_context_names_as_buildkit_looks_them_up():
    from graphbuild.backends.base import NamedContext
    from graphbuild.backends.buildx import context_name

    def ref(name: str) -> str:
        return context_name(f"ref:{name}", NamedContext(name, "image", descriptor={}))

    assert ref("docker.io/library/alpine:latest") == "alpine"
    assert ref("alpine:3.19") == "alpine:3.19"
    assert ref("docker.io/bitnami/redis:7") == "bitnami/redis:7"
    assert ref("127.0.0.1:5000/base@sha256:" + "a" * 64) == "127.0.0.1:5000/base@sha256:" + "a" * 64
    assert context_name("base", NamedContext("base", "dir")) == "base"
