"""`graphbuild verify`: rebuild a target from scratch in a throw-away cache and compare every
image digest (and record) with the store's, as a user checks a release is reproducible."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("label", metavar="LABEL", help="an image or manifest target (built already)")
    p.add_argument("-j", "--jobs", type=int, help="parallel actions (default: the CPU count)")


def main(args) -> int:
    from ..engine.remote_cache import open_store
    from .lookup import descriptor, load_label, select_nodes

    loaded, node = load_label(args, args.label)
    store = open_store(loaded.ws)
    descriptor(store, node)  # built already, or exit 2 saying so
    select_nodes(loaded, [args.label])
    scratch = Path(tempfile.mkdtemp(prefix="graphbuild-verify-"))
    try:
        summary = _rebuild(loaded, scratch, args.jobs or os.cpu_count() or 1)
        return _compare(loaded, store, summary)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _rebuild(loaded, scratch: Path, jobs: int):
    from ..engine.scheduler import Engine, Options, Scheduler
    from ..errors import BuildError
    from ..events import Events

    loaded.ws.cache_dir = scratch
    engine = Engine(loaded.ws, Events())
    try:
        summary = Scheduler(engine, loaded.analysis.graph, loaded.analysis.actions,
                            Options(jobs=jobs, no_cache=True)).run()
    finally:
        engine.close()
    if not summary.ok:
        failed = [r for r in summary.results.values() if r.status == "failed"]
        raise BuildError(f"verify: the rebuild failed: {failed[0].node}: {failed[0].reason}")
    return summary


def _compare(loaded, store, summary) -> int:
    """One line per image or index node: the store's digest against the rebuild's."""
    differ = 0
    for node, res in sorted(summary.results.items()):
        data = res.outcome.data if res.outcome else {}
        if "descriptor" not in data:
            continue
        want = store.lookup(node)
        got = data["descriptor"]["digest"]
        if want is None:
            print(f"not in the store {node}: rebuilt {got}")
            continue
        same = want["digest"] == got
        differ += not same
        print(f"{'identical' if same else 'DIFFERENT'} {node}: {want['digest']}"
              + ("" if same else f" rebuilt as {got}"))
        for record in data.get("referrers", ()):
            kind = record["artifactType"]
            old = store.lookup(f"{node} {_kind(kind)}")
            if old is not None and old["digest"] != record["digest"]:
                differ += 1
                print(f"DIFFERENT {node} {_kind(kind)}: {old['digest']} rebuilt as "
                      f"{record['digest']}")
    print(f"verify: {'every digest is identical' if not differ else f'{differ} differ'}",
          file=sys.stderr)
    return 0 if not differ else 1


def _kind(artifact_type: str) -> str:
    from ..attest.records import kind_of

    return kind_of({"artifactType": artifact_type})
