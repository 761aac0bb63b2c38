"""`graphbuild affected`: targets whose inputs changed since a commit, and their dependents."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", required=True, metavar="GITREF", help="a commit, branch or tag")
    p.add_argument("patterns", nargs="*", metavar="PATTERN", default=["//..."],
                   help="limit the answer to these targets (default //...)")


def main(args) -> int:
    from ..engine.affected import directly_affected
    from .common import load

    everything = load(args, ["//..."])
    hits = directly_affected(everything, args.since)
    closure = everything.tgraph.rdeps_closure(sorted(hits))
    if args.patterns != ["//..."]:
        scope = set(load(args, args.patterns, analyze=False).tgraph.roots)
        closure &= scope
    for label in sorted(closure):
        print(label)
    return 0
