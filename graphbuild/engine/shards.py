"""`run --shard I/N`: a deterministic share of a run's build nodes, so that N machines can
build one graph together through the remote cache.

Every machine must compute the same shares, so they depend only on the graph and on recorded
durations (from the cache directory, or those the remote cache reported) when every node has
one; otherwise on the count of nodes. Longest first onto the least loaded share: the classic
LPT schedule, ties broken by node id.
"""

from __future__ import annotations

import heapq

from ..errors import UserError
from ..rule_api import NodeId


def parse(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N), 1 <= I <= N."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise UserError(f"--shard {text!r} is not I/N with 1 <= I <= N",
                        hint="e.g. --shard 2/3 builds the second of three shares")
    return i, n


def share(nodes: list[NodeId], index: int, count: int,
          durations: dict[NodeId, float]) -> set[NodeId]:
    """The nodes of share ``index`` (1-based) of ``count``."""
    timed = all(n in durations for n in nodes)
    weight = {n: (durations[n] if timed else 1.0) for n in nodes}
    loads = [(0.0, s) for s in range(count)]  # (load, share) heap: least loaded, lowest first
    mine: set[NodeId] = set()
    for node in sorted(nodes, key=lambda n: (-weight[n], n)):
        load, s = heapq.heappop(loads)
        if s == index - 1:
            mine.add(node)
        heapq.heappush(loads, (load + weight[node], s))
    return mine
