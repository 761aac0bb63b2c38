"""Importing what buildx or buildah wrote (issue 5): every blob checked against its digest,
uncompressed layers gzipped (or a base image's stored layer reused), our own manifest with the
node's platform, and nothing but layout files taken from an archive."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from oci_schema import layer_tar, put_image, validate_store

from graphbuild import platforms
from graphbuild.backends import oci_import
from graphbuild.oci import mediatypes as mt
from graphbuild.oci.store import BlobCorrupt, Store

AMD64 = platforms.parse("linux/amd64")


class Layout:
    """An OCI layout as a tool writes one (buildah: uncompressed layers, tool annotations)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)

    def put(self, data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(self, layers: list[bytes], arch: str = "amd64", extra_layers=()) -> dict:
        descs = [self.put(tar, mt.OCI_LAYER_TAR) for tar in layers] + list(extra_layers)
        diff_ids = [d["digest"] for d in descs[:len(layers)]]
        diff_ids += [x["diff_id"] for x in extra_layers]
        for d in descs:
            d.pop("diff_id", None)
        config = self.put(json.dumps({"architecture": arch, "os": "linux",
                                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode(),
                          mt.OCI_CONFIG)
        manifest = self.put(json.dumps({
            "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config, "layers": descs,
            "annotations": {"org.opencontainers.image.base.name": "localhost/tmp/x:latest"},
        }).encode(), mt.OCI_MANIFEST)
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                          "manifests": [manifest]}))
        (self.root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        return manifest


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def test_uncompressed_layers_are_gzipped_and_base_layers_reused(store, tmp_path):
    base = put_image(store, "amd64", {"etc/base": b"base\n"})
    base_manifest = store.read_json(base["digest"])
    base_tar = layer_tar({"etc/base": b"base\n"})
    new_tar = layer_tar({"hello": b"hi\n"})
    layout = Layout(tmp_path / "out")
    layout.image([base_tar, new_tar])
    reuse = oci_import.known_layers(store, [base])
    assert list(reuse) == ["sha256:" + hashlib.sha256(base_tar).hexdigest()]
    desc = oci_import.import_layout(store, layout.root, AMD64, tool="buildah", reuse=reuse)
    assert desc["platform"] == {"architecture": "amd64", "os": "linux"}
    manifest = store.read_json(desc["digest"])
    assert manifest["layers"][0] == base_manifest["layers"][0]
    assert manifest["layers"][1]["mediaType"] == mt.OCI_LAYER_GZIP
    assert "annotations" not in manifest
    store.set_refs("//x:y", desc, ["x:y"])
    validate_store(store)
    # the same layout imported again: the same bytes (gzip is deterministic)
    again = oci_import.import_layout(store, layout.root, AMD64, tool="buildah", reuse=reuse)
    assert again == desc


def test_corrupt_blob_platform_mismatch_and_missing_blob(store, tmp_path):
    layout = Layout(tmp_path / "out")
    manifest = layout.image([layer_tar({"a": b"a"})])
    with pytest.raises(oci_import.ImportFailed, match="built an image for linux/amd64, not "
                       "linux/arm64"):
        oci_import.import_layout(store, layout.root, platforms.parse("linux/arm64"), tool="t")
    data = json.loads((layout.root / "blobs/sha256" / manifest["digest"][7:]).read_bytes())
    layer = layout.root / "blobs/sha256" / data["layers"][0]["digest"][7:]
    layer.write_bytes(layer.read_bytes()[:-1] + b"X")  # same size, other content
    with pytest.raises(BlobCorrupt, match="hashes to"):
        oci_import.import_layout(store, layout.root, AMD64, tool="buildah")
    assert not store.has_blob(data["layers"][0]["digest"])
    layer.unlink()
    with pytest.raises(oci_import.ImportFailed, match="lacks the blob"):
        oci_import.import_layout(store, layout.root, AMD64, tool="buildah")


def test_archive_takes_only_layout_files(store, tmp_path):
    src = Layout(tmp_path / "src")
    tar = layer_tar({"f": b"f\n"})
    blob = gzip.compress(tar, mtime=0)
    extra = [{**src.put(blob, mt.DOCKER_LAYER_GZIP),
              "diff_id": "sha256:" + hashlib.sha256(tar).hexdigest()}]
    src.image([], extra_layers=extra)
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as out:
        for path in sorted(src.root.rglob("*")):
            if path.is_file():
                out.add(path, arcname="./" + path.relative_to(src.root).as_posix())
        evil = tarfile.TarInfo("../../escaped")
        evil.size = 4
        out.addfile(evil, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("blobs/sha256/" + "0" * 64)
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.addfile(link)
    desc = oci_import.import_archive(store, archive, AMD64, tool="buildx")
    manifest = store.read_json(desc["digest"])
    assert manifest["layers"] == [{"mediaType": mt.OCI_LAYER_GZIP, "digest": extra[0]["digest"],
                                   "size": len(blob)}]
    assert not (tmp_path / "escaped").exists()
    assert list(store.tmp_dir().iterdir()) == []


def _archive(root: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w") as out:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                out.add(path, arcname=path.relative_to(root).as_posix())
    return dest


def test_archive_with_an_index_gives_each_platform_and_checks_every_blob(store, tmp_path):
    """A multi-platform archive (as `buildx build --platform a,b` writes): each platform's
    image, its blobs read in place; a blob whose bytes do not match its digest enters nothing."""
    src = Layout(tmp_path / "src")
    images = [src.image([gzip.compress(layer_tar({"arch": a.encode()}), mtime=0)], arch=a)
              for a in ("amd64", "arm64")]
    for image, arch in zip(images, ("amd64", "arm64"), strict=True):
        image["platform"] = {"architecture": arch, "os": "linux"}
    index = src.put(json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                "manifests": images}).encode(), mt.OCI_INDEX)
    (src.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [index]}))
    plats = [AMD64, platforms.parse("linux/arm64")]
    archive = _archive(src.root, tmp_path / "both.tar")
    descs = oci_import.import_archive_platforms(store, archive, [(p, None) for p in plats],
                                                tool="buildx")
    for desc, plat in zip(descs, plats, strict=True):
        config = store.read_json(store.read_json(desc["digest"])["config"]["digest"])
        assert platforms.from_oci(config).same_as(plat)
    validate_store(store)

    other = Store(tmp_path / "other")
    layer = json.loads((src.root / "blobs/sha256" / images[1]["digest"][7:]).read_bytes())[
        "layers"][0]["digest"]
    path = src.root / "blobs/sha256" / layer[7:]
    path.write_bytes(path.read_bytes()[:-1] + b"X")  # same size, other content
    archive = _archive(src.root, tmp_path / "bad.tar")
    with pytest.raises(BlobCorrupt, match="hashes to|expected"):
        oci_import.import_archive_platforms(other, archive, [(p, None) for p in plats],
                                            tool="buildx")
    assert not other.has_blob(layer)
    assert list(other.tmp_dir().iterdir()) == []


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 12345])
def test_block_gzip_is_plain_gzip_and_deterministic(size):
    import random

    from graphbuild.backends.gzip_blocks import gzip_stream

    rng = random.Random(size)
    data = b"".join(rng.choice([b"abc" * 100, rng.randbytes(300)]) for _ in range(size // 300 + 1))
    data = data[:size]
    outs = []
    for _ in range(2):
        out = io.BytesIO()
        result = gzip_stream(io.BytesIO(data), out)
        outs.append(out.getvalue())
    assert outs[0] == outs[1]
    assert gzip.decompress(outs[0]) == data
    assert result.tar_digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.digest == "sha256:" + hashlib.sha256(outs[0]).hexdigest()
    assert result.size == len(outs[0])
    if size > 1 << 20:  # about as small as one stream (the window carries across blocks)
        assert len(outs[0]) < len(gzip.compress(data, 6, mtime=0)) * 1.01


def test_a_truncated_archive_is_an_import_failure(store, tmp_path):
    src = Layout(tmp_path / "src")
    src.image([layer_tar({"f": b"f\n" * 5000})])
    plain = _archive(src.root, tmp_path / "image.tar")
    squeezed = tmp_path / "image.tar.gz"
    squeezed.write_bytes(gzip.compress(plain.read_bytes())[:-200])  # cut short
    with pytest.raises(oci_import.ImportFailed, match="unreadable OCI archive image.tar.gz"):
        oci_import.import_archive(store, squeezed, AMD64, tool="buildx")
    assert list(store.tmp_dir().iterdir()) == []
