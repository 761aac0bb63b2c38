"""`graphbuild cache stats|clean|gc|verify`: the local cache.

``gc``, ``clean`` and ``verify --repair`` take the cache directory's lock exclusive: they wait
for running builds (which hold it shared) to finish, and builds started meanwhile wait for them.
"""

from __future__ import annotations

import argparse

# what `cache stats` sizes: the action cache, command outputs, the image store, materialised
# outputs, builds' scratch space, and buildah's working storage
PARTS = ("actions", "cas", "oci", "out", "tmp", "buildah")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("stats", "clean", "gc", "verify"))
    p.add_argument("--output", choices=("plain", "json"), default="plain")
    p.add_argument("--repair", action="store_true",
                   help="with verify: drop what is broken, so the next run rebuilds it")


def human(n: float) -> str:
    """Bytes in the largest unit that keeps a number >= 1: ``512 B``, ``3.40 KB``, ``21.5 MB``."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            break
    return f"{n:.2f} {unit}" if n < 10 else f"{n:.1f} {unit}" if n < 100 else f"{n:.0f} {unit}"


def _du(path) -> int:
    from ..engine.gc import disk_usage

    return disk_usage(path)


def main(args) -> int:
    from ..errors import UserError
    from .common import workspace

    if args.repair and args.action != "verify":
        raise UserError("--repair goes with `cache verify`",
                        hint="graphbuild cache verify --repair")
    ws = workspace(args)
    return {"stats": _stats, "clean": _clean, "gc": _gc, "verify": _verify}[args.action](ws, args)


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
    sizes = {part: _du(cache_dir / part) for part in PARTS}
    info = {"cache_dir": str(cache_dir), "actions": dict(sorted(by_mnemonic.items())),
            "entries": sum(by_mnemonic.values()), "bytes": sizes, "total_bytes": sum(sizes.values())}
    remote = _last_remote_run(cache_dir)
    if remote:
        info["remote_cache_last_run"] = remote
    if args.output == "json":
        print(json.dumps(info, indent=2))
        return 0
    print(f"cache: {cache_dir}")
    print(f"action entries: {info['entries']}")
    for mnem, n in info["actions"].items():
        print(f"  {mnem:<12} {n}")
    for part, size in sizes.items():
        print(f"{part:<8} {human(size):>10}")
    print(f"{'total':<8} {human(info['total_bytes']):>10}")
    if remote:
        packed = remote.get("pack_hits", 0)
        print(f"remote cache {remote.get('remote', '?')}, last run: {remote.get('hits', 0)} hits"
              f"{f' ({packed} from the pack)' if packed else ''}, "
              f"{remote.get('misses', 0)} misses, {human(remote.get('bytes_downloaded', 0))} "
              f"downloaded, {remote.get('entries_written', 0)} entries written "
              f"({human(remote.get('bytes_uploaded', 0))} uploaded)")
    return 0


def _last_remote_run(cache_dir) -> dict | None:
    """What the last run that used a remote cache recorded about it."""
    import json

    from ..engine.remote_cache import STATS_FILE

    try:
        figures = json.loads((cache_dir / STATS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return figures if isinstance(figures, dict) else None


def _clean(ws, args) -> int:
    from ..engine import run_lock

    with run_lock.exclusive(ws.cache_dir, "cache clean") as lock:
        _remove_all_but(ws.cache_dir, lock.path)
        lock.path.unlink(missing_ok=True)  # last: a build arriving meanwhile waited on it
    try:
        ws.cache_dir.rmdir()
    except OSError:
        pass  # a build that started just now is already using it
    print(f"removed {ws.cache_dir}")
    return 0


def _remove_all_but(directory, keep) -> None:
    import shutil

    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path == keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _gc(ws, args) -> int:
    import json

    from ..engine import run_lock
    from ..engine.gc import collect

    with run_lock.exclusive(ws.cache_dir, "cache gc"):
        removed, freed = collect(ws)
    if args.output == "json":
        print(json.dumps({"removed": removed, "freed_bytes": freed}))
    else:
        print(f"gc: removed {removed} unreferenced objects, freed {human(freed)}")
    return 0


def _verify(ws, args) -> int:
    import json
    import sys

    from ..engine import run_lock
    from ..engine.cache_check import verify_cache

    if args.repair:
        lock = run_lock.exclusive(ws.cache_dir, "cache verify --repair")
    else:  # reading only: builds may run meanwhile
        lock = run_lock.RunLock(ws.cache_dir).acquire(False)
    with lock:
        report = verify_cache(ws.cache_dir, repair=args.repair)
    if args.output == "json":
        print(json.dumps(report.as_json(), indent=2))
    else:
        for problem in report.problems:
            print(problem)
        print(report.summary(), file=sys.stderr)
    return 0 if report.ok or args.repair else 1
