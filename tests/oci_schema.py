"""Test helpers: OCI schema validation, required external tools, and small real images.

``validate(kind, obj)`` checks JSON against the OCI image-spec v1.1.1 schemas vendored in
``tests/oci-schemas`` (with their license). The schemas are draft-04 and refer to
each other by file name relative to their own ``id``s, which differ per file (and per nested
property), so one ``referencing.Registry`` resolves any URI by its last path segment.
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from graphbuild.oci import mediatypes as mt
from graphbuild.oci.store import Store

SCHEMA_DIR = Path(__file__).resolve().parent / "oci-schemas"
SCHEMA_FILES = {
    "manifest": "image-manifest-schema.json",
    "config": "config-schema.json",
    "index": "image-index-schema.json",
    "layout": "image-layout-schema.json",
    "descriptor": "content-descriptor.json",
}


@functools.cache
def _schemas() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.json")}


def _retrieve(uri: str) -> Resource:
    # Every schema $ref is "<file>.json[#...]" resolved against some id: match on the file name.
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return Resource.from_contents(_schemas()[name], default_specification=DRAFT4)


@functools.cache
def _validator(kind: str) -> Draft4Validator:
    schema = copy.deepcopy(_schemas()[SCHEMA_FILES[kind]])
    if kind == "manifest":
        # The schema says layers minItems 1, but the spec's text only says SHOULD: an image with
        # no filesystem content (FROM scratch, config only) may have "layers": [].
        schema["properties"]["layers"].pop("minItems")
    registry = Registry(retrieve=_retrieve)
    return Draft4Validator(schema, registry=registry, format_checker=Draft4Validator.FORMAT_CHECKER)


def validate(kind: str, obj: dict) -> None:
    """Raise jsonschema.ValidationError unless ``obj`` is a valid OCI ``kind``
    (manifest, config, index, layout or descriptor)."""
    if kind not in SCHEMA_FILES:
        raise ValueError(f"unknown kind {kind!r}; one of {sorted(SCHEMA_FILES)}")
    _validator(kind).validate(obj)


def validate_store(store: Store) -> None:
    """Validate the layout files and every manifest, index and config reachable from index.json."""
    validate("layout", json.loads((store.root / "oci-layout").read_text()))
    validate("index", json.loads((store.root / "index.json").read_text()))
    for entry in store.entries():
        for desc in store.walk(entry):
            validate("descriptor", desc)
            kind = _kind(desc["mediaType"])
            if kind:
                validate(kind, store.read_json(desc["digest"]))


def _kind(media_type: str) -> str | None:
    if mt.is_index(media_type):
        return "index"
    if mt.is_manifest(media_type):
        return "manifest"
    return "config" if media_type in mt.CONFIG_TYPES else None


# -- external tools ----------------------------------------------------------------------------


def require_tool(name: str) -> str:
    """The path of ``name``; if missing, fail under CI (which installs it) and skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


# -- small real images, built by hand ----------------------------------------------------------


def layer_tar(files: dict[str, bytes]) -> bytes:
    """A reproducible uncompressed layer tar holding ``files`` (path → content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def put_layer(store: Store, files: dict[str, bytes]) -> tuple[dict, str]:
    """Store a gzipped layer; return (its descriptor, its diff_id)."""
    plain = layer_tar(files)
    diff_id = "sha256:" + hashlib.sha256(plain).hexdigest()
    digest, size = store.put_bytes(gzip.compress(plain, mtime=0))
    return {"mediaType": mt.OCI_LAYER_GZIP, "digest": digest, "size": size}, diff_id


def put_image(
    store: Store, arch: str, files: dict[str, bytes] | None = None, variant: str = ""
) -> dict:
    """Store a one-layer linux image for ``arch``; return its manifest descriptor + platform."""
    layer, diff_id = put_layer(store, files or {"etc/arch": arch.encode() + b"\n"})
    platform = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
    config = {
        **platform,
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "graphbuild test"}],
    }
    validate("config", config)
    config_desc = store.put_json(config, mt.OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer],
    }
    validate("manifest", manifest)
    return {**store.put_json(manifest, mt.OCI_MANIFEST), "platform": platform}


def put_index(store: Store, manifests: list[dict]) -> dict:
    """Store an OCI index over ``manifests`` (descriptors with platform); return its descriptor."""
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    validate("index", index)
    return store.put_json(index, mt.OCI_INDEX)


def two_platform_index(store: Store) -> tuple[dict, dict, dict]:
    """An index over linux/amd64 and linux/arm64/v8: returns (index, amd64, arm64) descriptors."""
    amd64 = put_image(store, "amd64")
    arm64 = put_image(store, "arm64", variant="v8")
    return put_index(store, [amd64, arm64]), amd64, arm64
