"""`graphbuild cache verify [--repair]`: every blob's digest and every closure, across the
action cache, the CAS (command outputs), the materialised outputs and the image store.

Without ``--repair`` nothing is changed. With it (the cache directory locked exclusive), what is
broken is dropped so that the next run rebuilds it: corrupt blobs are deleted, action records and
``index.json`` entries whose outputs are incomplete are forgotten, modified output directories
are removed (they are restored from the CAS when next needed).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    checked: Counter = field(default_factory=Counter)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        what = ", ".join(f"{n} {kind}" for kind, n in sorted(self.checked.items())) or "nothing"
        if self.ok:
            return f"cache verify: ok ({what} checked)"
        verdict = "dropped what was broken: the next run rebuilds it" if self.repaired else \
            "`graphbuild cache verify --repair` drops what is broken, and the next run rebuilds it"
        return f"cache verify: {len(self.problems)} problems ({what} checked); {verdict}"

    def as_json(self) -> dict:
        return {"ok": self.ok, "problems": self.problems, "checked": dict(self.checked),
                "repaired": self.repaired}


def verify_cache(cache_dir: Path, repair: bool = False) -> Report:
    """Check (and with ``repair`` drop) everything broken in ``cache_dir``."""
    from ..oci.store import Store

    report = Report(repaired=repair)
    if not cache_dir.is_dir():
        return report
    store = Store(cache_dir / "oci")
    store.remove_corrupt = repair
    store._closures = {}  # remembered closures are what is being checked: trust none
    _blobs(report, store._blobs, "oci", repair)
    _blobs(report, cache_dir / "cas" / "blobs", "cas", repair, nested=True)
    _index(report, store, repair)
    if (cache_dir / "actions").exists():
        _records(report, cache_dir, store, repair)
    _outputs(report, cache_dir, repair)
    if repair:
        for memo in (cache_dir / "refs-recorded.pickle", store.root / ".closures.pickle"):
            memo.unlink(missing_ok=True)
    return report


def _blobs(report: Report, root: Path, area: str, repair: bool, nested: bool = False) -> None:
    from .hashing import digest_file

    dirs = [d for d in root.iterdir() if d.is_dir()] if nested and root.is_dir() else [root]
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            report.checked[f"{area} blobs"] += 1
            try:
                actual = digest_file(path)
            except OSError as exc:
                actual = f"unreadable ({exc.strerror})"
            if actual != "sha256:" + path.name:
                report.problems.append(f"{area}: blob sha256:{path.name} is corrupt "
                                       f"(content hashes to {actual})")
                if repair:
                    path.unlink(missing_ok=True)


def _index(report: Report, store, repair: bool) -> None:
    """Each index.json entry reaches only blobs that are there, at their sizes."""
    from ..oci import mediatypes as mt

    if not (store.root / "index.json").exists():
        return
    entries = store.entries()
    broken = []
    for entry in entries:
        report.checked["index.json entries"] += 1
        problems = store.check_closure(entry)
        if problems:
            ann = entry.get("annotations", {})
            name = ann.get(mt.REF_NAME) or ann.get(mt.LABEL) or entry.get("digest")
            report.problems.append(f"index.json: {name}: {problems[0]}")
            broken.append(entry)
    if repair and broken:
        store.drop_entries(broken)


def _records(report: Report, cache_dir: Path, store, repair: bool) -> None:
    """Each action record's outputs: its image closure, or its tree and the files it lists."""
    from .action_cache import ActionCache, Unreadable
    from .cas import CAS

    cas = CAS(cache_dir / "cas")
    try:
        actions = ActionCache(cache_dir / "actions", readonly=not repair)
    except Unreadable as exc:
        report.problems.append(f"{exc}; --repair sets it aside")
        return
    try:
        for key, rec in list(actions.records()):
            report.checked["action records"] += 1
            problem = _record_problem(rec, store, cas)
            if problem:
                report.problems.append(f"action {rec.get('node', key)}: {problem}")
                if repair:
                    actions.forget(key)
        report.problems += [f"action cache: entry {k} is unreadable" for k in actions.garbled]
    except Unreadable as exc:
        report.problems.append(f"{exc}; --repair sets it aside")
    finally:
        actions.close()


def _record_problem(rec, store, cas) -> str | None:
    data = rec.get("data") if isinstance(rec, dict) else None
    if not isinstance(data, dict):
        return "the record is not an outcome"
    if "tree" in data:
        blobs = cas.tree_blobs(data["tree"])
        if blobs is None:
            return f"its output tree {data['tree']} is missing"
        missing = [b for b in blobs if not cas.verify_blob(b)]
        return f"its output file {missing[0]} is missing or corrupt" if missing else None
    for desc in [data.get("descriptor"), *data.get("referrers", ())]:
        if desc:
            problems = store.check_closure(desc)
            if problems:
                return problems[0]
    return None


def _outputs(report: Report, cache_dir: Path, repair: bool) -> None:
    """Each materialised output directory still holds the tree it was published with."""
    from ..errors import ActionFailed
    from .cas import CAS, out_path
    from .hashing import read_pickle, write_pickle

    published_path = cache_dir / "published.pickle"
    published = read_pickle(published_path)
    cas = CAS(cache_dir / "cas")
    dropped = False
    for node, digest in list(published.items()):
        dest = Path(out_path(cache_dir, node))
        if not dest.is_dir():
            continue
        report.checked["output directories"] += 1
        try:
            intact = cas.tree_digest(dest) == digest
        except (OSError, ActionFailed):
            intact = False
        if not intact:
            report.problems.append(f"out: {os.path.relpath(dest, cache_dir)} was modified "
                                   f"(it no longer holds {node}'s output {digest})")
            if repair:
                shutil.rmtree(dest, ignore_errors=True)
                del published[node]
                dropped = True
    if dropped:
        write_pickle(published_path, published)
