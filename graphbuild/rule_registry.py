"""Rules come from the ``graphbuild.rules`` entry-point group, built-in ones included.

Entry points are listed once and each rule class is imported only when a BUILD file uses it.
"""

from __future__ import annotations

from functools import cache, lru_cache

from .rule_api import Rule

GROUP = "graphbuild.rules"


@lru_cache(maxsize=1)
def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP)}


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
