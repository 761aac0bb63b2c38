"""A batch: actions started together that may do their work in one go.

Actions that declare the same ``Action.batch`` and are runnable at the same moment (an image's
platforms under buildx, once their bases are built) are started as one batch. Each member still
runs its own ``run`` on its own thread and reports its own result. A member that can share its
work offers it with ``together``: the call waits until every other member has offered too or
has ended without offering, then one of them (the leader) does the work for all the offers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

WAIT_S = 0.2  # how often a waiting member looks at the run's cancel flag
HOLD_S = 2.0  # the longest a runnable node waits for a member of its batch


class Batch:
    """The rendezvous of one batch's members (node ids)."""

    def __init__(self, members: list[str], cancelled: threading.Event) -> None:
        self.members = list(members)
        self._cancelled = cancelled
        self._cond = threading.Condition()
        self._pending = set(members)  # neither offered nor ended
        self._offers: dict[str, Any] = {}
        self._results: dict[str, Any] | None = None
        self._leading = False
        # members that do their own work after all (answered None) take turns: the batch
        # holds one -j slot
        self.serial = threading.Lock()

    def together(self, member: str, offer: Any,
                 work: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
        """``work(offers)`` done once for every member that offers; this member's part of its
        answer (a member missing from the answer gets None). ``work`` runs on one member's
        thread; an exception it raises reaches every member."""
        with self._cond:
            self._offers[member] = offer
            self._pending.discard(member)
            self._cond.notify_all()
            lead = self._wait_for_turn()
        if lead:
            try:
                results: dict[str, Any] = work(dict(self._offers))
            except BaseException as exc:  # noqa: BLE001 - every member reports it
                results = {m: _Raised(exc) for m in self._offers}
            with self._cond:
                self._results = results
                self._cond.notify_all()
        answer = (self._results or {}).get(member)
        if isinstance(answer, _Raised):
            raise answer.exc
        return answer

    def leave(self, member: str) -> None:
        """``member`` ended without offering (failed early, or had nothing to share)."""
        with self._cond:
            if member in self._pending:
                self._pending.discard(member)
                self._cond.notify_all()

    def _wait_for_turn(self) -> bool:
        """Under the lock: True when this member leads, False once the leader has answered."""
        while self._results is None:
            if not self._pending and not self._leading:
                self._leading = True
                return True
            if self._cancelled.is_set():
                from ..errors import ActionFailed

                raise ActionFailed("interrupted")
            self._cond.wait(WAIT_S)
        return False


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc



class Batching:
    """The scheduler's side: which runnable nodes start together as a batch, and which wait a
    moment for a member of their batch that is about to be runnable (its last dependencies are
    running and due to end soon), so an image's platforms start together even when their bases
    finish apart. A node is held for at most HOLD_S."""

    def __init__(self, graph, actions: dict) -> None:
        self._graph = graph
        self._key = {n: actions[n].batch for n in graph.nodes if actions[n].batch}
        self._members: dict[str, list[str]] = {}
        for node, key in self._key.items():
            self._members.setdefault(key, []).append(node)
        self._runnable: dict[str, list[str]] = {}  # key -> its runnable nodes
        self.held: list[tuple] = []  # heap entries put aside until the next results
        self._since: dict[str, float] = {}  # a held node -> when it was first held

    def queued(self, node: str) -> None:
        if node in self._key:
            self._runnable.setdefault(self._key[node], []).append(node)

    def group(self, node: str, started: Callable[[str], bool]) -> list[str]:
        """``node`` and the runnable members of its batch that have not started."""
        others = self._runnable.pop(self._key.get(node, ""), ())
        return [node, *(m for m in others if m != node and not started(m))]

    def coming(self, node: str, started: Callable[[str], bool], done: Callable[[str], bool],
               eta: Callable[[str], float | None]) -> bool:
        """Whether ``node`` is to wait for another member of its batch: one that waits only on
        busy nodes (``eta``: seconds until a busy node should end, None when not busy) due to
        end within HOLD_S, while ``node`` has not waited that long already."""
        key = self._key.get(node)
        if key is None:
            return False
        now = time.monotonic()
        if now - self._since.get(node, now) >= HOLD_S:
            return False
        runnable = self._runnable.get(key, ())
        for other in self._members[key]:
            if other == node or started(other) or other in runnable:
                continue
            left = [p for p in self._graph.predecessors(other) if not done(p)]
            if eta(other) is not None:  # a remote cache lookup: runnable or cached soon
                left = [other]
            etas = [eta(p) for p in left]
            if etas and all(e is not None and e <= HOLD_S for e in etas):
                self._since.setdefault(node, now)
                return True
        return False

    def wake_at(self) -> float | None:
        """When the first held node has waited long enough (a monotonic time), if any is."""
        held = [self._since[e[2]] for e in self.held if e[2] in self._since]
        return min(held) + HOLD_S if held else None
