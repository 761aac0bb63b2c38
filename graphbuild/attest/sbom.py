"""An SPDX 2.3 JSON document for one image manifest: its layers' files, the packages in its
final filesystem and the base images it was built on.

The document is a pure function of the image (its layers, its manifest digest, its name and its
base images) and of SOURCE_DATE_EPOCH: the same image always gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import __version__
from .layer_scan import LayerScan, scan_layer
from .packages import Package, find_packages

MEDIA_TYPE = "application/spdx+json"
NAMESPACE = "https://graphbuild.dev/spdx/"


def spdx_time(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ref(kind: str, text: str) -> str:
    return f"SPDXRef-{kind}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"


def scan_image(store, manifest: dict, memo_dir: Path | None) -> list[LayerScan]:
    """Every layer's scan, in order; layers are read in parallel (zlib and hashlib release the
    GIL)."""
    layers = manifest.get("layers", [])
    if len(layers) <= 1:
        return [scan_layer(store, layer, memo_dir) for layer in layers]
    with ThreadPoolExecutor(min(4, len(layers))) as pool:
        return list(pool.map(lambda layer: scan_layer(store, layer, memo_dir), layers))


def build_sbom(store, manifest_desc: dict, name: str, bases: list[tuple[str, str]],
               epoch: int, memo_dir: Path | None = None) -> bytes:
    """The SPDX document of the image ``manifest_desc`` names; ``bases`` are (reference,
    digest) pairs of the images it was built on."""
    manifest = store.read_json(manifest_desc["digest"])
    scans = scan_image(store, manifest, memo_dir)
    digest = manifest_desc["digest"]
    image = {
        "SPDXID": "SPDXRef-Image", "name": name, "versionInfo": digest,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": True,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": digest.split(":", 1)[1]}],
    }
    packages = [image] + _base_packages(bases) + [_package(p) for p in find_packages(scans)]
    files = _files(manifest.get("layers", []), scans)
    image["packageVerificationCode"] = {"packageVerificationCodeValue": _verification_code(files)}
    relationships = [_rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")]
    relationships += [_rel("SPDXRef-Image", "DESCENDANT_OF", p["SPDXID"])
                      for p in packages if p.get("primaryPackagePurpose") == "CONTAINER"
                      and p is not image]
    relationships += [_rel("SPDXRef-Image", "CONTAINS", p["SPDXID"]) for p in packages
                      if p.get("primaryPackagePurpose") != "CONTAINER"]
    relationships += [_rel("SPDXRef-Image", "CONTAINS", f["SPDXID"]) for f in files]
    doc = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}@{digest}",
        "documentNamespace": f"{NAMESPACE}{digest.replace(':', '-')}",
        "creationInfo": {"created": spdx_time(epoch), "creators": [f"Tool: graphbuild-{__version__}"]},
        "packages": packages, "files": files, "relationships": relationships,
    }
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def _verification_code(files: list[dict]) -> str:
    """SPDX's package verification code: SHA1 over the sorted SHA1s of the package's files."""
    sha1s = sorted(f["checksums"][0]["checksumValue"] for f in files)
    return hashlib.sha1("".join(sha1s).encode(), usedforsecurity=False).hexdigest()


def _rel(a: str, kind: str, b: str) -> dict:
    return {"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}


def _base_packages(bases: list[tuple[str, str]]) -> list[dict]:
    out = []
    for ref, digest in sorted(set(bases)):
        repo = _repository(ref)
        purl = (f"pkg:oci/{repo.rsplit('/', 1)[-1]}@{digest.replace(':', '%3A')}"
                f"?repository_url={repo}")
        out.append({
            "SPDXID": _ref("Base", f"{ref}|{digest}"), "name": ref, "versionInfo": digest,
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": digest.split(":", 1)[1]}],
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": purl}],
        })
    return out


def _repository(ref: str) -> str:
    """``host/repo`` of a reference, without its tag or digest."""
    repo = ref.split("@", 1)[0]
    if repo.rfind(":") > repo.rfind("/"):
        repo = repo[:repo.rfind(":")]
    return repo


def _package(p: Package) -> dict:
    version = {"versionInfo": p.version} if p.version else {}
    return {
        "SPDXID": _ref("Package", p.purl), "name": p.name, **version,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "primaryPackagePurpose": "APPLICATION" if p.kind == "golang" else "LIBRARY",
        "sourceInfo": f"found in /{p.source}",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": p.purl}],
    }


def _files(layers: list[dict], scans: list[LayerScan]) -> list[dict]:
    out = []
    for layer, scan in zip(layers, scans):
        for path, _size, sha1, sha256 in scan.files:
            out.append({
                "SPDXID": _ref("File", f"{layer['digest']}|{path}"), "fileName": f"./{path}",
                "checksums": [{"algorithm": "SHA1", "checksumValue": sha1},
                              {"algorithm": "SHA256", "checksumValue": sha256}],
                "comment": f"added by layer {layer['digest']}",
            })
    return out
