"""Rules come from the ``graphbuild.rules`` entry-point group, built-in ones included.

Entry points are listed once and each rule class is imported only when a BUILD file uses it.
"""

from __future__ import annotations

import os
from functools import cache, lru_cache

from .rule_api import Rule

GROUP = "graphbuild.rules"


@lru_cache(maxsize=1)
def _entry_points() -> dict:
    """name -> EntryPoint. Scanning every installed distribution costs tens of milliseconds, so
    the answer is kept in the user's cache, valid while no directory on sys.path changed (an
    install or uninstall changes its site-packages directory)."""
    import sys
    from importlib.metadata import EntryPoint

    dirs = [p for p in sys.path if p and os.path.isdir(p)]
    cache = _user_cache()
    key = ("entry-points", GROUP, tuple(dirs))
    found = cache.get(key) if cache else None
    if found is None:
        found = [(ep.name, ep.value, getattr(ep.dist, "version", "") or "") for ep in _scan()]
        if cache:
            cache.put(key, dirs, found)
            try:
                cache.save()
            except OSError:
                pass  # an unwritable home directory only costs the next run a rescan
    _VERSIONS.update({name: version for name, _, version in found})
    return {name: EntryPoint(name, value, GROUP) for name, value, _ in found}


_VERSIONS: dict[str, str] = {}


def fingerprint() -> tuple:
    """The installed rules (name, object, distribution version): cached BUILD parses are valid
    only for the same rules."""
    eps = _entry_points()
    return tuple(sorted((ep.name, ep.value, _VERSIONS.get(ep.name, "")) for ep in eps.values()))


def _scan():
    from importlib.metadata import entry_points

    return entry_points(group=GROUP)


def _user_cache():
    """The per-user cache (XDG_CACHE_HOME/graphbuild), or None where it cannot be written."""
    from pathlib import Path

    from .treecache import TreeCache

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        return TreeCache(Path(base) / "graphbuild" / "entry-points.pickle")
    except OSError:
        return None


def names() -> list[str]:
    return sorted(_entry_points())


@cache
def get(name: str) -> Rule | None:
    ep = _entry_points().get(name)
    if ep is None:
        return None
    cls = ep.load()
    rule = cls()
    if not isinstance(rule, Rule):
        raise TypeError(f"entry point {name} ({ep.value}) is not a graphbuild Rule")
    return rule
