"""`graphbuild run`: build (and optionally push) the targets the patterns name."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_PUSH_TIMEOUT = "30m"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("patterns", nargs="+", metavar="PATTERN",
                   help="//pkg:name, //pkg:name[os/arch], //pkg:all, //pkg/...")
    p.add_argument("-j", "--jobs", type=int, help="parallel actions (default: WORKSPACE jobs, else CPUs)")
    p.add_argument("--keep-going", action="store_true", help="build everything not blocked by a failure")
    p.add_argument("--dry-run", action="store_true", help="print the plan and why; run nothing")
    p.add_argument("--push", action="store_true", help="publish images and move tags at the end")
    p.add_argument("--push-timeout", metavar="DURATION", default=DEFAULT_PUSH_TIMEOUT,
                   help="each push node, and the final tag moves, must be done within DURATION "
                        f"(Go syntax: 90s, 5m, 1h30m; default {DEFAULT_PUSH_TIMEOUT})")
    p.add_argument("--platform", action="append", metavar="P", help="limit fan-out to platform P")
    p.add_argument("--no-cache", action="store_true", help="ignore the action cache")
    p.add_argument("--pull", action="store_true",
                   help="resolve base image tags now, never from the digests they resolved to "
                        "last time (by default a registry that cannot be reached falls back on "
                        "those, with a note)")
    p.add_argument("--explain", action="store_true", help="say which input changed for each node run")
    p.add_argument("--output", choices=("auto", "plain", "json"), default="auto")
    p.add_argument("--events", metavar="FILE", help="write JSON Lines events to FILE")
    p.add_argument("--profile", metavar="FILE", help="write a Chrome trace to FILE")
    p.add_argument("--remote-cache", choices=("off", "read", "readwrite"), default=None,
                   help="use WORKSPACE.yaml's remote_cache: off, read (pull requests), or "
                        "readwrite (the default when one is configured; also "
                        "GRAPHBUILD_REMOTE_CACHE)")
    p.add_argument("--shard", metavar="I/N",
                   help="build only share I of N of the nodes (dependencies come from the "
                        "remote cache, or are built)")
    p.add_argument("--download", choices=("minimal", "all"), default="minimal",
                   help="all: fetch every layer of remote cache hits into the store "
                        "(minimal: only what the build reads)")
    p.add_argument("--affected-since", metavar="GITREF",
                   help="build only the targets of PATTERN that `affected --since GITREF` "
                        "finds (and what they need); nothing affected is success")


def main(args) -> int:
    from ..errors import UserError
    from ..labels import split_node
    from .common import load, output_file

    if args.jobs is not None and args.jobs < 1:
        raise UserError("-j must be at least 1", hint="pass -j N with N >= 1, or omit it to use every CPU")
    for flag, path in (("--events", args.events), ("--profile", args.profile)):
        if path is not None:
            output_file(flag, path)
    split = [split_node(text) for text in args.patterns]
    for text, (base, plat) in zip(args.patterns, split):
        if plat is not None and args.affected_since is not None:
            raise UserError(f"pattern '{text}': --affected-since takes target patterns, not "
                            "one platform's node", hint=f"--platform {plat} limits the build to "
                            f"that platform: graphbuild run --affected-since "
                            f"{args.affected_since} {base} --platform {plat}")
        if plat is not None and (base.endswith((":all", "/...")) or base == "//..."):
            raise UserError(f"pattern '{text}': [os/arch] names one platform of one target",
                            hint=f"--platform {plat} limits every target to that platform: "
                                 f"graphbuild run {base} --platform {plat}")
    if args.affected_since is not None:
        split = _affected(args)
        if not split:
            print(f"nothing affected since {args.affected_since} in "
                  f"{' '.join(args.patterns)}: nothing to build", file=sys.stderr)
            return 0
    shard = _check_shard(args)
    args.push_seconds = _push_seconds(args.push_timeout)
    loaded = load(args, [base for base, _ in split], plat_texts=args.platform,
                  on_workspace=lambda ws: _open_remote_cache(ws, args))
    if any(plat is not None for _, plat in split):
        from .lookup import select_nodes

        select_nodes(loaded, args.patterns)
    if shard:
        _take_share(loaded, *shard)
    loaded.push_nodes = []
    if args.push:
        from ..engine.publish import add_push_nodes

        loaded.push_nodes = add_push_nodes(loaded.analysis, args.push_seconds)
    jobs = args.jobs or loaded.ws.jobs or os.cpu_count() or 1
    for note in loaded.analysis.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.dry_run:
        return _dry_run(loaded, args, jobs)
    return _build(loaded, args, jobs)


def _push_seconds(text: str) -> float:
    from ..dockerfile.instructions import parse_go_duration
    from ..errors import UserError

    try:
        seconds = parse_go_duration(text) / 1e9
    except ValueError as exc:
        raise UserError(f"--push-timeout {text!r}: {exc}",
                        hint="a duration such as 90s, 10m or 1h30m") from None
    if seconds <= 0:
        raise UserError(f"--push-timeout {text!r} must be more than 0",
                        hint="a duration such as 90s, 10m or 1h30m")
    return seconds


def _open_remote_cache(ws, args) -> None:
    """``args.remote``: the run's remote cache (None: not used). On a machine whose cache is
    empty (a fresh CI runner) its scope's pack is read while the packages load."""
    from ..engine.remote_cache import choose_mode

    args.remote_cache = choose_mode(args.remote_cache, os.environ, ws.remote_cache)
    args.remote = None
    if args.remote_cache == "off" or args.dry_run:
        return
    from ..engine.remote_cache import RemoteCache
    from ..engine.remote_pack import scope_tag

    tag = scope_tag(args.patterns, args.platform or [], args.shard, args.affected_since)
    args.remote = RemoteCache(ws, args.remote_cache, tag)
    if not (ws.cache_dir / "actions").exists():
        args.remote.start_pack(None)


