"""`graphbuild affected`: targets whose inputs changed since a commit, and their dependents.

With nothing affected it prints nothing and exits 0, so its output can feed other commands."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", required=True, metavar="GITREF", help="a commit, branch or tag")
    p.add_argument("patterns", nargs="*", metavar="PATTERN", default=["//..."],
                   help="limit the answer to these targets (default //...)")


def affected_labels(args, since: str, patterns: list[str]) -> list:
    """The targets of ``patterns`` affected since ``since``: those whose inputs or definition
    changed, and everything that depends on them."""
    from ..engine.affected import directly_affected
    from .common import load

    everything = load(args, ["//..."])
    hits = directly_affected(everything, since)
    closure = everything.tgraph.rdeps_closure(sorted(hits))
    if patterns != ["//..."]:
        closure &= set(load(args, patterns, analyze=False).tgraph.roots)
    return sorted(closure)


def main(args) -> int:
    for label in affected_labels(args, args.since, args.patterns):
        print(label)
    return 0
