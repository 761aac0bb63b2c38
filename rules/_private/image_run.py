"""Image execution: turning a node spec into a backend build request, and cache checks."""

from __future__ import annotations

from pathlib import Path

from graphbuild import backends
from graphbuild.backends.base import BuildRequest, NamedContext
from graphbuild.backends.plan import context_exclusions
from graphbuild.rule_api import Outcome, RunContext


def _named_contexts(rc: RunContext, spec) -> dict[str, NamedContext]:
    out = {}
    for ref, pinned in spec.refs.items():
        plat = spec.ref_platforms.get(ref, spec.platform)
        out[f"ref:{ref}"] = NamedContext(ref, "image", descriptor=_pull(rc, pinned, plat))
    for name, (kind, value) in spec.contexts.items():
        if kind == "dir":
            out[name] = NamedContext(name, "dir", path=value)
            continue
        if kind == "ref":  # for the stage's FROM --platform, as BuildKit resolves it
            plat = spec.context_platforms.get(name, spec.platform)
            out[name] = NamedContext(name, "image", descriptor=_pull(rc, value, plat))
            continue
        outcome = rc.deps[value]
        if "descriptor" in outcome.data:
            out[name] = NamedContext(name, "image", descriptor=outcome.data["descriptor"])
        else:  # a command's per-platform output directory
            rc.ensure_dir(value, outcome.digest)
            out[name] = NamedContext(name, "dir", path=rc.out_dir(value))
    return out


def _pull(rc: RunContext, pinned: str, platform) -> dict:
    """Fetch one platform of a base image (nothing when the store has it)."""
    from graphbuild.engine.remote import Remote

    return Remote.of(rc.ws).pull(pinned, platform, rc.store)


def run(rc: RunContext, spec) -> Outcome:
    req = BuildRequest(
        label=spec.label, node=rc.action.node, platform=spec.platform,
        context_dir=Path(spec.context_dir), dockerfile=Path(spec.dockerfile),
        dockerfile_rel=spec.dockerfile_rel, plan=spec.plan, build_args=spec.build_args,
        target=spec.target or None, labels=spec.labels, contexts=_named_contexts(rc, spec),
        source_date_epoch=spec.source_date_epoch, secrets=spec.secrets, ssh=spec.ssh,
        exclude=context_exclusions(Path(spec.context_dir), rc.ws.cache_dir), batch=rc.batch,
        **backends.request_options(rc.ws, spec),
    )
    result = backends.get(spec.backend).build(req, rc.store, rc.scratch_dir(), rc.cancelled)
    for note in result.notes:
        rc.note(note)
    data = {"descriptor": result.descriptor}
    if spec.attest and any(spec.attest.values()):
        from graphbuild.attest.attach import make_records

        data["referrers"] = make_records(rc, spec, result.descriptor)
    return Outcome(result.descriptor["digest"], data)


def check_cached(rc: RunContext, outcome: Outcome) -> bool:
    """A cache hit counts only while everything its manifest or index reaches (and its records)
    is in the store at the size its descriptor gives: a stat per blob, the manifests read once
    and remembered. Whatever is missing or damaged is said, and the node rebuilds."""
    desc = outcome.data.get("descriptor")
    if not desc:
        return False
    for d in [desc, *outcome.data.get("referrers", ())]:
        problems = rc.store.check_closure(d)
        if problems:
            rc.note(f"cached image damaged: {problems[0]}")
            return False
    return True


def run_index(rc: RunContext, nodes: list[str]) -> Outcome:
    from graphbuild.oci.index import IndexEntry, build_index

    entries = [IndexEntry(rc.deps[n].data["descriptor"], n) for n in nodes]
    desc = build_index(rc.store, entries)
    return Outcome(desc["digest"], {"descriptor": desc, **children_records(rc, nodes)})


def children_records(rc: RunContext, nodes: list[str]) -> dict:
    """The records of an index's images, so that pushing the index pushes them too."""
    records = [r for n in nodes for r in rc.deps[n].data.get("referrers", ())]
    return {"referrers": records} if records else {}