def _check_shard(args) -> tuple[int, int] | None:
    from ..engine import shards
    from ..errors import UserError

    if args.shard is None:
        return None
    if args.push:
        raise UserError("--shard builds a share of the graph; it cannot --push",
                        hint="push from one final run without --shard: it finds every node "
                             "in the remote cache and only assembles indexes and moves tags")
    return shards.parse(args.shard)


def _take_share(loaded, index: int, count: int) -> None:
    """Narrow the graph to this shard's nodes and what they need."""
    from ..engine import shards
    from ..engine.hashing import read_pickle
    from .lookup import narrow

    analysis = loaded.analysis
    nodes = sorted(n for n, a in analysis.actions.items() if a.cacheable)
    durations = read_pickle(loaded.ws.cache_dir / "timings.pickle")
    mine = shards.share(nodes, index, count, durations)
    narrow(analysis, mine)
    print(f"shard {index}/{count}: {len(mine)} of {len(nodes)} nodes, and "
          f"{len(analysis.actions) - len(mine)} they need", file=sys.stderr)


def _affected(args) -> list[tuple[str, None]]:
    """The patterns narrowed to what changed since --affected-since (dependencies are added
    by the build itself)."""
    from .affected_cmd import affected_labels

    labels = affected_labels(args, args.affected_since, args.patterns)
    return [(str(label), None) for label in labels]


def _dry_run(loaded, args, jobs: int) -> int:
    from ..engine.scheduler import Engine, Options, Scheduler
    from ..events import Events

    engine = Engine(loaded.ws, Events())
    try:
        summary = Scheduler(engine, loaded.analysis.graph, loaded.analysis.actions,
                            Options(jobs=jobs, dry_run=True, no_cache=args.no_cache)).run()
    finally:
        engine.close()
    results = summary.results
    would = [r for r in results.values() if r.status == "would-run"]
    if args.output == "json":
        import json

        for label, texts in _explanations(loaded).items():
            for text in texts:
                print(json.dumps({"event": "explain", "label": label, "text": text}))
        for r in results.values():
            print(json.dumps({"event": "plan", "node": r.node, "status": r.status,
                              "reason": r.reason}))
        return 0
    if args.explain:  # what analysis chose (auto's backend) for each target that would run
        actions = loaded.analysis.actions
        running = {str(actions[r.node].label) for r in would if r.node in actions}
        for label, texts in _explanations(loaded).items():
            for text in texts if label in running else []:
                print(f"explain {label}: {text}")
    for r in results.values():
        verb = {"would-run": "would run", "failed": "would fail", "cached": "cached"}[r.status]
        print(f"{verb:<10} {r.node}: {r.reason}")
    print(f"plan: {len(would)} to run, {sum(r.status == 'cached' for r in results.values())} "
          f"cached, {len(results)} nodes (dry run: nothing was executed)")
    return 0


def _explanations(loaded) -> dict[str, list[str]]:
    """label -> what analysis chose for it and why (auto's backend), for the targets this run
    builds (a node pattern or a shard may have narrowed the graph)."""
    labels = {str(a.label) for a in loaded.analysis.actions.values()}
    return {k: v for k, v in loaded.analysis.explanations.items() if k in labels}


def _record_refs(engine, actions, summary) -> list:
    from ..engine.refs import built_refs, record_refs

    items = built_refs(actions, summary)
    if items:
        record_refs(engine.store, items, engine.cache_dir / "refs-recorded.pickle")
    return items


def _where(loaded, store, items, ok: bool) -> str:
    """Where the images are and how to look at them (shown after a build)."""
    import os

    ws = loaded.ws
    layout = os.path.relpath(ws.cache_dir / "oci")
    lines = [f"images: {layout} (an OCI image layout)"]
    shown = _shown(loaded, items, ok)
    if shown is None:  # what was asked for did not build: no dependency stands in for it
        return lines[0]
    node, tag = shown
    root = os.path.relpath(ws.root)
    where = "" if root == "." else f"-C {root} "
    lines.append(f"  graphbuild {where}inspect '{node}'")
    if tag:
        later = "" if _readable_by_others(store, tag) else \
            "   (once written: `graphbuild run --download all`; remote cache hits keep " \
            "manifests and layers in the registry until read)"
        lines.append(f"  skopeo inspect oci:{layout}:{tag}{later}")
    return "\n".join(lines)


