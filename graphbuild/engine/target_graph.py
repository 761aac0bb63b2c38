"""The target graph: the targets a set of patterns reaches, their dependencies, and cycle checks.

Edges point from a target to what it depends on.
"""

from __future__ import annotations

from ..errors import UserError
from ..labels import Label, Pattern
from ..rule_api import Target
from . import rule_registry
from .digraph import DiGraph
from .loader import Loader


class TargetGraph:
    def __init__(self, loader: Loader, patterns: list[Pattern]) -> None:
        self.loader = loader
        self.graph = DiGraph()
        self.targets: dict[Label, Target] = {}
        self.roots: list[Label] = []  # what the patterns name, each once, in pattern order
        named: set[Label] = set()
        for pattern in patterns:
            for t in loader.expand(pattern):
                # a root may already be in the graph as an earlier root's dependency: it is
                # still a root (query, affected and run report what the patterns name)
                if t.label not in named:
                    named.add(t.label)
                    self.roots.append(t.label)
                self._add(t)
        self._check_cycles()

    def _add(self, first: Target) -> None:
        stack = [first]
        while stack:
            t = stack.pop()
            if t.label in self.targets:
                continue
            self.targets[t.label] = t
            self.graph.add_node(t.label)
            rule = rule_registry.get(t.rule)
            for dep_label, attr in rule.dep_labels(t):
                dep = self.loader.resolve(dep_label, t, attr)
                self.graph.add_edge(t.label, dep.label, attr=attr)
                if dep.label not in self.targets:
                    stack.append(dep)

    def _check_cycles(self) -> None:
        labels = self.graph.find_cycle()
        if labels is None:
            return
        first = self.targets[labels[0]]
        lines = [f"  {lab}  ({self.targets[lab].build_file}:{self.targets[lab].line})"
                 for lab in labels]
        raise UserError("dependency cycle: " + " -> ".join(map(str, labels)) + "\n" +
                        "\n".join(lines), path=first.build_file,
                        line=first.line_of(self.graph.edges[labels[0], labels[1]]["attr"]),
                        label=str(first.label), hint="remove one of these dependencies")

    def build_order(self) -> list[Target]:
        """Dependencies before dependents."""
        return [self.targets[label] for label in reversed(self.graph.topological_order())]

    def deps_closure(self, labels: list[Label]) -> set[Label]:
        out = set(labels)
        for lab in labels:
            out |= self.graph.descendants(lab)
        return out

    def rdeps_closure(self, labels: list[Label]) -> set[Label]:
        out = set(labels)
        for lab in labels:
            out |= self.graph.ancestors(lab)
        return out
