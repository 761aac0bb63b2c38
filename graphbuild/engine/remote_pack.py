"""The remote cache's packs: one blob holding the entry of every node a run used, tagged by
the run's scope (its patterns, platforms, shard), so a fresh runner asks the registry for
the pack once instead of for an entry per node.

A pack is a hint and is trusted no more than the entries it copies: each entry in it is
parsed and checked as a fetched one is (its layers must still be in the registry), and only
for the node and key it was written for. A pack that is missing, stale or unreadable costs
the per-key lookups it would have saved, nothing else.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib

from ..errors import BuildError
from ..oci import mediatypes as mt

PACK_TYPE = "application/vnd.graphbuild.pack.v1+json"
PACK_LAYER = "application/vnd.graphbuild.pack.v1+json+gzip"
MAX_PACK_BYTES = 256 * 1024 * 1024  # unpacked; a pack of 10,000 nodes is about 30 MB


class PackUnusable(BuildError):
    """A pack that does not parse: its entries are looked up one by one instead."""


def scope_tag(patterns: list[str], platforms: list[str], shard: str | None,
              affected_since: str | None) -> str:
    """The tag of the pack for one kind of run: runs of the same patterns share it."""
    scope = json.dumps({"patterns": sorted(patterns), "platforms": sorted(platforms),
                        "shard": shard, "affected": affected_since is not None}, sort_keys=True)
    return "pack-" + hashlib.sha256(scope.encode()).hexdigest()[:40]


def read_pack(client, repo: str, tag: str) -> tuple[dict[str, tuple[str, dict]], int] | None:
    """(node -> (key, entry manifest), bytes read) from the pack tagged ``tag``; None when
    there is none. Raises PackUnusable for one that does not parse, RegistryError when
    unreachable."""
    from ..registry.errors import RegistryError

    try:
        data, _, _ = client.get_manifest(repo, tag, accept=(mt.OCI_MANIFEST,))
    except RegistryError as exc:
        if exc.status == 404:
            return None
        raise
    try:
        manifest = json.loads(data)
        layer = manifest["layers"][0]
        if manifest.get("artifactType") != PACK_TYPE or layer["mediaType"] != PACK_LAYER:
            raise ValueError("not a graphbuild pack")
        size = int(layer["size"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise PackUnusable(f"the pack's manifest does not parse: {exc}") from None
    blob = io.BytesIO()
    try:
        client.get_blob(repo, layer["digest"], blob, size)  # checked by digest
    except RegistryError as exc:
        if exc.status == 404:
            raise PackUnusable(f"its blob {layer['digest']} is gone") from None
        raise
    return _parse(blob.getvalue()), len(data) + size


def _parse(data: bytes) -> dict[str, tuple[str, dict]]:
    try:
        unpacked = zlib.decompressobj(wbits=31).decompress(data, MAX_PACK_BYTES)
        doc = json.loads(unpacked)
        nodes = doc["nodes"]
        out = {node: (rec["key"], rec["entry"]) for node, rec in nodes.items()}
    except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as exc:
        raise PackUnusable(f"the pack does not parse: {exc}") from None
    if not all(isinstance(k, str) and isinstance(e, dict) for k, e in out.values()):
        raise PackUnusable("the pack does not parse: a key is not a string or an entry not "
                           "an object")
    return out


def write_pack(client, repo: str, tag: str, nodes: dict[str, tuple[str, dict]]) -> int:
    """Upload a pack of ``nodes`` (node -> (key, entry manifest)) and tag it; the bytes
    uploaded."""
    from ..oci.jsoncanon import canonical_json
    from .remote_cache import EMPTY

    doc = {"version": 1, "nodes": {n: {"key": k, "entry": e} for n, (k, e) in nodes.items()}}
    blob = gzip.compress(json.dumps(doc, sort_keys=True).encode(), compresslevel=6, mtime=0)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    uploaded = 0
    if not client.blob_exists(repo, digest):
        client.upload_blob(repo, digest, len(blob), lambda: io.BytesIO(blob))
        uploaded = len(blob)
    if not client.blob_exists(repo, EMPTY["digest"]):
        client.upload_blob(repo, EMPTY["digest"], EMPTY["size"], lambda: io.BytesIO(b"{}"))
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": PACK_TYPE,
        "config": EMPTY,
        "layers": [{"mediaType": PACK_LAYER, "digest": digest, "size": len(blob)}],
    })
    client.put_manifest(repo, tag, manifest, mt.OCI_MANIFEST)
    return uploaded + len(manifest)
