"""Assembling image indexes (OCI) and manifest lists (Docker v2) from images in the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ActionFailed
from ..platforms import Platform, from_oci
from . import mediatypes as mt


@dataclass
class IndexEntry:
    descriptor: dict  # an image manifest descriptor in the store
    written: str  # how the user named it, for messages
    override: dict = field(default_factory=dict)  # os/arch/variant/os_version/os_features
    force: bool = False
    annotations: dict = field(default_factory=dict)


def _config_platform(store, desc: dict) -> Platform:
    manifest = store.read_json(desc["digest"])
    return from_oci(store.read_json(manifest["config"]["digest"]))


def entry_platform(store, entry: IndexEntry) -> dict:
    """The entry's platform: its image config's, with the user's overrides applied."""
    base = _config_platform(store, entry.descriptor)
    plat = base.oci()
    keys = {"os": "os", "arch": "architecture", "variant": "variant",
            "os_version": "os.version", "os_features": "os.features"}
    for key, oci_key in keys.items():
        if key in entry.override:
            plat[oci_key] = entry.override[key]
            if not plat[oci_key]:  # `variant: ""` clears the config's
                del plat[oci_key]
    new = from_oci(plat)
    if not entry.force and (new.os, new.arch) != (base.os, base.arch):
        raise ActionFailed(f"{entry.written}: platform override {new} contradicts the image "
                           f"config ({base}); set force: true to publish it anyway")
    return plat


def _as_docker(store, desc: dict) -> dict:
    """The same image as a Docker v2 schema 2 manifest (same config and layer blobs)."""
    manifest = store.read_json(desc["digest"])
    if manifest.get("mediaType") == mt.DOCKER_MANIFEST:
        return desc
    layer_types = {mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER_GZIP, mt.OCI_LAYER_TAR: mt.DOCKER_LAYER_TAR}
    docker = {
        "schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
        "config": {**manifest["config"], "mediaType": mt.DOCKER_CONFIG},
        "layers": [{**layer, "mediaType": layer_types.get(layer["mediaType"], layer["mediaType"])}
                   for layer in manifest["layers"]],
    }
    return store.put_json(docker, mt.DOCKER_MANIFEST)


def build_index(store, entries: list[IndexEntry], *, media_type: str = "oci",
                annotations: dict | None = None) -> dict:
    """Write the index (or Docker manifest list) and return its descriptor."""
    manifests, seen = [], {}
    for entry in entries:
        plat = entry_platform(store, entry)
        key = str(from_oci(plat))
        if key in seen:
            raise ActionFailed(f"{entry.written} and {seen[key]} both provide platform {key}")
        seen[key] = entry.written
        child = entry.descriptor if media_type == "oci" else _as_docker(store, entry.descriptor)
        item = {"mediaType": child["mediaType"], "digest": child["digest"], "size": child["size"],
                "platform": plat}
        if entry.annotations:
            item["annotations"] = dict(entry.annotations)
        manifests.append(item)
    if media_type == "oci":
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
        if annotations:
            index["annotations"] = dict(annotations)
        return store.put_json(index, mt.OCI_INDEX)
    index = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": manifests}
    return store.put_json(index, mt.DOCKER_MANIFEST_LIST)
