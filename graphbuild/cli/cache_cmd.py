"""`graphbuild cache stats|clean|gc`: the local cache."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("stats", "clean", "gc"))
    p.add_argument("--output", choices=("plain", "json"), default="plain")


def _du(path) -> int:
    import os

    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def main(args) -> int:
    from .common import workspace

    ws = workspace(args)
    return {"stats": _stats, "clean": _clean, "gc": _gc}[args.action](ws, args)


def _stats(ws, args) -> int:
    import json
    from collections import Counter

    from ..engine.action_cache import ActionCache

    cache_dir = ws.cache_dir
    by_mnemonic: Counter = Counter()
    if (cache_dir / "actions").exists():
        ac = ActionCache(cache_dir / "actions")
        for _, rec in ac.records():
            by_mnemonic[rec.get("mnemonic", "?")] += 1
        ac.close()
    sizes = {part: _du(cache_dir / part) for part in ("actions", "cas", "oci", "out")}
    info = {"cache_dir": str(cache_dir), "actions": dict(sorted(by_mnemonic.items())),
            "entries": sum(by_mnemonic.values()), "bytes": sizes, "total_bytes": sum(sizes.values())}
    if args.output == "json":
        print(json.dumps(info, indent=2))
        return 0
    print(f"cache: {cache_dir}")
    print(f"action entries: {info['entries']}")
    for mnem, n in info["actions"].items():
        print(f"  {mnem:<12} {n}")
    for part, size in sizes.items():
        print(f"{part:<8} {size / 1e6:10.2f} MB")
    print(f"{'total':<8} {info['total_bytes'] / 1e6:10.2f} MB")
    return 0


def _clean(ws, args) -> int:
    import shutil

    if ws.cache_dir.exists():
        shutil.rmtree(ws.cache_dir)
    print(f"removed {ws.cache_dir}")
    return 0


def _gc(ws, args) -> int:
    from ..engine.gc import collect

    removed, freed = collect(ws)
    print(f"gc: removed {removed} unreferenced objects, freed {freed / 1e6:.2f} MB")
    return 0
