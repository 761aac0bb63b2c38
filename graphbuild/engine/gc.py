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
        return removed, freed
    ac = ActionCache(cache_dir / "actions")
    # Only each node's latest outcome is kept: older ones were superseded by a rebuild.
    live = {rec["key"] for _, rec in ac.node_records()}
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
