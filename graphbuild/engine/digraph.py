"""A small directed graph for the build path.

Importing networkx costs more than a whole no-op build may take (0.1 s of the 0.5 s budget, see
docs/benchmarks.md), so the load → analyse → schedule path uses this; `query` and `graph` turn it
into a networkx graph with ``to_networkx`` where its algorithms help.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator


class DiGraph:
    def __init__(self) -> None:
        self._succ: dict[Hashable, dict[Hashable, dict]] = {}
        self._pred: dict[Hashable, dict[Hashable, dict]] = {}
        self._order: list | None = None  # topological_order's answer until the graph changes

    # -- building ------------------------------------------------------------------------------
    def add_node(self, n: Hashable) -> None:
        if n not in self._succ:
            self._succ[n] = {}
            self._pred[n] = {}
            self._order = None

    def add_edge(self, u: Hashable, v: Hashable, **attrs) -> None:
        self._order = None
        self.add_node(u)
        self.add_node(v)
        self._succ[u][v] = attrs
        self._pred[v][u] = attrs

    # -- reading -------------------------------------------------------------------------------
    @property
    def nodes(self):
        return self._succ.keys()

    @property
    def edges(self) -> _Edges:
        return _Edges(self._succ)

    def __contains__(self, n: Hashable) -> bool:
        return n in self._succ

    def __len__(self) -> int:
        return len(self._succ)

    def successors(self, n: Hashable):
        return self._succ[n].keys()

    def predecessors(self, n: Hashable):
        return self._pred[n].keys()

    def in_degree(self, n: Hashable) -> int:
        return len(self._pred[n])

    # -- algorithms ----------------------------------------------------------------------------
    def _reach(self, start: Hashable, adj: dict) -> set:
        seen: set = set()
        stack = list(adj[start])
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(adj[n])
        return seen

    def descendants(self, n: Hashable) -> set:
        return self._reach(n, self._succ)

    def ancestors(self, n: Hashable) -> set:
        return self._reach(n, self._pred)

    def find_cycle(self) -> list | None:
        """A cycle as a node list with the first node repeated at the end, or None."""
        import graphlib

        try:
            self.topological_order()  # no cycle: the order is kept for the caller's next question
            return None
        except graphlib.CycleError:
            pass
        try:
            graphlib.TopologicalSorter({n: list(s) for n, s in self._succ.items()}).prepare()
        except graphlib.CycleError as exc:
            return list(reversed(exc.args[1]))  # graphlib lists it against the edge direction
        return None

    def topological_order(self) -> list:
        """Every node after all of its predecessors (graphlib.CycleError if there is a cycle)."""
        import graphlib

        if self._order is None:
            self._order = list(graphlib.TopologicalSorter(
                {n: list(p) for n, p in self._pred.items()}).static_order())
        return list(self._order)

    def subgraph(self, keep) -> DiGraph:
        """The nodes in ``keep`` and the edges between them."""
        out = DiGraph()
        for n in self._succ:
            if n in keep:
                out.add_node(n)
        for u, vs in self._succ.items():
            if u in keep:
                for v, attrs in vs.items():
                    if v in keep:
                        out.add_edge(u, v, **attrs)
        return out

    def to_networkx(self):
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(self._succ)
        g.add_edges_from((u, v, a) for u, vs in self._succ.items() for v, a in vs.items())
        return g


class _Edges:
    def __init__(self, succ: dict) -> None:
        self._succ = succ

    def __iter__(self) -> Iterator[tuple]:
        return ((u, v) for u, vs in self._succ.items() for v in vs)

    def __getitem__(self, edge: tuple) -> dict:
        return self._succ[edge[0]][edge[1]]

    def __len__(self) -> int:
        return sum(len(vs) for vs in self._succ.values())
