"""How long registry work may still take, and whether it was interrupted.

A caller opens a ``scope`` (a push node, the tag moves of `run --push`); every request made
within it, on any thread its work is handed to (``carry``), stops at the scope's deadline or as
soon as it is cancelled: its socket reads and writes wait in short slices that check both, and
retries neither sleep past the deadline nor start after it. A run also hands its scopes one
``RetryBudget``: retries against a registry that answers nothing stop after a few dozen, run-wide,
instead of 4 per request times every request in flight.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
# How often a blocked read, write or wait looks at the cancellation events.
SLICE_S = 0.25
# Retries a run may make against one registry before it has answered anything ...
RUN_RETRIES = 30
# ... and one more per this many answers it gave (a long run on a flaky registry keeps going).
ANSWERS_PER_RETRY = 2


class Stopped(Exception):
    """The scope's deadline passed, or it was cancelled; the message says which."""


class RetryBudget:
    """The retries a run may still make, per registry: ``base`` plus one per ``per_answer``
    answers that registry gave. A broken registry (no answers) fails fast with one budget for
    the whole run; a healthy one earns retries as it works. Thread-safe."""

    def __init__(self, base: int = RUN_RETRIES, per_answer: int = ANSWERS_PER_RETRY) -> None:
        self.base, self.per_answer = base, per_answer
        self._spent: Counter[str] = Counter()
        self._answers: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, registry: str) -> bool:
        """Spend one retry against ``registry``; False when none is left."""
        with self._lock:
            if self._spent[registry] >= self._allowed(registry):
                return False
            self._spent[registry] += 1
            return True

    def answered(self, registry: str) -> None:
        with self._lock:
            self._answers[registry] += 1

    def spent(self, registry: str) -> int:
        """The retries made against ``registry`` (once over budget: all it had)."""
        with self._lock:
            return self._spent[registry]

    def exhausted(self, registry: str) -> bool:
        with self._lock:
            return self._spent[registry] >= self._allowed(registry)

    def _allowed(self, registry: str) -> int:
        return self.base + self._answers[registry] // self.per_answer


@dataclass(frozen=True)
class Scope:
    deadline: float | None = None  # time.monotonic() value
    why: str = ""  # what the deadline is, for messages: "the push deadline (300 s, ...)"
    events: tuple[threading.Event, ...] = ()  # any of them set: cancelled
    retries: RetryBudget | None = None  # the run's; None: each request's own attempts only

    @property
    def cancelled(self) -> bool:
        return any(event.is_set() for event in self.events)

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise Stopped if cancelled or past the deadline."""
        if self.cancelled:
            raise Stopped("interrupted")
        left = self.left()
        if left is not None and left <= 0:
            raise Stopped(f"stopped at {self.why}")


_SCOPE: contextvars.ContextVar[Scope] = contextvars.ContextVar("registry_scope",
                                                               default=Scope())  # noqa: B039 - frozen


def current() -> Scope:
    return _SCOPE.get()


@contextmanager
def scope(seconds: float | None = None, why: str = "",
          cancelled: threading.Event | None = None,
          retries: RetryBudget | None = None) -> Iterator[threading.Event]:
    """Within the block, registry work ends by ``seconds`` from now (and by any outer
    deadline), stops once ``cancelled`` (or an outer scope's event) is set and retries within
    ``retries`` (else the outer scope's budget). Yields the scope's own event: setting it
    cancels what runs inside (``cancel``)."""
    outer = _SCOPE.get()
    deadline, reason = outer.deadline, outer.why
    if seconds is not None:
        mine = time.monotonic() + seconds
        if deadline is None or mine < deadline:
            deadline, reason = mine, why or f"the deadline of {seconds:g} s"
    own = threading.Event()
    extra = (cancelled,) if cancelled is not None else ()
    token = _SCOPE.set(Scope(deadline, reason, (*outer.events, *extra, own),
                             retries or outer.retries))
    try:
        yield own
    finally:
        _SCOPE.reset(token)


def cancel() -> None:
    """Cancel the innermost scope (its own event): e.g. on Ctrl-C in the thread that waits
    for the scope's workers."""
    events = _SCOPE.get().events
    if events:
        events[-1].set()


def carry(task: Callable[[], T]) -> Callable[[], T]:
    """``task`` to run on another thread within the caller's scope."""
    context = contextvars.copy_context()
    return lambda: context.run(task)


def sleep(seconds: float, sleeper: Callable[[float], Any] = time.sleep) -> None:
    """Sleep, but not past the deadline, and wake up when cancelled (Stopped either way)."""
    current_scope = _SCOPE.get()
    end = time.monotonic() + seconds
    while True:
        current_scope.check()
        left = end - time.monotonic()
        if left <= 0:
            return
        sleeper(min(left, SLICE_S) if current_scope.events else left)


def wait(event: threading.Event) -> None:
    """Wait for ``event``; Stopped at the deadline or when cancelled."""
    current_scope = _SCOPE.get()
    while not event.wait(SLICE_S):
        current_scope.check()