def _readable_by_others(store, tag: str) -> bool:
    """Whether an OCI tool reading the layout finds what `skopeo inspect` reads of ``tag``
    (the build's store, its index.json read already): its manifest or index, and each image's
    manifest and config."""
    from ..oci import mediatypes as mt

    desc = store.lookup(tag)
    if desc is None or not store.has_blob(desc["digest"]):
        return False
    images = store.peek_json(desc["digest"]).get("manifests", []) \
        if mt.is_index(desc.get("mediaType")) else [desc]
    for image in images:
        if not store.has_blob(image["digest"]):
            return False
        config = store.peek_json(image["digest"]).get("config")
        if config and not store.has_blob(config["digest"]):
            return False
    return True


def _shown(loaded, items, ok: bool) -> tuple[str, str | None] | None:
    """The image to suggest looking at: one of the targets asked for (a group stands for its
    members), its index before its per-platform images, a tagged one first, then by name, so
    the same build always names the same node. After a successful build that asked for no
    image, a dependency's image will do."""
    actions = loaded.analysis.actions
    asked = _asked(loaded.tgraph)
    images = [(node, tags) for node, _, tags in items if node in actions]
    candidates = [(node, tags) for node, tags in images if str(actions[node].label) in asked]
    if not candidates and ok:
        candidates = images
    if not candidates:
        return None
    node, tags = min(candidates, key=lambda c: (actions[c[0]].platform is not None, not c[1],
                                                c[0]))
    return node, tags[0] if tags else None


def _asked(tgraph) -> set[str]:
    """The labels the patterns named, groups replaced by their members (recursively)."""
    out: set[str] = set()
    stack = list(tgraph.roots)
    while stack:
        label = stack.pop()
        if str(label) in out:
            continue
        out.add(str(label))
        if tgraph.targets[label].rule == "group":
            stack.extend(tgraph.graph.successors(label))
    return out


def _build(loaded, args, jobs: int) -> int:
    from ..engine.scheduler import Engine, Interrupted, Options, Scheduler
    from ..errors import UserError
    from ..events import Events, JsonLines, Profile
    from ..progress import make_reporter

    events = Events()
    try:
        events_file = open(args.events, "w") if args.events else None  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UserError(f"--events: cannot write {args.events}: {exc.strerror}",
                        hint="name a file in an existing, writable directory") from None
    if events_file:
        events.add_sink(JsonLines(events_file))
    if args.output == "json":
        events.add_sink(JsonLines(sys.stdout))
    explained = _explanations(loaded)
    reporter = make_reporter(args.output, explain=args.explain, nodes=loaded.analysis.actions,
                             explanations=explained)
    if reporter:
        events.add_sink(reporter.on_event)
    profile = Profile() if args.profile else None
    engine = Engine(loaded.ws, events, profile)
    engine.remote_cache = args.remote
    if args.remote is not None:  # one retry budget for the run, the cache's writes included
        engine.retries = args.remote.retries
    targets = [str(lab) for lab in loaded.tgraph.roots]
    events.emit({"event": "build_started", "targets": targets, "jobs": jobs})
    for label, texts in explained.items():
        for text in texts:
            events.emit({"event": "explain", "label": label, "text": text})
    summary = None
    ok = False
    refs: list = []
    try:
        if reporter:
            reporter.start()
        sched = Scheduler(engine, loaded.analysis.graph, loaded.analysis.actions,
                          Options(jobs=jobs, keep_going=args.keep_going, no_cache=args.no_cache),
                          on_start=reporter.on_start if reporter else None)
        try:
            summary = sched.run()
            if summary.only_damage:  # checked as cached, then found damaged by a dependent
                print("graphbuild: note: stored outputs were found damaged during the build "
                      "(and removed); building again to rebuild them", file=sys.stderr)
                sched = Scheduler(engine, loaded.analysis.graph, loaded.analysis.actions,
                                  Options(jobs=jobs, keep_going=args.keep_going,
                                          no_cache=args.no_cache),
                                  on_start=reporter.on_start if reporter else None)
                summary = sched.run()
        except Interrupted as exc:
            summary = exc.summary
            raise
        refs = _record_refs(engine, loaded.analysis.actions, summary)
        ok = summary.ok
        if args.download == "all":
            from ..engine.remote_cache import download_all

            download_all(engine.store, summary)
        if args.push:
            from ..engine.publish import move_tags

            ok = move_tags(loaded, engine, summary, loaded.push_nodes, events,
                           args.push_seconds) and ok
    finally:
        if reporter:
            reporter.stop()
        engine.close()
        if summary is not None:
            events.emit({"event": "build_finished", "status": "success" if ok else "failure",
                         "counts": summary.counts(), "duration_s": round(summary.duration, 3)})
        if profile:
            profile.write(Path(args.profile))
        if events_file:
            events_file.close()
    if reporter:
        reporter.summary(summary)
        if engine.remote_cache is not None:
            print(engine.remote_cache.describe(), file=sys.stderr)
        if refs:
            print(_where(loaded, engine.store, refs, ok), file=sys.stderr)
    return 0 if ok else 1
