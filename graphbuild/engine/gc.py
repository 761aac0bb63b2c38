"""Garbage collection: drop cached outputs that no action record or store tag refers to.

Runs holding the cache directory's lock exclusive (`cache gc`), so no build is live: every temp
file is a killed build's leftover, and every blob not yet recorded is garbage."""

from __future__ import annotations

from ..workspace import Workspace


def collect(ws: Workspace) -> tuple[int, int]:
    """Drop superseded action records, then the command-output blobs and store objects nothing
    refers to any more, and temp files."""
    from .action_cache import ActionCache
    from .cas import CAS
    from .run_lock import reclaim_leftovers

    cache_dir = ws.cache_dir

    removed, freed = reclaim_leftovers(cache_dir)
    if not (cache_dir / "actions").exists():
        return _buildah(cache_dir, removed, freed)
    removed, freed = _buildah(cache_dir, removed, freed)
    ac = ActionCache(cache_dir / "actions")
    # Each node's latest built outcome is kept, and the one its latest run used (a revert to
    # an earlier state is a cache hit on an older record: gc must not drop it).
    live = {rec["key"] for _, rec in ac.node_records()} | ac.used_keys()
    for key in [key for key, _ in ac.records() if key not in live]:
        ac.forget(key)
        removed += 1
    trees = {rec["data"]["tree"] for _, rec in ac.records() if "tree" in rec.get("data", {})}
    descriptors = [d for _, rec in ac.records() for d in
                   [rec.get("data", {}).get("descriptor"), *rec.get("data", {}).get("referrers", ())]
                   if d]
    ac.close()
    cas = CAS(cache_dir / "cas")
    keep = cas.referenced(trees)
    for digest in cas.all_digests() - keep:
        freed += cas.remove(digest)
        removed += 1
    if (cache_dir / "oci" / "index.json").exists():
        from ..oci.store import Store

        n, b = Store(cache_dir / "oci").gc(extra_roots=descriptors, tmp_max_age=0)
        removed, freed = removed + n, freed + b
    return removed, freed


def _buildah(cache_dir, removed: int, freed: int) -> tuple[int, int]:
    """buildah's working containers (an interrupted build leaves them) and the base images it
    imported: built images leave buildah as OCI layouts, so nothing in its storage is needed."""
    from ..backends import buildah

    before = disk_usage(cache_dir / "buildah")
    n = buildah.reclaim(cache_dir / "buildah")
    return removed + n, freed + max(0, before - disk_usage(cache_dir / "buildah"))


def disk_usage(path) -> int:
    """Bytes of the files below ``path`` (symlinks not followed)."""
    import os

    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
