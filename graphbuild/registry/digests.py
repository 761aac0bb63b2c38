"""Content digests (``algorithm:hex``), and the media types the registry client asks for."""

from __future__ import annotations

import hashlib
import re

from ..oci.mediatypes import (  # noqa: F401
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
)
from ..oci.mediatypes import DOCKER_MANIFEST_LIST as DOCKER_LIST
from ..oci.mediatypes import MANIFEST_TYPES as IMAGE_TYPES  # noqa: F401

# The Accept list for manifests: indexes first, then image manifests.
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)

_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)")


def is_digest(text: str) -> bool:
    match = _DIGEST_RE.fullmatch(text)
    return bool(match) and len(match.group(2)) == _ALGORITHMS[match.group(1)]


def invalid_reference(parsed: object) -> str | None:
    """The first digest a manifest or index names (config, layers, manifests) that is not a
    well-formed digest, or None. Such a digest would become a path (``sha256:../../x``): it is
    refused where documents enter from a registry."""
    if not isinstance(parsed, dict):
        return None
    descriptors = [parsed.get("config"), *(parsed.get("layers") or []),
                   *(parsed.get("manifests") or [])]
    for descriptor in descriptors:
        if isinstance(descriptor, dict) and not is_digest(str(descriptor.get("digest"))):
            return str(descriptor.get("digest"))
    return None


def hasher_for(digest: str) -> hashlib._Hash:
    """A fresh hash object of the digest's algorithm; ValueError for anything unsupported."""
    if not is_digest(digest):
        raise ValueError(f"unsupported or malformed digest '{digest}'")
    return hashlib.new(digest.split(":", 1)[0])


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def short(digest: str) -> str:
    """``sha256:0123456789ab`` — enough to recognise a digest in a message."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else digest
