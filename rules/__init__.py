"""graphbuild's built-in rules: the public surface. Implementations live in ``_private``.

Each class is registered in the ``graphbuild.rules`` entry-point group, as a third-party rule is.
Attributes are imported on first use (PEP 562), so a build that uses only `command` never loads
the Dockerfile machinery.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "CommandRule": "command",
    "FilegroupRule": "filegroup",
    "GroupRule": "group",
    "ImageRule": "image",
    "ManifestRule": "manifest",
    "PlatformRule": "platform",
    "PullRule": "pull",
}

__all__ = ["CommandRule", "FilegroupRule", "GroupRule", "ImageRule", "ManifestRule", "PlatformRule", "PullRule"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"._private.{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
