"""Moving images between the store and the OCI layouts external tools read and write.

- ``export_layout``: a minimal OCI image layout holding one image from the store, its blobs
  hard-linked (copied across filesystems), for ``--build-context NAME=oci-layout://DIR@DIGEST``
  (buildx) or ``docker-image://oci:DIR`` (buildah).
- ``import_layout`` / ``import_archive``: the image a tool wrote, into the store by digest. Every
  blob is checked against its digest before it is stored. A layer whose diff_id is already a
  layer of one of the build's base images is replaced by that stored layer, byte for byte
  (buildah compresses base layers anew), so a derived image shares its base's blobs in the
  store and in registries. Layers written uncompressed are gzipped (``gzip_blocks``, on every
  core). The manifest is our own (OCI types, no tool annotations such as a temporary directory
  name) and its descriptor carries the node's platform, checked against the config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

from .. import platforms
from ..errors import ActionFailed, is_no_space
from ..oci import mediatypes as mt
from ..oci.jsoncanon import canonical_json
from ..oci.store import CHUNK, LAYOUT, BlobCorrupt, Store, check_digest
from .gzip_blocks import gzip_stream

COMPRESS_LEVEL = 6  # as the native backend's layers
_BLOB_RE = re.compile(r"^(?:\./)?blobs/sha256/([0-9a-f]{64})$")
_TO_OCI = {
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_TAR: mt.OCI_LAYER_TAR,
    mt.DOCKER_CONFIG: mt.OCI_CONFIG, mt.DOCKER_MANIFEST: mt.OCI_MANIFEST,
}


class ImportFailed(ActionFailed):
    """What a tool wrote is not the image it was asked for (or not an OCI image at all)."""


# -- export -----------------------------------------------------------------------------------

def export_layout(store: Store, descriptor: dict, dest: Path) -> Path:
    """Write the OCI layout ``dest`` holding ``descriptor`` (and all it reaches); return dest."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for d in store.walk(descriptor):
        target = blobs / d["digest"].split(":", 1)[1]
        if target.exists():
            continue
        src = store.local_blob_path(d["digest"])  # a remote-only layer is fetched
        try:
            os.link(src, target)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(src, target)
    entry = {k: descriptor[k] for k in ("mediaType", "digest", "size", "platform")
             if k in descriptor}
    (dest / "index.json").write_bytes(canonical_json(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}))
    (dest / "oci-layout").write_bytes(canonical_json(LAYOUT))
    return dest


def known_layers(store: Store, descriptors) -> dict[str, dict]:
    """diff_id → stored layer descriptor, over the images ``descriptors`` name (base images)."""
    out: dict[str, dict] = {}
    for desc in descriptors:
        manifest = store.read_json(desc["digest"])
        config = store.read_json(manifest["config"]["digest"])
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        for layer, diff_id in zip(manifest.get("layers", []), diff_ids):
            out.setdefault(diff_id, layer)
    return out


# -- import -----------------------------------------------------------------------------------

def import_archive(store: Store, archive: Path, platform: platforms.Platform, *, tool: str,
                   reuse: dict[str, dict] | None = None) -> dict:
    """Import the image of an OCI layout tarball (``--output type=oci,tar=true``)."""
    return import_archive_platforms(store, archive, [(platform, reuse)], tool=tool)[0]


