"""Export an image or index from the store as an OCI archive or a ``docker save`` archive.

Both archives are deterministic: members in sorted order, mtime 0, owner root, fixed modes, so the
same image always exports to the same bytes. Each is written to a temp file beside ``out_path``
and renamed into place, so a failed export never leaves a truncated archive behind.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from graphbuild import platforms
from graphbuild.errors import writing
from graphbuild.oci import mediatypes as mt
from graphbuild.oci.jsoncanon import canonical_json
from graphbuild.oci.store import CHUNK, LAYOUT, BlobCorrupt, Store, check_ref_name

_KEEP_IN_INDEX = ("mediaType", "digest", "size", "platform", "artifactType")


class ExportError(ValueError):
    """The requested export cannot be made (no such platform, unsupported layer type, ...)."""


# -- OCI archive ------------------------------------------------------------------------------


def export_oci_archive(
    store: Store, descriptor: dict, out_path: Path | str, ref_name: str | None = None
) -> None:
    """Write a tar of a minimal OCI image layout holding ``descriptor`` and every blob it reaches.

    Its ``index.json`` lists just that descriptor, annotated with ``ref_name`` when given, so both
    ``oci-archive:FILE`` and ``oci-archive:FILE:REF_NAME`` work with skopeo.
    """
    entry = {k: descriptor[k] for k in _KEEP_IN_INDEX if k in descriptor}
    if ref_name is not None:
        entry["annotations"] = {mt.REF_NAME: check_ref_name(ref_name)}
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
    digests = sorted({d["digest"] for d in store.walk(descriptor)})
    with _deterministic_tar(out_path) as tar:
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest in digests:
            with store.open_blob(digest) as f:
                _add_stream(tar, "blobs/sha256/" + digest.split(":", 1)[1], f, _size(f))
        _add_bytes(tar, "index.json", canonical_json(index))
        _add_bytes(tar, "oci-layout", canonical_json(LAYOUT))


# -- docker archive ---------------------------------------------------------------------------


def export_docker_archive(
    store: Store,
    descriptor: dict,
    out_path: Path | str,
    tags: list[str],
    platform: str | platforms.Platform | None = None,
) -> None:
    """Write the ``docker save`` format that ``docker load`` and ``skopeo copy docker-archive:``
    read: ``manifest.json`` (Config, RepoTags, Layers), the config, one ``layer.tar`` per layer
    and ``repositories``.

    One platform per archive. For an index, ``platform`` picks the image; without it a
    single-platform index gives its only image, and a multi-platform one the host's platform,
    else ExportError. Why not every platform as separate ``manifest.json`` entries: ``docker
    load`` loads each entry and points every RepoTag at the last entry loaded (moby
    ``image/tarexport/load.go`` re-tags with "renaming the old one"), and refuses the whole
    archive when any entry's OS differs from the daemon's; so one tag over several platforms
    would silently name an arbitrary one. Attestation manifests (``unknown/unknown``) never count.
    """
    manifest_desc = _pick_manifest(store, descriptor, platform)
    manifest = store.read_json(manifest_desc["digest"])
    config_digest = manifest["config"]["digest"]
    config = store.read_json(config_digest)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    layers = manifest.get("layers", [])
    if len(diff_ids) != len(layers):
        raise ExportError(
            f"manifest {manifest_desc['digest']} has {len(layers)} layers but its config lists "
            f"{len(diff_ids)} diff_ids"
        )
    repo_tags = [_docker_tag(t) for t in tags]
    chain = _chain_ids(diff_ids)
    config_name = config_digest.split(":", 1)[1] + ".json"
    layer_names = [c.split(":", 1)[1] + "/layer.tar" for c in chain]
    with _deterministic_tar(out_path) as tar:
        with store.open_blob(config_digest) as f:
            _add_stream(tar, config_name, f, _size(f))
        for name, layer, diff_id in sorted(zip(layer_names, layers, diff_ids, strict=True)):
            _add_dir(tar, name.split("/", 1)[0])
            _add_layer(store, tar, name, layer, diff_id)
        entry = {"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}
        _add_bytes(tar, "manifest.json", canonical_json([entry]))
        if repo_tags and chain:
            _add_bytes(tar, "repositories", canonical_json(_repositories(repo_tags, chain[-1])))


def image_platforms(store: Store, desc: dict) -> list[platforms.Platform]:
    """The platforms a docker archive of ``desc`` can be made for (attestations left out)."""
    if not mt.is_index(desc.get("mediaType")):
        return []
    return [platforms.from_oci(m.get("platform", {}))
            for m in store.read_json(desc["digest"]).get("manifests", [])
            if mt.is_manifest(m.get("mediaType")) and _runnable(m)]


def _pick_manifest(store: Store, desc: dict, platform: str | platforms.Platform | None) -> dict:
    if mt.is_manifest(desc.get("mediaType")):
        return desc
    if not mt.is_index(desc.get("mediaType")):
        raise ExportError(f"cannot export a {desc.get('mediaType')} as a docker archive")
    images = [
        m
        for m in store.read_json(desc["digest"]).get("manifests", [])
        if mt.is_manifest(m.get("mediaType")) and _runnable(m)
    ]
    if platform is None:
        if len(images) == 1:
            return images[0]
        platform = platforms.host()
    wanted = platforms.parse(platform) if isinstance(platform, str) else platform
    for image in images:
        if platforms.from_oci(image.get("platform", {})).same_as(wanted):
            return image
    have = ", ".join(str(platforms.from_oci(m.get("platform", {}))) for m in images) or "none"
    raise ExportError(
        f"index {desc['digest']} has no image for {wanted} (it has: {have}); "
        "a docker archive holds one platform: choose one"
    )


def _runnable(entry: dict) -> bool:
    # buildx attaches provenance/SBOM manifests under the platform unknown/unknown.
    plat = entry.get("platform", {})
    return plat.get("os") != "unknown" and plat.get("architecture") != "unknown"


def _docker_tag(tag: str) -> str:
    """``name:tag`` as RepoTags needs it: docker load rejects a name without a tag."""
    if "@" in tag:
        raise ExportError(f"a docker archive tag cannot hold a digest: {tag!r}")
    check_ref_name(tag)
    return tag if ":" in tag.rsplit("/", 1)[-1] else tag + ":latest"


def _chain_ids(diff_ids: list[str]) -> list[str]:
    """Layer ChainIDs (image-spec config.md). The legacy ``docker save`` layout names each layer
    directory by an ID unique to the layer *and* the layers beneath it (a v1 ID); ChainIDs have
    that property and need nothing but the config."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append("sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


