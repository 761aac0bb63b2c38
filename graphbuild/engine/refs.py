"""Naming built images in the store: each node's label and tags, recorded once per build."""

from __future__ import annotations

import os
from pathlib import Path

from ..oci import mediatypes as mt
from .hashing import read_pickle, write_pickle


def record_refs(store, items: list[tuple[str, dict, list[str]]], memo: Path | None = None) -> int:
    """Point each (label, descriptor, tags) in the store's index.json; skip what is already so.

    ``memo`` keeps the items last recorded with index.json's stat stamp: while neither changed
    (a no-op build) nothing is read but that file; index.json holds every build's entries and
    parsing it costs a large workspace's no-op tens of milliseconds.
    """
    store.ensure_layout()  # a store that lost oci-layout or index.json is whole again
    if memo is not None:
        last, stamp = read_pickle(memo), _stamp(store)
        if stamp is not None and last.get("stamp") == stamp and last.get("items") == items:
            return 0
    changed = _record(store, items)
    if memo is not None:
        write_pickle(memo, {"stamp": _stamp(store), "items": items})
    return changed


def _stamp(store) -> tuple | None:
    try:
        st = os.stat(store.root / "index.json")
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino


def _record(store, items: list[tuple[str, dict, list[str]]]) -> int:
    current: dict[str, tuple[str, set[str]]] = {}
    for entry in store.entries():
        ann = entry.get("annotations", {})
        label = ann.get(mt.LABEL)
        if label is None:
            continue
        digest, tags = current.get(label, (entry["digest"], set()))
        if mt.REF_NAME in ann:
            tags.add(ann[mt.REF_NAME])
        current[label] = (digest if digest == entry["digest"] else "", tags)
    changed = [(label, desc, tags) for label, desc, tags in items
               if current.get(label) != (desc["digest"], set(tags))]
    if changed:
        store.set_refs_many(changed)
    return len(changed)


def built_refs(actions: dict, summary) -> list[tuple[str, dict, list[str]]]:
    """(label, descriptor, tags) for every successful node with an image or index output, and
    ("NODE sbom" / "NODE provenance", descriptor, []) for each record attached to an image."""
    from ..attest.records import kind_of

    out = []
    for node, res in summary.results.items():
        if res.status in ("built", "cached") and res.outcome and "descriptor" in res.outcome.data:
            desc = res.outcome.data["descriptor"]
            out.append((node, desc, list(actions[node].tags)))
            if mt.is_manifest(desc.get("mediaType")):
                out += [(f"{node} {kind_of(r)}", r, []) for r in res.outcome.data.get(
                    "referrers", ())]
    return out
