"""`graphbuild query`: list targets, their dependencies or dependents."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("patterns", nargs="+", metavar="PATTERN")
    p.add_argument("--deps", action="store_true", help="add everything they depend on")
    p.add_argument("--rdeps", action="store_true",
                   help="add everything in the workspace that depends on them")
    p.add_argument("--kind", metavar="RULE", help="only targets of this rule")
    p.add_argument("--output", choices=("label", "json"), default="label")


def main(args) -> int:
    import json

    from ..engine import rule_registry
    from ..errors import UserError
    from .common import load, patterns

    if args.kind and rule_registry.get(args.kind) is None:
        from ..errors import did_you_mean

        raise UserError(f"--kind: unknown rule '{args.kind}'",
                        hint=did_you_mean(args.kind, rule_registry.names())
                        or f"rules: {', '.join(rule_registry.names())}")
    # the patterns' closure is analysed too, so query reports the bad input that run would
    if args.rdeps:
        # dependents can live anywhere: load the whole workspace, then select
        everything = load(args, ["//..."], analyze=False)
        roots = load(args, args.patterns).tgraph.roots
        tg = everything.tgraph
        selected = tg.rdeps_closure(roots)
        if args.deps:
            selected |= tg.deps_closure(roots)
    else:
        tg = load(args, args.patterns).tgraph
        selected = tg.deps_closure(tg.roots) if args.deps else set(tg.roots)
    patterns(args.patterns)
    targets = sorted((tg.targets[lab] for lab in selected), key=lambda t: t.label)
    if args.kind:
        targets = [t for t in targets if t.rule == args.kind]
    for t in targets:
        if args.output == "json":
            deps = sorted(str(d) for d in tg.graph.successors(t.label))
            print(json.dumps({"label": str(t.label), "rule": t.rule, "file": t.build_file,
                              "line": t.line, "deps": deps}))
        else:
            print(t.label)
    return 0
