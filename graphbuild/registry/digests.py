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
