"""Image backends by name. Each builds one image for one platform into the store."""

from __future__ import annotations

import importlib
import shutil

MODULES = {"native": "native"}
NEEDS_MORE = {"RUN": "runs commands inside the image", "ADD <url>": "downloads at build time"}


def names() -> list[str]:
    return [*MODULES, "auto"]


def get(name: str):
    """The backend module (with ``version()`` and ``build(req, store, scratch, cancelled)``)."""
    return importlib.import_module(f".{MODULES[name]}", __name__)


def installed(name: str) -> bool:
    """Whether a backend's external tool is on this machine."""
    if name == "native":
        return True
    return shutil.which({"buildah": "buildah", "buildx": "docker"}[name]) is not None
