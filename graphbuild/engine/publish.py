"""`run --push` as a transaction: push nodes (graph nodes, one per tagged output) upload every
blob and manifest by digest and check each index; only when all of them succeeded are the tags
moved, all at the end. If anything fails before that, no tag moves.

The push nodes of a run share a blob ledger (``remote.BlobLedger``): a blob that several outputs
share (a base layer) is uploaded by the first node that needs it and mounted by the others.
Push nodes wait on the network, not a CPU: they are ``io_bound`` and run beyond ``-j``."""

from __future__ import annotations

import sys
from collections import defaultdict

from ..errors import BuildError, UserError
from ..registry import limits
from ..rule_api import Action, NodeId, Outcome, RunContext

PUSH_SUFFIX = " push"
# Phase 3 is one PUT per tag and nothing else runs then: as many as the client has connections.
TAG_WORKERS = 16


def add_push_nodes(analysis, timeout_s: float = 1800.0) -> list[NodeId]:
    """One Push node after every node whose output has tags; returns their ids. Each must be
    done within ``timeout_s`` (`run --push-timeout`)."""
    from ..registry.reference import ReferenceError, parse_reference
    from .remote import BlobLedger

    ledger = BlobLedger()  # one per run (a Remote outlives a run when runs share a process)
    added = []
    for node, action in list(analysis.actions.items()):
        if not action.tags:
            continue
        for tag in action.tags:
            try:
                parse_reference(tag)
            except ReferenceError as exc:
                raise UserError(f"tag {tag!r} cannot be pushed: {exc}", path=action.build_file,
                                line=action.line, label=str(action.label),
                                hint="a pushable tag is [host[:port]/]repo[:tag]") from None
        push = Action(
            label=action.label, platform=action.platform, rule="push", rule_version=1,
            mnemonic="Push", progress=f"Pushing {node}", deps=[node],
            key_data={"tags": sorted(action.tags)}, cacheable=False, suffix=PUSH_SUFFIX,
            io_bound=True,
            run=lambda rc, n=node, t=tuple(action.tags): _upload(rc, n, t, ledger, timeout_s),
            build_file=action.build_file, line=action.line,
        )
        analysis.declare(push)
        added.append(push.node)
    return added


def _targets(desc: dict, tags, forced=(), move: bool = True, records=()):
    """PushTargets (one per repository) for a descriptor and its tags; ``records`` (artifact
    manifests about it) go up by digest beside it."""
    from ..registry.reference import parse_reference
    from ..registry.transfer import PushTarget

    by_repo: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for tag in tags:
        ref = parse_reference(tag)
        by_repo[(ref.registry, ref.repository)][ref.tag or "latest"] = desc["digest"]
    pairs = frozenset((desc["digest"], child) for child in forced)
    return [PushTarget(reg, repo, (desc, *records), tag_map if move else {}, pairs)
            for (reg, repo), tag_map in sorted(by_repo.items())]


def _upload(rc: RunContext, node: NodeId, tags, ledger, timeout_s: float) -> Outcome:
    """Phase 1 and 2 for one output: everything uploaded by digest and checked; no tag moves.

    The blobs no other push node of the run has claimed are this node's to push; for the others
    it waits (while its own go ahead) until they have landed and mounts them from there: without
    a HEAD when their node uploaded or mounted them (this repository is then unlikely to have
    them; a refused mount is followed by the HEAD), and if their node failed, it uploads them
    itself."""
    from ..attest.push import referrer_roots
    from ..attest.sbom_store import ensure_all
    from ..registry.transfer import PublishError, PushPlan, blobs_of, publish
    from .remote import Remote

    outcome = rc.deps[node]
    desc = outcome.data["descriptor"]
    records = referrer_roots(outcome.data) + ensure_all(rc.store, rc.ws.cache_dir, desc)
    targets = tuple(_targets(desc, tags, outcome.data.get("forced", ()), move=False,
                             records=records))
    try:
        needed = blobs_of(PushPlan(targets), rc.store)
    except PublishError as exc:
        raise BuildError(str(exc)) from None
    claim = ledger.claim(needed, rc.cancelled)
    plan = PushPlan(targets, known_locations=_remote_only(rc.store, needed))
    try:
        with limits.scope(timeout_s, _deadline_words(timeout_s), rc.cancelled):
            result = publish(plan, rc.store,
                             Remote.of(rc.ws).clients_for(targets, ledger.writes),
                             on_blob=claim.landed, pending=claim)
    except PublishError as exc:
        raise BuildError(str(exc)) from None
    finally:
        claim.release()
    rc.log(f"uploaded {result.blobs_uploaded} blobs ({result.bytes_uploaded} bytes), mounted "
           f"{result.blobs_mounted}, {result.blobs_present} already present; claimed "
           f"{len(claim.owned)} of its {len(needed)} blobs first in this run")
    # where this node PUT the output's own manifest: no tag there can name it yet
    added = sorted([reg, repo] for reg, repo, digest in result.added if digest == desc["digest"])
    return Outcome(desc["digest"], {"descriptor": desc, "tags": list(tags), "added": added,
                                    "referrers": records})