def import_archive_platforms(store: Store, archive: Path,
                             wanted: list[tuple[platforms.Platform, dict[str, dict] | None]], *,
                             tool: str) -> list[dict]:
    """Import the image of each platform of ``wanted`` (with the base layers it may reuse,
    as ``import_layout``) from one OCI layout tarball (an image, or an index of one image per
    platform); their manifest descriptors, in that order. Blobs are read from the archive
    where they lie: only those the images need, and no base layer the store already has, are
    copied (never extracted first)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            src = _TarLayout(tar, tool)
            return [_import(store, src, plat, tool, reuse) for plat, reuse in wanted]
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and is_no_space(exc):
            raise  # the store's disk is full: said as such, not as a bad archive
        raise ImportFailed(f"{tool} wrote an unreadable OCI archive {archive.name}: {exc}") \
            from None


def import_layout(store: Store, layout: Path, platform: platforms.Platform, *, tool: str,
                  reuse: dict[str, dict] | None = None) -> dict:
    """Import the image for ``platform`` from the OCI layout directory ``layout``; return its
    manifest descriptor in the store (with ``platform``)."""
    return _import(store, _Layout(layout, tool), platform, tool, reuse)


def _import(store: Store, src: _Layout, platform: platforms.Platform, tool: str,
            reuse: dict[str, dict] | None) -> dict:
    manifest_desc = src.pick(src.top(), platform)
    manifest = src.json(manifest_desc)
    config_desc = manifest.get("config") or {}
    config = src.json(config_desc)
    built = platforms.from_oci(config)
    if not built.same_as(platform):
        raise ImportFailed(f"{tool} built an image for {built}, not {platform}")
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    layers = manifest.get("layers", [])
    if len(diff_ids) != len(layers):
        raise ImportFailed(f"the image {tool} wrote has {len(layers)} layers but its config lists "
                           f"{len(diff_ids)} diff_ids")
    reuse = reuse or {}
    new_layers = [src.layer(store, layer, diff_id, reuse) for layer, diff_id in zip(layers, diff_ids)]
    src.install(store, config_desc)
    out = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
           "config": {"mediaType": mt.OCI_CONFIG, "digest": config_desc["digest"],
                      "size": config_desc["size"]},
           "layers": new_layers}
    desc = store.put_json(out, mt.OCI_MANIFEST)
    desc["platform"] = platform.oci()
    return desc


def _reusable(diff_id: str, reuse: dict, store: Store) -> dict | None:
    known = reuse.get(diff_id)
    return known if known and store.has_blob(known["digest"]) else None


class _Layout:
    def __init__(self, root: Path, tool: str) -> None:
        self.root = root
        self.tool = tool

    def _fail(self, what: str) -> ImportFailed:
        return ImportFailed(f"the OCI layout {self.tool} wrote {what}")

    def path(self, desc: dict) -> Path:
        try:
            digest = check_digest(desc.get("digest"))
        except ValueError:
            raise self._fail(f"names a blob by an invalid digest {desc.get('digest')!r}") from None
        path = self.root / "blobs" / "sha256" / digest.split(":", 1)[1]
        if not path.is_file():
            raise self._fail(f"lacks the blob {digest} ({desc.get('mediaType')})")
        if "size" in desc and path.stat().st_size != desc["size"]:
            raise BlobCorrupt(f"{self.tool}: blob {digest} has {path.stat().st_size} bytes, its "
                              f"descriptor says {desc['size']}")
        return path

    def open(self, desc: dict) -> BinaryIO:
        return open(self.path(desc), "rb")

    def index_bytes(self) -> bytes:
        return (self.root / "index.json").read_bytes()

    def json(self, desc: dict) -> dict:
        with self.open(desc) as f:
            data = f.read()
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != desc["digest"]:
            raise BlobCorrupt(f"{self.tool}: blob {desc['digest']} hashes to {actual}")
        try:
            return json.loads(data)
        except ValueError:
            raise self._fail(f"has a {desc.get('mediaType')} {desc['digest']} that is not JSON") \
                from None

    def top(self) -> dict:
        try:
            index = json.loads(self.index_bytes())
        except (OSError, ValueError, KeyError):
            raise self._fail("has no readable index.json") from None
        entries = index.get("manifests") or []
        if len(entries) != 1:
            raise self._fail(f"lists {len(entries)} images in index.json; expected one")
        return entries[0]

    def pick(self, desc: dict, platform: platforms.Platform) -> dict:
        """The image manifest for ``platform``: ``desc`` itself, or its entry in an index (as
        buildx writes when it attaches provenance: the image plus unknown/unknown
        attestation manifests)."""
        media_type = desc.get("mediaType")
        if mt.is_manifest(media_type):
            return desc
        if not mt.is_index(media_type):
            raise self._fail(f"names a {media_type}, not an image")
        images = [m for m in self.json(desc).get("manifests", [])
                  if mt.is_manifest(m.get("mediaType"))
                  and m.get("platform", {}).get("os") != "unknown"]
        matching = [m for m in images if "platform" in m
                    and platforms.from_oci(m["platform"]).same_as(platform)]
        if len(matching) == 1 or (not matching and len(images) == 1):
            return (matching or images)[0]
        have = ", ".join(str(platforms.from_oci(m.get("platform", {}))) for m in images) or "none"
        raise self._fail(f"has no single image for {platform} (it has: {have})")

    def install(self, store: Store, desc: dict) -> None:
        """Put a blob into the store, checked against its digest (skipped when present)."""
        if store.has_blob(desc["digest"]):
            return
        src = self.path(desc)
        fd, name = tempfile.mkstemp(dir=store.tmp_dir(), prefix="import-")
        os.close(fd)
        tmp = Path(name)
        try:
            tmp.unlink()
            os.link(src, tmp)  # same filesystem: no copy
        except OSError:
            shutil.copyfile(src, tmp)
        try:
            store.add_file(tmp, desc["digest"])
        except BlobCorrupt as exc:
            raise BlobCorrupt(f"{self.tool}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def layer(self, store: Store, layer: dict, diff_id: str, reuse: dict) -> dict:
        media_type = layer.get("mediaType")
        if media_type in mt.TAR_LAYER_TYPES:
            if layer["digest"] != diff_id:
                raise self._fail(f"has an uncompressed layer {layer['digest']} that its config "
                                 f"calls {diff_id}")
            known = _reusable(diff_id, reuse, store)
            return dict(known) if known else self._gzip(store, layer)
        known = _reusable(diff_id, reuse, store)
        if known:  # a base image's layer, which the tool may have compressed anew
            return dict(known)
        self.install(store, layer)
        out = {"mediaType": _TO_OCI.get(media_type, media_type), "digest": layer["digest"],
               "size": layer["size"]}
        for key in ("urls", "annotations"):
            if key in layer:
                out[key] = layer[key]
        return out

    def _gzip(self, store: Store, layer: dict) -> dict:
        """The layer gzipped into the store; a tar already gzipped in this process (the same
        layer for another platform) is compressed once."""
        diff_id = layer["digest"]
        with _GZIPPED.lock(diff_id):
            done = _GZIPPED.get(diff_id)
            if done is not None and store.has_blob(done["digest"]):
                return dict(done)
            with store.blob_writer() as w, self.open(layer) as f:
                result = gzip_stream(f, w, COMPRESS_LEVEL)
                if result.tar_digest != diff_id:  # raised inside: nothing enters the store
                    raise BlobCorrupt(f"{self.tool}: layer {diff_id} hashes to "
                                      f"{result.tar_digest}")
            desc = {"mediaType": mt.OCI_LAYER_GZIP, "digest": w.digest, "size": w.size}
            _GZIPPED.put(diff_id, desc)
            return dict(desc)


class _TarLayout(_Layout):
    """An OCI layout inside a tar archive, read in place: only regular files named
    ``index.json`` or ``blobs/sha256/<hex>`` count (no links, nothing else is read)."""

    def __init__(self, tar: tarfile.TarFile, tool: str) -> None:
        super().__init__(Path(), tool)
        self._tar = tar
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in tar:
            m = _BLOB_RE.match(member.name)
            name = f"blobs/sha256/{m.group(1)}" if m else member.name.removeprefix("./")
            if member.isfile() and (m or name == "index.json"):
                self._members[name] = member

    def _member(self, desc: dict) -> tarfile.TarInfo:
        try:
            digest = check_digest(desc.get("digest"))
        except ValueError:
            raise self._fail(f"names a blob by an invalid digest {desc.get('digest')!r}") from None
        member = self._members.get(f"blobs/sha256/{digest.split(':', 1)[1]}")
        if member is None:
            raise self._fail(f"lacks the blob {digest} ({desc.get('mediaType')})")
        if "size" in desc and member.size != desc["size"]:
            raise BlobCorrupt(f"{self.tool}: blob {digest} has {member.size} bytes, its "
                              f"descriptor says {desc['size']}")
        return member

    def open(self, desc: dict) -> BinaryIO:
        f = self._tar.extractfile(self._member(desc))
        assert f is not None  # a regular file
        return f

    def index_bytes(self) -> bytes:
        f = self._tar.extractfile(self._members["index.json"])
        assert f is not None
        return f.read()

    def install(self, store: Store, desc: dict) -> None:
        """Copied from the archive, checked against its digest (skipped when present)."""
        if store.has_blob(desc["digest"]):
            return
        try:
            with self.open(desc) as f, store.blob_writer(desc["digest"], sync=False) as w:
                shutil.copyfileobj(f, w, CHUNK)
        except BlobCorrupt as exc:
            raise BlobCorrupt(f"{self.tool}: {exc}") from None


class _Memo:
    """diff_id → the gzipped layer written in this process, one writer per diff_id at a time."""

    def __init__(self) -> None:
        self._done: dict[str, dict] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get(self, key: str) -> dict | None:
        return self._done.get(key)

    def put(self, key: str, value: dict) -> None:
        self._done[key] = value


_GZIPPED = _Memo()
