"""`graphbuild builders`: the buildx builder instances the workspace's platforms need, whether
each exists, its status, the platforms it reports and its BuildKit version, and (with --create)
creating the missing ones."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("patterns", nargs="*", metavar="PATTERN",
                   help="targets whose image builds to consider (default: //...)")
    p.add_argument("--create", action="store_true",
                   help="create missing builders (docker-container driver on the local Docker)")


@dataclass
class Need:
    platforms: set = field(default_factory=set)
    why: set = field(default_factory=set)


def needed(analysis) -> dict[str, Need]:
    """builder name ("" = the default builder) -> the platforms and what names it: image nodes
    built with buildx, WORKSPACE.yaml `builders`, and platform targets' `builder` attributes."""
    from .. import platforms
    from ..backends import buildx

    ws = analysis.ws
    out: dict[str, Need] = {}

    def add(name: str, plat, why: str) -> None:
        need = out.setdefault(name, Need())
        need.platforms.add(str(plat))
        need.why.add(why)

    for key, names in (ws.builders or {}).items():
        for name in [names] if isinstance(names, str) else names:
            add(name, platforms.parse(key), "WORKSPACE.yaml builders")
    for label, prov in analysis.providers.items():
        if prov.rule == "platform" and (prov.data or {}).get("builder"):
            add(prov.data["builder"], prov.platform, str(label))
    for node, action in analysis.actions.items():
        if action.rule != "image" or action.platform is None:
            continue
        if (action.key_data or {}).get("backend") != "buildx":
            continue
        target = analysis.target_of[node]
        pool = buildx.node_builder(target, analysis, action.platform)
        for name in pool.split(",") if pool else [""]:
            add(name, action.platform, "images built with buildx" if name else
                "images built with buildx on platforms no builder is named for")
    return out


def main(args) -> int:
    from ..backends import buildx
    from .common import load

    loaded = load(args, args.patterns or ["//..."])
    needs = needed(loaded.analysis)
    if not needs:
        print("no image here is built with buildx, and no platform names a builder")
        return 0
    exe = buildx.require()
    rows = []
    missing = 0
    for name in sorted(needs, key=lambda n: (n == "", n)):
        need = needs[name]
        plats = sorted(need.platforms)
        shown, status, create_as, b = name, "", name, None
        if not name:
            current = buildx.inspect(exe)
            if current.driver not in buildx.NO_OCI_DRIVERS:
                shown, status, create_as, b = current.name or "(current)", _exists(current), "", current
            else:
                shown = create_as = buildx.DEFAULT_BUILDER
                why = (f"the default, as the current builder '{current.name}' uses the "
                       f"{current.driver} driver (no OCI export)")
                need.why = {why}
        if create_as:
            b = buildx.inspect(exe, create_as)
            status = _exists(b)
            if not b.exists:
                if args.create:
                    # a named builder is for its own platforms; the default one builds any
                    b = buildx.create(exe, create_as, plats if name else None)
                    status = "created"
                else:
                    missing += 1
        rows.append((shown, ", ".join(plats), "; ".join(sorted(need.why)), status,
                      (b.buildkit or "-") if b and b.exists else "", _reported(b)))
    _table([("BUILDER", "PLATFORMS", "NEEDED BY", "STATUS", "BUILDKIT", "REPORTS"), *rows])
    if missing:
        print(f"\n{missing} missing: `graphbuild builders --create` creates them as "
              "docker-container builders on this Docker; for a native node of another "
              "architecture use `docker buildx create --name NAME ENDPOINT` instead "
              "(docs/backends.md)")
    return 0


def _exists(b) -> str:
    if not b.exists:
        return "missing"
    return f"{(b.status or 'exists').lower()} ({b.driver})"


def _reported(b, shown: int = 3) -> str:
    """The first platforms the builder's nodes report (its native ones first)."""
    if b is None or not b.exists or not b.platforms:
        return ""
    more = len(b.platforms) - shown
    return ",".join(b.platforms[:shown]) + (f" (+{more})" if more > 0 else "")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