def _remote_only(store, needed) -> dict[str, tuple[str, ...]]:
    """Where the remote-only blobs of a push are (the remote cache repository): mounted from
    there into a repository of that registry; streamed through the store for another."""
    where = {}
    for _, digest in needed:
        record = store.remote_record(digest)
        if record is not None:
            where[digest] = (f"{record['registry']}/{record['repository']}",)
    return where


def _deadline_words(seconds: float) -> str:
    return f"the push deadline ({seconds:g} s; run --push-timeout)"


def move_tags(loaded, engine, summary, push_nodes: list[NodeId], events,
              timeout_s: float = 1800.0) -> bool:
    """Phase 3, only when every node (push nodes included) succeeded: move all tags (the push
    nodes have uploaded and checked everything they name)."""
    from ..registry.transfer import PublishError, PushPlan
    from ..registry.transfer import move_tags as move
    from .remote import Remote

    if not summary.ok:
        print("graphbuild: push: nothing was tagged (the build or an upload failed)",
              file=sys.stderr)
        return False
    targets, added = [], set()
    for node in push_nodes:
        out = summary.results[node].outcome
        build_node = node[: -len(PUSH_SUFFIX)]
        forced = summary.results[build_node].outcome.data.get("forced", ())
        targets.extend(_targets(out.data["descriptor"], out.data["tags"], forced,
                                records=out.data.get("referrers", ())))
        added.update((reg, repo, out.digest) for reg, repo in out.data["added"])
    if not targets:
        return True
    label_of = {d["digest"]: loaded.analysis.actions[n].label for n in push_nodes
                for d in [summary.results[n].outcome.data["descriptor"]]}

    def on_event(kind: str, ref: str, digest: str) -> None:
        events.emit({"event": "pushed", "label": str(label_of.get(digest, "")), "ref": ref,
                     "digest": digest})

    clients = Remote.of(loaded.ws).clients_for(targets)
    try:
        with limits.scope(timeout_s, _deadline_words(timeout_s), engine.cancelled,
                          engine.retries):
            _before_tags(loaded.ws, targets, engine.store, clients)
            move(PushPlan(tuple(targets)), engine.store, clients,
                 on_event, added=added, max_workers=TAG_WORKERS)
    except (PublishError, BuildError) as exc:
        print(f"graphbuild: {exc}", file=sys.stderr)
        return False
    return True


def _before_tags(ws, targets, store, clients) -> None:
    """What must be true before any tag moves: each tagged digest signed (when the workspace
    says how) and every record listed among its subject's referrers."""
    from ..attest.push import sign, update_referrers
    from ..registry.errors import RegistryError

    if ws.signing:
        sign(ws.signing["command"], targets, str(ws.root))
    try:
        update_referrers(targets, store, clients,
                         ws.cache_dir / "attest" / "fallback-tags.json")
    except RegistryError as exc:
        raise BuildError(f"push failed while listing referrers; no tag was moved: {exc}") \
            from None
