"""SBOMs made when first needed, not while the image builds.

An SBOM lists every file with its SHA1 and SHA256: reading every layer again. That costs more
than the whole build of a large COPY-only image, and most builds never ship. So a build notes
what the SBOM needs beside the image (its name, base images and SOURCE_DATE_EPOCH: a few hundred
bytes), and the SBOM is made on first use (`run --push`, `graphbuild sbom`,
`inspect --referrers`) — then remembered by the image's digest: it is a pure function of the
image, so it is made once, whichever command asks.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from . import records, sbom


def _dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "attest" / "sbom"


def note_request(cache_dir: Path, manifest_digest: str, name: str,
                 bases: list[tuple[str, str]], epoch: int) -> None:
    """Remember what the SBOM of this image needs (at build time; cheap)."""
    path = _dir(cache_dir) / f"{manifest_digest.split(':', 1)[1]}.request.json"
    if not path.exists():
        _write(path, {"name": name, "bases": [list(b) for b in bases], "epoch": epoch})


def ensure(store, cache_dir: Path, manifest_desc: dict) -> dict | None:
    """The SBOM record of an image, made now if it was not yet; None when the build asked for
    no SBOM (or the image was built by an older graphbuild)."""
    hexd = manifest_desc["digest"].split(":", 1)[1]
    made, asked = _dir(cache_dir) / f"{hexd}.record.json", _dir(cache_dir) / f"{hexd}.request.json"
    record = _read(made)
    if record and store.has_blob(record["digest"]):
        return record
    request = _read(asked)
    if not request:
        return None
    content = sbom.build_sbom(store, manifest_desc, request["name"],
                              [tuple(b) for b in request["bases"]], request["epoch"],
                              Path(cache_dir) / "attest" / "layers")
    record = records.put_record(store, manifest_desc, "sbom", content)
    store.set_refs_many([(f"{request['name']} sbom", record, [])])
    _write(made, record)
    return record


def ensure_all(store, cache_dir: Path, desc: dict) -> list[dict]:
    """SBOM records for an image, or for every image of an index."""
    from ..oci import mediatypes as mt

    images = [desc]
    if mt.is_index(desc.get("mediaType")):
        images = [c for c in store.read_json(desc["digest"]).get("manifests", [])
                  if mt.is_manifest(c.get("mediaType"))]
    return [r for r in (ensure(store, cache_dir, image) for image in images) if r]


def _read(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write(path: Path, value: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump(value, fh, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # the SBOM is then made again when needed
