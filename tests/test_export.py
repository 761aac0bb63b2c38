"""OCI and docker archives: contents, determinism, platform choice, and skopeo reading them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from oci_schema import put_image, put_index, require_tool, two_platform_index, validate

from graphbuild import platforms
from graphbuild.oci import export
from graphbuild.oci import mediatypes as mt
from graphbuild.oci.export import ExportError, export_docker_archive, export_oci_archive
from graphbuild.oci.store import BlobNotFound, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "oci")


def run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stderr}"
    return proc


def members(path: Path) -> dict[str, bytes | None]:
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()
        }


# -- OCI archive ------------------------------------------------------------------------------


def test_oci_archive_holds_a_minimal_valid_layout(store: Store, tmp_path: Path) -> None:
    index, _, _ = two_platform_index(store)
    store.put_bytes(b"unrelated blob")
    out = tmp_path / "image.tar"
    export_oci_archive(store, index, out, "myapp:v1")
    files = members(out)
    validate("layout", json.loads(files["oci-layout"]))
    top = json.loads(files["index.json"])
    validate("index", top)
    assert top["manifests"] == [
        {
            "mediaType": mt.OCI_INDEX,
            "digest": index["digest"],
            "size": index["size"],
            "annotations": {mt.REF_NAME: "myapp:v1"},
        }
    ]
    blobs = {name.rsplit("/", 1)[1] for name in files if name.startswith("blobs/sha256/")}
    assert blobs == {d["digest"][7:] for d in store.walk(index)}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]


def test_oci_archive_is_deterministic(store: Store, tmp_path: Path) -> None:
    index, _, _ = two_platform_index(store)
    export_oci_archive(store, index, tmp_path / "a.tar", "myapp:v1")
    other = Store(tmp_path / "other")
    export_oci_archive(other, two_platform_index(other)[0], tmp_path / "b.tar", "myapp:v1")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_oci_archive_drops_store_annotations(store: Store, tmp_path: Path) -> None:
    image = put_image(store, "amd64")
    store.set_refs("//app:img", image, ["myapp:v1"])
    export_oci_archive(store, store.lookup("myapp:v1"), tmp_path / "a.tar")
    entry = json.loads(members(tmp_path / "a.tar")["index.json"])["manifests"][0]
    assert "annotations" not in entry and entry["platform"] == image["platform"]


def test_oci_archive_of_an_incomplete_image_fails_cleanly(store: Store, tmp_path: Path) -> None:
    index, amd64, _ = two_platform_index(store)
    store.blob_path(amd64["digest"]).unlink()
    with pytest.raises(BlobNotFound):
        export_oci_archive(store, index, tmp_path / "a.tar")
    assert list(tmp_path.glob("*.tar*")) == []


def test_skopeo_reads_the_oci_archive(store: Store, tmp_path: Path) -> None:
    require_tool("skopeo")
    index, _, _ = two_platform_index(store)
    out = tmp_path / "image.tar"
    export_oci_archive(store, index, out, "127.0.0.1:5000/myapp:v1")
    raw = run("skopeo", "inspect", "--raw", f"oci-archive:{out}:127.0.0.1:5000/myapp:v1").stdout
    assert raw.encode() == store.read_bytes(index["digest"])
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{out}").stdout)
    assert info["Digest"] == index["digest"]
    run("skopeo", "copy", "--all", f"oci-archive:{out}", f"oci:{tmp_path / 'dir'}:x")
    assert Store(tmp_path / "dir").lookup("x")["digest"] == index["digest"]


def test_skopeo_reads_a_single_manifest_oci_archive(store: Store, tmp_path: Path) -> None:
    require_tool("skopeo")
    image = put_image(store, "arm64", variant="v8")
    out = tmp_path / "image.tar"
    export_oci_archive(store, image, out, "myapp:arm64")
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{out}:myapp:arm64").stdout)
    assert (info["Digest"], info["Architecture"]) == (image["digest"], "arm64")


# -- docker archive ---------------------------------------------------------------------------


def test_docker_archive_layout(store: Store, tmp_path: Path) -> None:
    index, _, arm64 = two_platform_index(store)
    out = tmp_path / "docker.tar"
    export_docker_archive(store, index, out, ["myapp:v1", "127.0.0.1:5000/myapp"], "linux/arm64")
    files = members(out)
    (entry,) = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["myapp:v1", "127.0.0.1:5000/myapp:latest"]
    manifest = store.read_json(arm64["digest"])
    config_digest = manifest["config"]["digest"]
    assert entry["Config"] == config_digest[7:] + ".json"
    assert files[entry["Config"]] == store.read_bytes(config_digest)
    diff_ids = store.read_json(config_digest)["rootfs"]["diff_ids"]
    layers = [files[name] for name in entry["Layers"]]
    assert ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers] == diff_ids
    top = entry["Layers"][-1].split("/")[0]
    assert json.loads(files["repositories"]) == {
        "myapp": {"v1": top},
        "127.0.0.1:5000/myapp": {"latest": top},
    }


def test_docker_archive_is_deterministic(store: Store, tmp_path: Path) -> None:
    index, _, _ = two_platform_index(store)
    for name in ("a.tar", "b.tar"):
        export_docker_archive(store, index, tmp_path / name, ["myapp:v1"], "linux/amd64")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def _exported_arch(store: Store, path: Path) -> str:
    (entry,) = json.loads(members(path)["manifest.json"])
    return json.loads(members(path)[entry["Config"]])["architecture"]


def test_docker_archive_platform_choice(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, _, _ = two_platform_index(store)
    out = tmp_path / "d.tar"
    export_docker_archive(store, index, out, ["a:b"], platforms.parse("linux/arm64/v8"))
    assert _exported_arch(store, out) == "arm64"
    monkeypatch.setattr(platforms, "host", lambda: platforms.Platform("linux", "amd64"))
    export_docker_archive(store, index, out, ["a:b"])
    assert _exported_arch(store, out) == "amd64"
    monkeypatch.setattr(platforms, "host", lambda: platforms.Platform("linux", "s390x"))
    with pytest.raises(ExportError, match=r"linux/amd64, linux/arm64"):
        export_docker_archive(store, index, out, ["a:b"])
    with pytest.raises(ExportError, match="linux/riscv64"):
        export_docker_archive(store, index, out, ["a:b"], "linux/riscv64")


def test_docker_archive_ignores_attestations(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platforms, "host", lambda: platforms.Platform("linux", "s390x"))
    image = put_image(store, "arm64", variant="v8")
    attestation = {
        **put_image(store, "unknown", files={"sbom": b"{}"}),
        "platform": {"architecture": "unknown", "os": "unknown"},
    }
    index = put_index(store, [image, attestation])
    export_docker_archive(store, index, tmp_path / "d.tar", ["a:b"])
    assert _exported_arch(store, tmp_path / "d.tar") == "arm64"


@pytest.mark.parametrize("tag", ["myapp@sha256:" + "a" * 64, "Bad Tag"])
def test_docker_archive_rejects_unusable_tags(store: Store, tmp_path: Path, tag: str) -> None:
    image = put_image(store, "amd64")
    with pytest.raises((ExportError, ValueError)):
        export_docker_archive(store, image, tmp_path / "d.tar", [tag])


def test_docker_archive_checks_diff_ids(store: Store, tmp_path: Path) -> None:
    image = put_image(store, "amd64")
    manifest = store.read_json(image["digest"])
    config = store.read_json(manifest["config"]["digest"])
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    manifest["config"] = store.put_json(config, mt.OCI_CONFIG)
    lying = store.put_json(manifest, mt.OCI_MANIFEST)
    with pytest.raises(export.BlobCorrupt):
        export_docker_archive(store, lying, tmp_path / "d.tar", ["a:b"])
    assert not (tmp_path / "d.tar").exists()


def test_skopeo_reads_the_docker_archive(store: Store, tmp_path: Path) -> None:
    require_tool("skopeo")
    index, _, _ = two_platform_index(store)
    out = tmp_path / "docker.tar"
    export_docker_archive(store, index, out, ["myapp:v1"], "linux/arm64")
    run("skopeo", "copy", f"docker-archive:{out}", f"oci:{tmp_path / 'dir'}:x")
    info = json.loads(run("skopeo", "inspect", f"oci:{tmp_path / 'dir'}:x").stdout)
    assert (info["Architecture"], info["Os"]) == ("arm64", "linux")
    tagged = json.loads(run("skopeo", "inspect", f"docker-archive:{out}:myapp:v1").stdout)
    assert tagged["Architecture"] == "arm64"
