"""Supply-chain records: an SPDX SBOM and SLSA provenance per image, attached as OCI 1.1
referrers in the store and on push (the fallback tag on docker-registry 2.8), and the signing
hook that runs before any tag moves."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request

import pytest
import registry_fixtures as fx
from conftest import need_tool

registry = fx.registry

DPKG = """\
Package: libfoo1
Status: install ok installed
Architecture: amd64
Version: 1.2-3

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 9

"""
APK = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n"
METADATA = "Metadata-Version: 2.1\nName: Requests_Toolbelt\nVersion: 1.0.0\n\nbody\n"


def _image(ws, extra_build: str = "", files: dict | None = None, workspace: str = "") -> None:
    ws.write({
        "WORKSPACE.yaml": workspace or "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": f"""
            img:
              rule: image
              {extra_build}
        """,
        "app/Dockerfile": "FROM scratch\nCOPY rootfs/ /\n",
        "app/rootfs/etc/os-release": 'ID=debian\nVERSION_ID="12"\n',
        "app/rootfs/var/lib/dpkg/status": DPKG,
        "app/rootfs/lib/apk/db/installed": APK,
        "app/rootfs/usr/lib/python3/site-packages/requests_toolbelt-1.0.0.dist-info/METADATA":
            METADATA,
        **(files or {}),
    })


def _sbom(ws, *args: str) -> dict:
    res = ws.run("sbom", "//app:img", *args)
    assert res.code == 0, res
    return json.loads(res.out)


def _purls(doc: dict) -> set[str]:
    return {r["referenceLocator"] for p in doc["packages"] for r in p.get("externalRefs", [])}


def test_sbom_is_valid_spdx_with_files_and_packages(ws, tmp_path):
    skopeo = need_tool("skopeo")  # a Go binary from Debian: its build info is read
    _image(ws)
    shutil.copy(skopeo, ws.path("app/rootfs/usr/bin-skopeo"))
    ws.write({"app/Dockerfile": "FROM scratch\nCOPY rootfs/ /\nCOPY rootfs/usr/bin-skopeo /usr/bin/skopeo\n"})
    assert ws.run("run", "//app:img").code == 0
    doc = _sbom(ws)
    path = tmp_path / "sbom.spdx.json"
    path.write_text(json.dumps(doc))
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    assert validate_full_spdx_document(parse_file(str(path))) == []
    assert doc["spdxVersion"] == "SPDX-2.3"
    names = {f["fileName"] for f in doc["files"]}
    assert "./var/lib/dpkg/status" in names and "./usr/bin/skopeo" in names
    status = next(f for f in doc["files"] if f["fileName"] == "./var/lib/dpkg/status")
    import hashlib

    sha256 = hashlib.sha256(DPKG.encode()).hexdigest()
    assert {"algorithm": "SHA256", "checksumValue": sha256} in status["checksums"]
    purls = _purls(doc)
    assert "pkg:deb/debian/libfoo1@1.2-3?arch=amd64" in purls
    assert not any("gone" in p for p in purls)  # not installed
    assert {"pkg:apk/debian/musl@1.2.4-r2?arch=x86_64", "pkg:pypi/requests-toolbelt@1.0.0"} <= purls
    assert any(p.startswith("pkg:golang/stdlib@go1.") for p in purls)
    assert any(p.startswith("pkg:golang/github.com/containers/skopeo") for p in purls)


def test_go_modules_of_a_module_build(ws):
    buildctl = need_tool("buildctl")  # built with modules: `go version -m` lists its deps
    _image(ws)
    shutil.copy(buildctl, ws.path("app/rootfs/buildctl"))
    assert ws.run("run", "//app:img").code == 0
    purls = _purls(_sbom(ws))
    assert "pkg:golang/github.com/moby/buildkit@%28devel%29" in purls
    assert any(p.startswith("pkg:golang/github.com/cespare/xxhash/v2@v") for p in purls)


def test_base_image_is_in_the_sbom_and_provenance(ws):
    _image(ws)
    ws.write({
        "base/BUILD.yaml": "base:\n  rule: image\n",
        "base/Dockerfile": "FROM scratch\nCOPY f /f\n", "base/f": "x",
        "app/BUILD.yaml": "img:\n  rule: image\n  contexts: {base: //base}\n",
        "app/Dockerfile": "FROM base\nCOPY rootfs/ /\n",
    })
    assert ws.run("run", "//app:img").code == 0
    from graphbuild.oci.store import Store

    base_digest = Store(ws.root / ".graphbuild/oci").lookup("//base:base[linux/amd64]")["digest"]
    doc = _sbom(ws)
    bases = [p for p in doc["packages"] if p.get("primaryPackagePurpose") == "CONTAINER"
             and p["SPDXID"] != "SPDXRef-Image"]
    assert [b["name"] for b in bases] == ["//base:base[linux/amd64]"]
    assert {"spdxElementId": "SPDXRef-Image", "relationshipType": "DESCENDANT_OF",
            "relatedSpdxElement": bases[0]["SPDXID"]} in doc["relationships"]
    assert bases[0]["versionInfo"] == base_digest


def _provenance(ws) -> dict:
    res = ws.run("inspect", "//app:img", "--referrers")
    assert res.code == 0, res
    records = json.loads(res.out)["manifests"]
    prov = next(r for r in records if r["artifactType"] == "application/vnd.in-toto+json")
    from graphbuild.oci.store import Store

    store = Store(ws.root / ".graphbuild" / "oci")
    return json.loads(store.read_bytes(store.read_json(prov["digest"])["layers"][0]["digest"]))


def test_provenance_names_inputs_and_no_host_facts(ws):
    _image(ws, 'build_args: {VERSION: "1.4", API_TOKEN: "s3cr3t"}')
    ws.write({"app/Dockerfile": "FROM scratch\nARG VERSION\nARG API_TOKEN\nCOPY rootfs/ /\n"})
    assert ws.run("run", "//app:img").code == 0
    stmt = _provenance(ws)
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"
    definition = stmt["predicate"]["buildDefinition"]
    assert set(stmt["predicate"]) == {"buildDefinition", "runDetails"}
    assert set(definition) == {"buildType", "externalParameters", "internalParameters",
                               "resolvedDependencies"}
    params = definition["externalParameters"]
    assert params["target"] == "//app:img" and params["platform"] == "linux/amd64"
    assert params["buildArgs"] == {"VERSION": "1.4", "API_TOKEN": ""}
    assert params["redactedBuildArgs"] == ["API_TOKEN"]
    deps = {d.get("name"): d["digest"] for d in definition["resolvedDependencies"]}
    assert "app/Dockerfile" in deps and "app/rootfs/var/lib/dpkg/status" in deps
    assert definition["internalParameters"]["backend"] == "native"
    assert stmt["predicate"]["runDetails"]["builder"]["id"]
    text = json.dumps(stmt)
    assert "s3cr3t" not in text and str(ws.root) not in text
    assert "/root/" not in text and "/home/" not in text and "/tmp/" not in text


def test_same_inputs_give_same_records_in_two_clones(make_ws, monkeypatch):
    a, b = make_ws("one/clone"), make_ws("two")
    for w in (a, b):
        _image(w)
    assert a.run("run", "//app:img").code == 0
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert b.run("run", "//app:img").code == 0
    assert a.run("sbom", "//app:img").out == b.run("sbom", "//app:img").out
    assert _provenance(a) == _provenance(b)


def test_attest_off_and_bad_values(ws):
    _image(ws, "attest: {sbom: false}")
    assert ws.run("run", "//app:img").code == 0
    res = ws.run("sbom", "//app:img")
    assert res.code == 2 and "has no SBOM" in res.err and "hint:" in res.err
    kinds = {r["artifactType"] for r in json.loads(ws.run("inspect", "//app:img",
                                                          "--referrers").out)["manifests"]}
    assert kinds == {"application/vnd.in-toto+json"}
    ws.write({"app/BUILD.yaml": "img:\n  rule: image\n  attest: {sbom: maybe}\n"})
    res = ws.run("run", "//app:img")
    assert res.code == 2 and "app/BUILD.yaml:3: //app:img: attest.sbom must be true or false" \
        in res.err, res
    ws.write({"WORKSPACE.yaml": "attest: {sbm: true}\n",
              "app/BUILD.yaml": "img:\n  rule: image\n"})
    res = ws.run("run", "//app:img")
    assert res.code == 2 and "WORKSPACE.yaml:1:" in res.err and "unknown record 'sbm'" in res.err


def test_workspace_default_turns_records_off_and_no_op_adds_nothing(ws):
    _image(ws, workspace="attest: false\n")
    assert ws.run("run", "//app:img").code == 0
    assert json.loads(ws.run("inspect", "//app:img", "--referrers").out)["manifests"] == []
    ws.write({"WORKSPACE.yaml": "default_platforms: [linux/amd64]\n"})  # back to the default
    assert ws.run("run", "//app:img").code == 0
    blobs = sorted((ws.root / ".graphbuild/oci/blobs/sha256").iterdir())
    res = ws.run("run", "//app:img", "--output", "json")
    assert [e["status"] for e in res.events() if e["event"] == "action_finished"] == ["cached"]
    assert sorted((ws.root / ".graphbuild/oci/blobs/sha256").iterdir()) == blobs


def test_sbom_of_a_multi_platform_image_needs_a_platform(ws):
    _image(ws, workspace="default_platforms: [linux/amd64, linux/arm64]\n")
    assert ws.run("run", "//app:img").code == 0
    res = ws.run("sbom", "//app:img")
    assert res.code == 2 and "linux/amd64" in res.err and "--platform" in res.err
    assert _sbom(ws, "--platform", "linux/arm64")["packages"][0]["name"] == "//app:img[linux/arm64]"
    assert ws.run("sbom", "//app:img", "--platform", "linux/s390x").code == 2


def _get(registry, repo: str, ref: str) -> dict:
    req = urllib.request.Request(f"http://{registry.host}/v2/{repo}/manifests/{ref}",
                                 headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                                          "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _put(registry, repo: str, ref: str, doc: dict, media_type: str) -> None:
    body = json.dumps(doc).encode()
    req = urllib.request.Request(f"http://{registry.host}/v2/{repo}/manifests/{ref}", data=body,
                                 method="PUT", headers={"Content-Type": media_type})
    urllib.request.urlopen(req, timeout=30).close()


def _pushable(ws, registry, repo: str, workspace: str = "") -> None:
    _image(ws, f'tags: ["{registry.host}/{repo}:v1"]',
           workspace=workspace or "default_platforms: [linux/amd64]\n")


def test_push_attaches_records_through_the_fallback_tag(ws, registry, tmp_path):
    """docker-registry 2.8 has no referrers API: the records are listed under the fallback tag
    sha256-<hex>, merged with what another tool listed there first."""
    repo = fx.unique_repo("attest")
    _pushable(ws, registry, repo, workspace="default_platforms: [linux/amd64]\nattest: false\n")
    assert ws.run("run", "//app:img", "--push").code == 0
    from graphbuild.oci.store import Store

    subject = Store(ws.root / ".graphbuild/oci").lookup("//app:img[linux/amd64]")["digest"]
    script = tmp_path / "other.py"
    script.write_text(SIGNER)  # another tool attaches its own referrer first
    subprocess.run([sys.executable, str(script), f"{registry.host}/{repo}", subject,
                    str(tmp_path / "log")], check=True, timeout=60)
    ws.write({"WORKSPACE.yaml": "default_platforms: [linux/amd64]\n"})  # records on: same image
    res = ws.run("run", "//app:img", "--push")
    assert res.code == 0, res
    listed = _get(registry, repo, subject.replace(":", "-"))["manifests"]
    assert sorted(m["artifactType"] for m in listed) == [
        "application/spdx+json", "application/vnd.in-toto+json", "application/vnd.test.signature"]
    for m in listed:
        assert _get(registry, repo, m["digest"])["subject"]["digest"] == subject
    assert _get(registry, repo, "v1")["config"]  # the tag names the image


SIGNER = r'''
import hashlib, json, sys, urllib.request
ref, digest = sys.argv[1], sys.argv[2]
host, repo = ref.split("/", 1)
base = f"http://{host}/v2/{repo}"
def put(url, data, ctype, method="PUT"):
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": ctype})
    return urllib.request.urlopen(req, timeout=30)
sig = b'{"signed": "%s"}' % digest.encode()
for blob in (b"{}", sig):
    loc = urllib.request.urlopen(urllib.request.Request(base + "/blobs/uploads/", data=b"",
                                 method="POST"), timeout=30).headers["Location"]
    sep = "&" if "?" in loc else "?"
    d = "sha256:" + hashlib.sha256(blob).hexdigest()
    put((loc if loc.startswith("http") else f"http://{host}{loc}") + f"{sep}digest={d}", blob,
        "application/octet-stream")
head = urllib.request.urlopen(urllib.request.Request(base + "/manifests/" + digest,
        method="HEAD", headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                "application/vnd.oci.image.index.v1+json"}), timeout=30)
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": "application/vnd.test.signature",
    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
               "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()},
    "layers": [{"mediaType": "application/vnd.test.signature", "size": len(sig),
                "digest": "sha256:" + hashlib.sha256(sig).hexdigest()}],
    "subject": {"mediaType": head.headers["Content-Type"], "digest": digest,
                "size": int(head.headers["Content-Length"])}}
body = json.dumps(manifest).encode()
mdigest = "sha256:" + hashlib.sha256(body).hexdigest()
put(base + "/manifests/" + mdigest, body, manifest["mediaType"])
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": manifest["mediaType"], "digest": mdigest,
                        "size": len(body), "artifactType": manifest["artifactType"]}]}
put(base + "/manifests/" + digest.replace(":", "-"), json.dumps(index).encode(),
    index["mediaType"])
open(sys.argv[3], "a").write(f"{ref}@{digest}\n")
'''


def test_signing_runs_before_tags_move_and_its_referrer_is_kept(ws, registry, tmp_path):
    repo = fx.unique_repo("sign")
    script, log = tmp_path / "sign.py", tmp_path / "signed.txt"
    script.write_text(SIGNER)
    _pushable(ws, registry, repo, workspace=(
        "default_platforms: [linux/amd64]\n"
        f"signing: {{command: '{sys.executable} {script} {{ref}} {{digest}} {log}'}}\n"))
    res = ws.run("run", "//app:img", "--push")
    assert res.code == 0, res
    from graphbuild.oci.store import Store

    digest = Store(ws.root / ".graphbuild/oci").lookup("//app:img[linux/amd64]")["digest"]
    assert log.read_text() == f"{registry.host}/{repo}@{digest}\n"
    listed = _get(registry, repo, digest.replace(":", "-"))["manifests"]
    assert {m["artifactType"] for m in listed} == {
        "application/vnd.test.signature", "application/spdx+json", "application/vnd.in-toto+json"}
    assert _get(registry, repo, "v1")["config"]["digest"]


def test_failed_signature_moves_no_tag(ws, registry):
    repo = fx.unique_repo("nosign")
    _pushable(ws, registry, repo, workspace=(
        "default_platforms: [linux/amd64]\n"
        "signing: {command: 'echo no key for {ref} >&2; exit 3'}\n"))
    res = ws.run("run", "//app:img", "--push")
    assert res.code == 1, res
    assert "signing" in res.err and "exit 3" in res.err and "no tag was moved" in res.err
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(registry, repo, "v1")
    assert err.value.code == 404


def test_bad_signing_setting_is_exit_2(ws):
    _image(ws, workspace="signing: {cmd: 'x'}\n")
    res = ws.run("query", "//...")
    assert res.code == 2 and "WORKSPACE.yaml:1:" in res.err and "signing must be" in res.err
