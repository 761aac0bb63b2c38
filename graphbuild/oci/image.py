"""Image configs and manifests: creating, reading and putting them into the store."""

from __future__ import annotations

import copy
import time

from ..platforms import Platform
from . import mediatypes as mt

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def timestamp(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def config_variant(platform: Platform) -> str:
    """The variant an image config names: BuildKit's (containerd's platforms.Normalize), which
    drops arm64's default v8. Index entries keep ``oci_variant`` (see docs/backends.md)."""
    if platform.arch == "arm64" and platform.oci_variant in ("v8", "8", "v8.0", "8.0"):
        return ""
    return platform.oci_variant


def empty_config(platform: Platform) -> dict:
    """A scratch image's config, as BuildKit's emptyImage: WorkingDir "/", and a default PATH
    for Linux."""
    cfg: dict = {"architecture": platform.arch, "os": platform.os,
                 "config": {"WorkingDir": "/"}, "rootfs": {"type": "layers", "diff_ids": []},
                 "history": []}
    if config_variant(platform):
        cfg["variant"] = config_variant(platform)
    if platform.os == "linux":
        cfg["config"]["Env"] = [f"PATH={DEFAULT_PATH}"]
    return cfg


def load_image(store, descriptor: dict) -> tuple[dict, dict]:
    """(manifest, config) of an image manifest in the store."""
    manifest = store.read_json(descriptor["digest"])
    config = store.read_json(manifest["config"]["digest"])
    return manifest, config


def rebase_config(base: dict, platform: Platform) -> dict:
    """A copy of a base image's config to build on, keeping its history and layers."""
    cfg = copy.deepcopy(base)
    cfg.setdefault("config", {})
    cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    cfg.setdefault("history", [])
    cfg["architecture"], cfg["os"] = platform.arch, platform.os
    if config_variant(platform):
        cfg["variant"] = config_variant(platform)
    else:
        cfg.pop("variant", None)
    return cfg


def put_image(store, config: dict, layers: list[dict], annotations: dict | None = None,
              platform: Platform | None = None) -> dict:
    """Write config and manifest; return the manifest descriptor (with platform when given)."""
    config_desc = store.put_json(config, mt.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config_desc,
                "layers": layers}
    if annotations:
        manifest["annotations"] = annotations
    desc = store.put_json(manifest, mt.OCI_MANIFEST)
    if platform is not None:
        desc["platform"] = platform.oci()
    return desc
