"""Rules come from the ``graphbuild.rules`` entry-point group, built-in ones included.

Entry points are listed once and each rule class is imported only when a BUILD file uses it.
"""

from __future__ import annotations

import importlib
import os
from functools import cache, lru_cache

from ..rule_api import Rule
from .treecache import user_cache

GROUP = "graphbuild.rules"


@lru_cache(maxsize=1)
def _entry_points() -> dict:
    """name -> EntryPoint. Scanning every installed distribution costs tens of milliseconds, so
    the answer is kept in the user's cache, valid while no directory on sys.path changed (an
    install or uninstall changes its site-packages directory)."""
    import sys

    # the current directory (sys.path[0] under `python -m`) changes with every build, so its
    # own mtime is not a stamp: its distributions' metadata directories are (a source checkout
    # with a .egg-info registers its rules), and the key names it
    cwd = os.getcwd()
    dirs = [p for p in sys.path if p and p != cwd and os.path.isdir(p)]
    stamped = dirs + (_dist_dirs(cwd) if cwd in sys.path else [])
    cache = user_cache()
    key = ("entry-points", GROUP, tuple(dirs), cwd if cwd in sys.path else None)
    found = cache.get(key) if cache else None
    if found is None:
        found = [(ep.name, ep.value, getattr(ep.dist, "version", "") or "") for ep in _scan()]
        if cache:
            cache.put(key, stamped, found)
            cache.save_quietly()
    _VERSIONS.update({name: version for name, _, version in found})
    # "module:attr" strings: importlib.metadata itself costs ~20 ms to import
    return {name: value for name, value, _ in found}


_VERSIONS: dict[str, str] = {}


def _dist_dirs(folder: str) -> list[str]:
    """The distributions' metadata directories in ``folder`` (what importlib.metadata reads)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names if n.endswith((".egg-info", ".dist-info"))]


def fingerprint() -> tuple:
    """The installed rules (name, object, distribution version): cached BUILD parses are valid
    only for the same rules."""
    eps = _entry_points()
    return tuple(sorted((name, value, _VERSIONS.get(name, "")) for name, value in eps.items()))


def _scan():
    from importlib.metadata import entry_points

    return entry_points(group=GROUP)


def names() -> list[str]:
    return sorted(_entry_points())


@cache
def get(name: str) -> Rule | None:
    value = _entry_points().get(name)
    if value is None:
        return None
    module, _, attr = value.partition(":")
    obj = importlib.import_module(module.strip())
    for part in attr.strip().split("."):
        obj = getattr(obj, part)
    rule = obj()
    if not isinstance(rule, Rule):
        raise TypeError(f"entry point {name} ({value}) is not a graphbuild Rule")
    return rule
