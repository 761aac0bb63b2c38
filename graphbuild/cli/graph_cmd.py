"""`graphbuild graph`: the action graph as Graphviz dot or JSON."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("patterns", nargs="+", metavar="PATTERN")
    p.add_argument("--format", choices=("dot", "json"), default="dot")
    p.add_argument("--platform", action="append", metavar="P", help="limit fan-out to platform P")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(args) -> int:
    import json

    from .common import load

    loaded = load(args, args.patterns, plat_texts=args.platform)
    graph, actions = loaded.analysis.graph, loaded.analysis.actions
    if args.format == "json":
        import networkx as nx

        level = {n: i for i, gen in enumerate(nx.topological_generations(graph.to_networkx()))
                 for n in gen}
        nodes = [{"id": n, "label": str(actions[n].label), "level": level[n],
                  "platform": str(actions[n].platform) if actions[n].platform else None,
                  "rule": actions[n].rule, "mnemonic": actions[n].mnemonic,
                  "deps": sorted(graph.predecessors(n))} for n in sorted(graph.nodes)]
        edges = [{"from": a, "to": b} for a, b in sorted(graph.edges)]
        print(json.dumps({"nodes": nodes, "edges": edges}, indent=2))
        return 0
    lines = ["digraph graphbuild {", "  rankdir=LR;", "  node [shape=box];"]
    for n in sorted(graph.nodes):
        lines.append(f"  {_quote(n)} [tooltip={_quote(actions[n].mnemonic)}];")
    for a, b in sorted(graph.edges):
        lines.append(f"  {_quote(b)} -> {_quote(a)};")  # arrows point at what a node needs
    lines.append("}")
    print("\n".join(lines))
    return 0