def _repositories(repo_tags: list[str], top_chain_id: str) -> dict:
    repos: dict[str, dict[str, str]] = {}
    for ref in repo_tags:
        name, tag = ref.rsplit(":", 1)
        repos.setdefault(name, {})[tag] = top_chain_id.split(":", 1)[1]
    return repos


def _add_layer(store: Store, tar: tarfile.TarFile, name: str, layer: dict, diff_id: str) -> None:
    # Layers go in uncompressed, as `docker save` itself writes them: that is the form every
    # docker-archive reader is built and tested against. (moby's load and containerd's import
    # also sniff and inflate gzip, so compressing would work there, but it buys only file size.)
    # The diff_ids a loader checks are digests of the plain tar, so they are verified here.
    media_type = layer.get("mediaType")
    if media_type not in mt.GZIP_LAYER_TYPES | mt.TAR_LAYER_TYPES:
        raise ExportError(f"cannot put a {media_type} layer into a docker archive")
    with (
        store.open_blob(layer["digest"]) as raw,
        tempfile.TemporaryFile(dir=store.tmp_dir()) as plain,
    ):
        source: IO[bytes] = gzip.GzipFile(fileobj=raw) if media_type in mt.GZIP_LAYER_TYPES else raw
        digest = _copy_hashing(source, plain)
        if digest != diff_id:
            raise BlobCorrupt(
                f"layer {layer['digest']} uncompresses to {digest}, config says {diff_id}"
            )
        plain.seek(0)
        _add_stream(tar, name, plain, _size(plain))


def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := src.read(CHUNK):
        h.update(chunk)
        dst.write(chunk)
    dst.flush()
    return "sha256:" + h.hexdigest()


# -- deterministic tar ------------------------------------------------------------------------


@contextlib.contextmanager
def _deterministic_tar(out_path: Path | str) -> Iterator[tarfile.TarFile]:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.")
    try:
        with writing(out_path), os.fdopen(fd, "wb") as f:
            # PAX writes plain ustar headers and adds an extended header only when a field does
            # not fit (a layer over 8 GiB), which ustar alone cannot express.
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                yield tar
            f.flush()
            os.fsync(f.fileno())
        os.chmod(name, 0o644)
        os.replace(name, out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))


def _add_stream(tar: tarfile.TarFile, name: str, f: IO[bytes], size: int) -> None:
    tar.addfile(_info(name, tarfile.REGTYPE, 0o644, size), f)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    _add_stream(tar, name, io.BytesIO(data), len(data))


def _size(f: IO[bytes]) -> int:
    return os.fstat(f.fileno()).st_size
