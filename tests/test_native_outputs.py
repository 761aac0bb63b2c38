"""What the native builder and the manifest rule put in the store and how other tools read it
(issue 3, items 3-7 and 9): reproducible digests, shared layers, tags, indexes and Docker manifest
lists, schema validity, skopeo, export, inspect, and what an edit rebuilds."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import textwrap

from conftest import need_tool
from oci_schema import validate, validate_store

from graphbuild import platforms
from graphbuild.oci import mediatypes as mt
from graphbuild.oci.inspect import format_manifest_inspect
from graphbuild.oci.store import Store


def store(ws) -> Store:
    return Store(ws.root / ".graphbuild" / "oci")


def oci_dir(ws) -> str:
    return str(ws.root / ".graphbuild" / "oci")


def run_json(ws, *args: str) -> tuple[int, dict[str, dict]]:
    """(exit code, node -> its action_finished event)."""
    res = ws.run("run", *args, "--output", "json")
    events = {e["node"]: e for e in res.events() if e["event"] == "action_finished"}
    return res.code, events


def built_ok(ws, *args: str) -> dict[str, dict]:
    code, events = run_json(ws, *args)
    assert code == 0, events
    return events


def statuses(events: dict[str, dict]) -> dict[str, str]:
    return {node: e["status"] for node, e in events.items()}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo(*args: str) -> bytes:
    proc = subprocess.run([need_tool("skopeo"), *args], check=False, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


# -- reproducibility -----------------------------------------------------------------------------

REPRO = {
    "p/BUILD.yaml": """
        img:
          rule: image
          platforms: [linux/amd64, linux/arm64]
        m: {rule: manifest, images: [":img"]}
    """,
    "p/Dockerfile": """
        FROM scratch AS build
        COPY tool.sh /out/
        FROM scratch
        COPY --from=build /out/tool.sh /usr/bin/tool
        COPY src/ /src/
        ADD bundle.tar /opt/
        ARG TARGETARCH
        COPY <<EOF /etc/arch
        ${TARGETARCH}
        EOF
        ENV PATH=/usr/bin
    """,
    "p/tool.sh": "#!/bin/sh\necho tool\n",
    "p/src/a.c": "int a;\n",
    "p/src/deep/b.c": "int b;\n",
    "p/src/deep/c.c": "int c;\n",
}


def _bundle() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("pkg/data")
        info.size, info.mtime, info.uname = 5, 1_700_000_000, "someone"
        tar.addfile(info, io.BytesIO(b"data\n"))
    return buf.getvalue()


def test_same_digests_from_any_directory_at_any_time(make_ws, monkeypatch):
    one, two = make_ws("first/checkout"), make_ws("elsewhere")
    for ws in (one, two):
        ws.write({**REPRO, "p/bundle.tar": _bundle()})
    os.chmod(one.path("p/tool.sh"), 0o755)
    os.chmod(two.path("p/tool.sh"), 0o775)  # another umask
    os.chmod(two.path("p/src/a.c"), 0o664)
    for n, path in enumerate(sorted(two.path("p").rglob("*"))):  # other mtimes, in any order
        os.utime(path, (1_000_000 + n * 7919, 1_000_000 + n * 7919))
    digests = []
    for ws in (one, two):
        events = built_ok(ws, "//p:all")
        digests.append({n: e["digest"] for n, e in events.items()})
    assert digests[0] == digests[1]
    assert len(set(digests[0].values())) == 3  # two images and their index
    assert digests[0]["//p:m"] == digests[0]["//p:img"]  # the manifest over them is that index
    # later, without the cache: the same again
    assert {n: e["digest"] for n, e in built_ok(one, "//p:all", "--no-cache").items()} \
        == digests[0]

    s = store(one)
    manifest = s.read_json(digests[0]["//p:img[linux/arm64]"])
    config = s.read_json(manifest["config"]["digest"])
    assert config["created"] == "1970-01-01T00:00:00Z"
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(s.read_bytes(layer["digest"])), mode="r:gz") as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names, key=lambda n: n.split("/"))  # sorted entries
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        assert all(m.uname == "" and m.gname == "" for m in members)
        assert all(m.mode & 0o022 == 0 for m in members)
        # a fixed gzip header: no mtime, no file name
        head = s.read_bytes(layer["digest"])[:10]
        assert head[:3] == b"\x1f\x8b\x08" and head[3] & 0x08 == 0 and head[4:8] == b"\0\0\0\0"

    # SOURCE_DATE_EPOCH fixes the times instead of 0, and so gives other digests
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    events = built_ok(one, "//p:img")
    desc = events["//p:img[linux/amd64]"]["digest"]
    assert desc != digests[0]["//p:img[linux/amd64]"]
    manifest = s.read_json(desc)
    assert s.read_json(manifest["config"]["digest"])["created"] == "2023-11-14T22:13:20Z"
    with tarfile.open(fileobj=io.BytesIO(s.read_bytes(manifest["layers"][0]["digest"]))) as tar:
        assert {m.mtime for m in tar} == {1_700_000_000}


def test_a_layer_shared_by_platforms_is_compressed_once(ws, monkeypatch):
    from graphbuild.oci import layers

    calls = []
    real = layers.write_layer_to_dir

    def counting(entries, *args, **kwargs):
        calls.append(sorted(e.path for e in entries))
        return real(entries, *args, **kwargs)

    monkeypatch.setattr(layers, "write_layer_to_dir", counting)
    ws.write({
        "p/BUILD.yaml": """
            img: {rule: image, platforms: [linux/amd64, linux/arm64, linux/arm/v7], tags: [s:v1]}
        """,
        "p/Dockerfile": "FROM scratch\nCOPY big /big\nARG TARGETARCH\nCOPY <<EOF /arch\n"
                        "$TARGETARCH\nEOF\n",
        "p/big": os.urandom(1 << 20),
    })
    built_ok(ws, "//p:img", "-j", "3")
    assert sorted(calls) == [["arch"]] * 3 + [["big"]]
    s = store(ws)
    index = s.read_json(s.lookup("s:v1")["digest"])
    firsts = {s.read_json(m["digest"])["layers"][0]["digest"] for m in index["manifests"]}
    seconds = {s.read_json(m["digest"])["layers"][1]["digest"] for m in index["manifests"]}
    assert len(firsts) == 1 and len(seconds) == 3


# -- tags ----------------------------------------------------------------------------------------

def test_tags_name_images_and_indexes(ws):
    ws.write({
        "p/BUILD.yaml": """
            multi:
              rule: image
              platforms: [linux/amd64, linux/arm/v7]
              tags: ["app:{os}-{arch}{variant}", "app:latest", "127.0.0.1:5000/team/app:v2"]
            solo:
              rule: image
              platforms: [linux/arm64]
              tags: ["solo:v1", "solo:{arch}"]
        """,
        "p/Dockerfile": "FROM scratch\nCOPY f /f\n",
        "p/f": "f\n",
    })
    events = built_ok(ws, "//p:all")
    s = store(ws)
    amd, arm = events["//p:multi[linux/amd64]"]["digest"], events["//p:multi[linux/arm/v7]"]["digest"]
    assert s.lookup("app:linux-amd64")["digest"] == amd
    assert s.lookup("app:linux-armv7")["digest"] == arm
    # a plain tag on several platforms names an index over them, as buildx bake does
    for tag in ("app:latest", "127.0.0.1:5000/team/app:v2"):
        desc = s.lookup(tag)
        assert desc["mediaType"] == mt.OCI_INDEX
        assert desc["digest"] == events["//p:multi"]["digest"]
        index = s.read_json(desc["digest"])
        assert [(m["digest"], m["platform"]) for m in index["manifests"]] == [
            (amd, {"architecture": "amd64", "os": "linux"}),
            (arm, {"architecture": "arm", "os": "linux", "variant": "v7"})]
    # on one platform, the image manifest itself
    solo = events["//p:solo[linux/arm64]"]["digest"]
    assert s.lookup("solo:v1")["mediaType"] == mt.OCI_MANIFEST
    assert s.lookup("solo:v1")["digest"] == s.lookup("solo:arm64")["digest"] == solo
    # what index.json says: the label once, each tag once more with its whole name
    names = {(e["annotations"].get(mt.REF_NAME), e["annotations"][mt.LABEL], e["digest"])
             for e in s.entries()}
    assert ("127.0.0.1:5000/team/app:v2", "//p:multi", events["//p:multi"]["digest"]) in names
    assert (None, "//p:solo[linux/arm64]", solo) in names
    # skopeo finds them by tag
    arm_config = json.loads(skopeo("inspect", "--config", f"oci:{oci_dir(ws)}:app:linux-armv7"))
    assert (arm_config["architecture"], arm_config["variant"]) == ("arm", "v7")
    raw = skopeo("inspect", "--raw", f"oci:{oci_dir(ws)}:127.0.0.1:5000/team/app:v2")
    assert sha(raw) == events["//p:multi"]["digest"]
    validate_store(s)



def test_no_op_build_restores_tags_removed_from_index_json(ws):
    """A no-op build skips re-reading index.json only while it is as the last build left it."""
    ws.write({
        "p/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64]\n  tags: [app:v1]\n",
        "p/Dockerfile": "FROM scratch\nCOPY f /f\n",
        "p/f": "f\n",
    })
    digest = built_ok(ws, "//p:img")["//p:img[linux/amd64]"]["digest"]
    built_ok(ws, "//p:img")  # a no-op: index.json untouched
    s = store(ws)
    index_path = s.root / "index.json"
    index = json.loads(index_path.read_text())
    index["manifests"] = []  # another tool rewrote it
    index_path.write_text(json.dumps(index))
    assert s.lookup("app:v1") is None
    events = built_ok(ws, "//p:img")
    assert events["//p:img[linux/amd64]"]["status"] == "cached"
    assert s.lookup("app:v1")["digest"] == digest
    index_path.unlink()
    built_ok(ws, "//p:img")
    assert s.lookup("app:v1")["digest"] == digest
    validate_store(s)

# -- manifests -----------------------------------------------------------------------------------

MANIFESTS = {
    "p/BUILD.yaml": """
        x86: {rule: image, dockerfile: Dockerfile.x86, platforms: [linux/amd64], tags: ["myapp:x86"]}
        arm: {rule: image, dockerfile: Dockerfile.arm, platforms: [linux/arm64], tags: ["myapp:arm"]}
        armv7: {rule: image, dockerfile: Dockerfile.arm, platforms: [linux/arm/v7]}
        multi: {rule: image, dockerfile: Dockerfile.arm, platforms: [linux/amd64, linux/arm64]}
        v1:
          rule: manifest
          images: [":x86", ":arm", ":armv7"]
          tags: ["myapp:v1"]
          annotations: {org.opencontainers.image.source: "https://example.com/repo"}
          require_platforms: [linux/amd64, linux/arm64]
          platform_annotations:
            ":arm": {os: linux, arch: arm64, annotations: {com.example.built-on: graviton}}
            ":x86": {os_version: "10.0.17763", os_features: [win32k]}
            ":armv7": {arch: riscv64, variant: "", force: true}
        list:
          rule: manifest
          images: [":multi"]
          tags: ["myapp:list"]
          media_type: docker
        one:
          rule: manifest
          images: ["//p:multi[linux/arm64]"]
    """,
    "p/Dockerfile.x86": "FROM scratch\nCOPY x86.txt /which\nCMD [\"/which\"]\n",
    "p/Dockerfile.arm": "FROM scratch\nCOPY arm.txt /which\n",
    "p/x86.txt": "x86\n",
    "p/arm.txt": "arm\n",
}


def test_manifest_index_platforms_annotations_and_docker_lists(ws, tmp_path):
    ws.write(MANIFESTS)
    events = built_ok(ws, "//p:all")
    s = store(ws)
    digest = events["//p:v1"]["digest"]
    assert s.lookup("myapp:v1")["digest"] == digest
    index = s.read_json(digest)
    assert index["mediaType"] == mt.OCI_INDEX
    assert index["annotations"] == {"org.opencontainers.image.source": "https://example.com/repo"}
    x86, arm, armv7 = index["manifests"]
    assert x86["digest"] == events["//p:x86[linux/amd64]"]["digest"]
    assert arm["digest"] == events["//p:arm[linux/arm64]"]["digest"]
    assert armv7["digest"] == events["//p:armv7[linux/arm/v7]"]["digest"]
    # the platform comes from each image's config; overrides apply on top
    assert x86["platform"] == {"architecture": "amd64", "os": "linux",
                               "os.version": "10.0.17763", "os.features": ["win32k"]}
    assert arm["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert arm["annotations"] == {"com.example.built-on": "graviton"}
    assert "annotations" not in x86
    assert armv7["platform"] == {"architecture": "riscv64", "os": "linux"}  # forced
    arm_cfg = s.read_json(s.read_json(armv7["digest"])["config"]["digest"])
    assert (arm_cfg["architecture"], arm_cfg["variant"]) == ("arm", "v7")  # the image is as built

    # a Docker manifest list, with Docker-typed children over the same config and layer blobs
    lst = s.read_json(events["//p:list"]["digest"])
    assert lst["mediaType"] == mt.DOCKER_MANIFEST_LIST and "annotations" not in lst
    assert [m["platform"] for m in lst["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    for entry, plat in zip(lst["manifests"], ("linux/amd64", "linux/arm64")):
        assert entry["mediaType"] == mt.DOCKER_MANIFEST
        child = s.read_json(entry["digest"])
        oci = s.read_json(events[f"//p:multi[{plat}]"]["digest"])
        assert child["mediaType"] == mt.DOCKER_MANIFEST
        assert child["config"] == {**oci["config"], "mediaType": mt.DOCKER_CONFIG}
        assert [lay["mediaType"] for lay in child["layers"]] == [mt.DOCKER_LAYER_GZIP]
        assert [lay["digest"] for lay in child["layers"]] == [lay["digest"] for lay in oci["layers"]]
    # an entry naming one platform of a multi-platform image
    one = s.read_json(events["//p:one"]["digest"])
    assert [m["digest"] for m in one["manifests"]] == [events["//p:multi[linux/arm64]"]["digest"]]

    # every manifest, config, index and the layout validate against the OCI schemas
    validate_store(s)
    for e in events.values():
        kind = {mt.OCI_INDEX: "index", mt.OCI_MANIFEST: "manifest"}.get(
            s.read_json(e["digest"]).get("mediaType"))
        if kind:
            validate(kind, s.read_json(e["digest"]))

    # skopeo reads the store by tag, and copies the whole index keeping its digest
    store_ref = f"oci:{oci_dir(ws)}:myapp:v1"
    assert skopeo("inspect", "--raw", store_ref) == s.read_bytes(digest)
    copy = tmp_path / "copy"
    skopeo("copy", "--all", "--quiet", store_ref, f"oci:{copy}:copied")
    assert sha(skopeo("inspect", "--raw", f"oci:{copy}:copied")) == digest
    # (skopeo 1.9 finds no Docker manifest list in an OCI layout by name: not checked here)
    validate_store(Store(copy))


def test_a_failed_platform_skips_the_manifest_and_names_it(ws):
    ws.write({
        "p/BUILD.yaml": """
            bin:
              rule: command
              cmd: 'mkdir -p $OUT && if [ "$TARGETARCH" = amd64 ]; then echo ok > $OUT/app; fi'
              platforms: [linux/amd64, linux/arm64]
            img:
              rule: image
              platforms: [linux/amd64, linux/arm64]
              contexts: {bin: ":bin"}
            m: {rule: manifest, images: [":img"], tags: ["m:v1"]}
        """,
        "p/Dockerfile": "FROM scratch\nCOPY --from=bin app /app\n",
    })
    code, events = run_json(ws, "//p:m", "--keep-going")
    assert code == 1
    assert events["//p:img[linux/amd64]"]["status"] == "built"
    failed = events["//p:img[linux/arm64]"]
    assert failed["status"] == "failed" and "p/Dockerfile:2" in failed["reason"]
    assert events["//p:m"]["status"] == "skipped"
    assert "//p:img[linux/arm64]" in events["//p:m"]["reason"]
    assert events["//p:m"]["digest"] is None
    assert store(ws).lookup("m:v1") is None  # no partial index


# -- export and inspect --------------------------------------------------------------------------

def test_export_oci_and_docker_archives(ws, tmp_path):
    ws.write(MANIFESTS)
    events = built_ok(ws, "//p:v1", "//p:x86")
    s = store(ws)
    oci_tar, docker_tar = tmp_path / "v1.oci.tar", tmp_path / "v1.docker.tar"
    res = ws.run("export", "//p:v1", "-o", str(oci_tar), "--format", "oci")
    assert res.code == 0, res
    # the whole index, read by skopeo from the archive
    assert sha(skopeo("inspect", "--raw", f"oci-archive:{oci_tar}")) == events["//p:v1"]["digest"]
    info = json.loads(skopeo("inspect", f"oci-archive:{oci_tar}"))
    assert info["Architecture"] == "amd64"
    with tarfile.open(oci_tar) as tar:
        assert len([n for n in tar.getnames() if n.startswith("blobs/sha256/")]) == len(
            {d["digest"] for d in s.walk(s.lookup("myapp:v1"))})

    # docker format: one platform of the manifest, read back by skopeo
    res = ws.run("export", "//p:v1", "-o", str(docker_tar), "--format", "docker",
                 "--platform", "linux/arm64")
    assert res.code == 0, res
    dest = tmp_path / "from-docker"
    skopeo("copy", "--quiet", f"docker-archive:{docker_tar}", f"oci:{dest}:x")
    config = json.loads(skopeo("inspect", "--config", "--raw", f"oci:{dest}:x"))
    arm = s.read_json(events["//p:arm[linux/arm64]"]["digest"])
    assert config == s.read_json(arm["config"]["digest"])
    with tarfile.open(docker_tar) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest[0]["RepoTags"] == ["myapp:v1"]

    # a single-platform image needs no --platform
    single = tmp_path / "x86.tar"
    assert ws.run("export", "//p:x86", "-o", str(single), "--format", "docker").code == 0
    skopeo("copy", "--quiet", f"docker-archive:{single}", f"oci:{dest}:y")
    config = json.loads(skopeo("inspect", "--config", "--raw", f"oci:{dest}:y"))
    assert config["config"]["Cmd"] == ["/which"]

    # without --platform, the host's platform, as docker save would pick
    host = tmp_path / "host.tar"
    res = ws.run("export", "//p:v1", "-o", str(host), "--format", "docker")
    if str(platforms.host()) in ("linux/amd64", "linux/arm64"):
        assert res.code == 0, res
        skopeo("copy", "--quiet", f"docker-archive:{host}", f"oci:{dest}:host")
        config = json.loads(skopeo("inspect", "--config", "--raw", f"oci:{dest}:host"))
        assert config["architecture"] == platforms.host().arch
    # a platform the index does not have is refused with a hint, and nothing written
    res = ws.run("export", "//p:v1", "-o", str(tmp_path / "no.tar"), "--format", "docker",
                 "--platform", "linux/s390x")
    assert res.code == 2 and "linux/s390x" in res.err and "hint:" in res.err, res
    assert not (tmp_path / "no.tar").exists()


def test_inspect_prints_what_docker_manifest_inspect_prints(ws):
    ws.write(MANIFESTS)
    events = built_ok(ws, "//p:all")
    s = store(ws)
    for label, node in (("//p:v1", "//p:v1"), ("//p:list", "//p:list"),
                        ("//p:x86", "//p:x86[linux/amd64]"), ("//p:multi", "//p:multi")):
        raw = s.read_bytes(events[node]["digest"])
        res = ws.run("inspect", label)
        assert res.code == 0, res
        assert res.out == format_manifest_inspect(raw, json.loads(raw)["mediaType"]), label
    # an index prints docker's rebuilt list: three-space indent, entry platforms
    printed = json.loads(ws.run("inspect", "//p:v1").out)
    assert [m["digest"] for m in printed["manifests"]] == [
        m["digest"] for m in s.read_json(events["//p:v1"]["digest"])["manifests"]]
    # one platform of an image, and a tag
    assert ws.run("inspect", "//p:multi[linux/arm64]").out == format_manifest_inspect(
        s.read_bytes(events["//p:multi[linux/arm64]"]["digest"]), mt.OCI_MANIFEST)
    assert ws.run("inspect", "myapp:v1").out == ws.run("inspect", "//p:v1").out

    # --verbose: docker's ImageManifest per image, plus each image's config
    verbose = json.loads(ws.run("inspect", "--verbose", "//p:v1").out)
    index = s.read_json(events["//p:v1"]["digest"])
    assert [v["Descriptor"]["digest"] for v in verbose] == [m["digest"] for m in index["manifests"]]
    for item, entry in zip(verbose, index["manifests"]):
        manifest = s.read_json(entry["digest"])
        assert item["Ref"] == f"docker.io/library/myapp:v1@{entry['digest']}"
        assert item["Descriptor"]["platform"]["architecture"] == entry["platform"]["architecture"]
        assert item["OCIManifest"] == manifest
        assert item["Config"] == s.read_json(manifest["config"]["digest"])
    docker_list = json.loads(ws.run("inspect", "--verbose", "//p:list").out)
    assert [sorted(v) for v in docker_list] == [
        ["Config", "Descriptor", "Raw", "Ref", "SchemaV2Manifest"]] * 2
    assert [v["Config"]["architecture"] for v in docker_list] == ["amd64", "arm64"]
    lone = json.loads(ws.run("inspect", "-v", "//p:x86").out)
    assert lone["Config"]["config"]["Cmd"] == ["/which"]
    assert lone["Ref"] == "docker.io/library/myapp:x86"

    # a target that was never built, and a command target
    res = ws.run("inspect", "//p:armv7")
    assert res.code == 0  # built above
    ws.write({"p/BUILD.yaml": textwrap.dedent(MANIFESTS["p/BUILD.yaml"])
              + "new: {rule: image, dockerfile: Dockerfile.x86, platforms: [linux/amd64]}\n"})
    res = ws.run("inspect", "//p:new")
    assert res.code == 2 and "not been built" in res.err, res


# -- incremental ---------------------------------------------------------------------------------

INCREMENTAL = {
    "p/BUILD.yaml": """
        app:
          rule: image
          platforms: [linux/amd64, linux/arm64]
          tags: ["app:v1"]
        other:
          rule: image
          dockerfile: other.Dockerfile
          platforms: [linux/amd64, linux/arm/v7]
        m: {rule: manifest, images: [":app"], tags: ["m:v1"]}
        both: {rule: manifest, images: [":app", "//p:other[linux/arm/v7]"]}
    """,
    "p/Dockerfile": "FROM scratch\nCOPY src/ /src/\nCOPY *.txt /txt/\nCOPY . /all/\n",
    "p/other.Dockerfile": "FROM scratch\nCOPY other.bin /other\n",
    "p/.dockerignore": "docs\n*.md\nother.bin\n*.dockerignore\n",
    "p/other.Dockerfile.dockerignore": "*.md\n",  # its own: other.bin is not ignored for it
    "p/src/main.c": "int main;\n",
    "p/a.txt": "a\n",
    "p/other.bin": "o\n",
    "p/README.md": "not copied: ignored\n",
    "p/docs/guide": "not copied: ignored\n",
}


def test_edits_rebuild_exactly_what_they_reach(ws):
    ws.write(INCREMENTAL)
    assert set(statuses(built_ok(ws, "//p:all")).values()) == {"built"}

    # files the Dockerfile cannot reach (ignored, or outside the context) rebuild nothing
    ws.write({"p/README.md": "edited\n", "p/docs/guide": "edited\n", "p/docs/new": "new\n",
              "unrelated/file": "x\n"})
    assert set(statuses(built_ok(ws, "//p:all")).values()) == {"cached"}

    # a COPY'd file: that image's platform nodes, its index and the manifests over it
    ws.write({"p/src/main.c": "int main = 1;\n"})
    res = ws.run("run", "//p:all", "--explain")
    assert res.code == 0, res
    assert "explain //p:app[linux/amd64]: input changed: p/src/main.c" in res.err + res.out
    events = built_ok(ws, "//p:all")  # and now all cached again
    assert set(statuses(events).values()) == {"cached"}

    ws.write({"p/other.bin": "o2\n"})
    got = statuses(built_ok(ws, "//p:all"))
    assert {n for n, st in got.items() if st == "built"} == {
        "//p:other[linux/amd64]", "//p:other[linux/arm/v7]", "//p:other", "//p:both"}

    # a new file matched by a COPY wildcard is a new input
    ws.write({"p/b.txt": "b\n"})
    got = statuses(built_ok(ws, "//p:all"))
    assert {n for n, st in got.items() if st == "built"} == {
        "//p:app[linux/amd64]", "//p:app[linux/arm64]", "//p:app", "//p:m", "//p:both"}

    # an edited .dockerignore is an input of the images it applies to; the images come out the
    # same, so nothing over them runs again
    ws.write({"p/other.Dockerfile.dockerignore": "*.md\n*.txt\n"})
    events = built_ok(ws, "//p:all")
    assert {n for n, e in events.items() if e["status"] == "built"} == {
        "//p:other[linux/amd64]", "//p:other[linux/arm/v7]"}
    assert "p/other.Dockerfile.dockerignore" in events["//p:other[linux/amd64]"]["reason"]

    # a touched file with the same content rebuilds nothing
    os.utime(ws.path("p/a.txt"), (2_000_000_000, 2_000_000_000))
    assert set(statuses(built_ok(ws, "//p:all")).values()) == {"cached"}


def test_explain_and_affected_agree_on_image_inputs(ws):
    need_tool("git")
    ws.write(INCREMENTAL)
    git = ["git", "-C", str(ws.root), "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    ws.write({"p/README.md": "edited\n"})
    res = ws.run("affected", "--since", "HEAD", "//p:all")
    assert res.code == 0, res
    assert res.out.strip() == ""
    ws.write({"p/other.bin": "o2\n"})
    res = ws.run("affected", "--since", "HEAD", "//p:all")
    assert res.code == 0, res
    assert set(res.out.split()) == {"//p:other", "//p:both"}


def test_the_quick_demo_as_users_run_it(ws):
    """The installed CLI in its own process, then skopeo on the store by tag."""
    ws.write({
        "pkg/BUILD.yaml": 'img: {rule: image, tags: ["myapp:v1"], platforms: [linux/amd64]}\n',
        "pkg/Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n",
        "pkg/a.txt": "hello\n",
    })
    res = ws.run_subprocess("run", "//pkg:all")
    assert res.code == 0, res
    assert "Traceback" not in res.err
    raw = skopeo("inspect", "--raw", f"oci:{oci_dir(ws)}:myapp:v1")
    manifest = json.loads(raw)
    assert manifest["mediaType"] == mt.OCI_MANIFEST and len(manifest["layers"]) == 1
    assert sha(raw) == store(ws).lookup("myapp:v1")["digest"]
    res = ws.run_subprocess("inspect", "//pkg:img")
    assert res.code == 0 and json.loads(res.out) == manifest, res


def test_platform_filter_leaves_a_manifest_out_and_says_so(ws):
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64, linux/arm64]\n",
        "p/BUILD.yaml": """
            img:
              rule: image
            m:
              rule: manifest
              images: [":img"]
              tags: ["m:v1"]
        """,
        "p/Dockerfile": "FROM scratch\nCOPY a /a\n",
        "p/a": "a\n",
    })
    res = ws.run("run", "//p:all", "--platform", "linux/amd64", "--output", "json")
    assert res.code == 0, res
    assert "note: p/BUILD.yaml:3: //p:m: left out of this build" in res.err
    labels = {e["label"] for e in res.events() if e["event"] == "action_finished"}
    assert labels == {"//p:img"}
