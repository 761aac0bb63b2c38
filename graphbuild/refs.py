"""Naming built images in the store: each node's label and tags, recorded once per build."""

from __future__ import annotations

from .oci import mediatypes as mt


def record_refs(store, items: list[tuple[str, dict, list[str]]]) -> int:
    """Point each (label, descriptor, tags) in the store's index.json; skip what is already so.

    A no-op build reads index.json once and writes nothing.
    """
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
    """(label, descriptor, tags) for every successful node with an image or index output."""
    out = []
    for node, res in summary.results.items():
        if res.status in ("built", "cached") and res.outcome and "descriptor" in res.outcome.data:
            out.append((node, res.outcome.data["descriptor"], list(actions[node].tags)))
    return out
