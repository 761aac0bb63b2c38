"""Records as OCI 1.1 artifact manifests in the store: the image-spec's empty config, one layer
holding the record, and ``subject`` naming the image manifest they describe."""

from __future__ import annotations

from ..oci import mediatypes as mt
from ..oci.store import make_descriptor
from . import provenance, sbom

EMPTY_CONFIG = b"{}"
# The record kinds: (attest key, artifactType, layer media type).
KINDS = {
    "sbom": (sbom.MEDIA_TYPE, sbom.MEDIA_TYPE),
    "provenance": (provenance.MEDIA_TYPE, provenance.MEDIA_TYPE),
}
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"


def put_record(store, subject: dict, kind: str, content: bytes) -> dict:
    """Store one record about ``subject`` (an image manifest descriptor); return the artifact
    manifest's descriptor, with its ``artifactType``."""
    artifact_type, layer_type = KINDS[kind]
    empty_digest, empty_size = store.put_bytes(EMPTY_CONFIG)
    digest, size = store.put_bytes(content)
    layer = make_descriptor(layer_type, digest, size)
    if kind == "provenance":
        layer["annotations"] = {PREDICATE_ANNOTATION: provenance.PREDICATE_TYPE}
    manifest = {
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": artifact_type,
        "config": make_descriptor(mt.OCI_EMPTY, empty_digest, empty_size),
        "layers": [layer],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
    }
    desc = store.put_json(manifest, mt.OCI_MANIFEST)
    desc["artifactType"] = artifact_type
    return desc


def record_content(store, record: dict) -> bytes:
    """The record a referrer descriptor names (its one layer)."""
    manifest = store.read_json(record["digest"])
    return store.read_bytes(manifest["layers"][0]["digest"])


def kind_of(record: dict) -> str:
    for kind, (artifact_type, _) in KINDS.items():
        if record.get("artifactType") == artifact_type:
            return kind
    return ""


def referrers_in_store(store, subject_digest: str) -> list[dict]:
    """The records in the store whose subject is ``subject_digest`` (as the referrers API
    lists them: artifact manifests' descriptors with their ``artifactType``)."""
    out = []
    for entry in store.entries():
        if not entry.get("artifactType") or not (store.has_blob(entry["digest"]) or
                                                 store.remote_record(entry["digest"])):
            continue  # remote-only (a remote cache hit's): read from its record
        subject = store.read_json(entry["digest"]).get("subject") or {}
        if subject.get("digest") == subject_digest:
            out.append({k: entry[k] for k in ("mediaType", "digest", "size", "artifactType")})
    return sorted(out, key=lambda d: (d["artifactType"], d["digest"]))
