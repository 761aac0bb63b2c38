"""Build events (docs/events.md) fanned out to sinks: a JSON Lines file, stdout, the progress
display; and the Chrome trace written by --profile."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


class Events:
    def __init__(self) -> None:
        self._sinks: list[Callable[[dict], None]] = []
        self._lock = threading.Lock()

    def add_sink(self, sink: Callable[[dict], None]) -> None:
        self._sinks.append(sink)

    def emit(self, event: dict) -> None:
        with self._lock:
            for sink in self._sinks:
                sink(event)


class JsonLines:
    """Writes each event as one JSON line, flushed so a tailing tool sees it at once."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: dict) -> None:
        self.stream.write(json.dumps(event, sort_keys=False) + "\n")
        self.stream.flush()


class Profile:
    """Chrome trace events (``traceEvents``, complete 'X' events) that Perfetto opens."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[dict] = []
        self._lanes: dict[int, int] = {}
        self._lock = threading.Lock()

    def record(self, name: str, category: str, start: float, end: float, args: dict) -> None:
        tid = threading.get_ident()
        with self._lock:
            lane = self._lanes.setdefault(tid, len(self._lanes) + 1)
            self.events.append({
                "name": name, "cat": category, "ph": "X", "pid": 1, "tid": lane,
                "ts": round((start - self.t0) * 1e6), "dur": round((end - start) * 1e6),
                "args": args,
            })

    def write(self, path: Path) -> None:
        meta = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": lane,
                 "args": {"name": f"worker {lane}"}} for lane in self._lanes.values()]
        meta.append({"name": "process_name", "ph": "M", "pid": 1, "tid": 0,
                     "args": {"name": "graphbuild"}})
        try:
            path.write_text(json.dumps({"traceEvents": meta + self.events,
                                        "displayTimeUnit": "ms"}))
        except OSError as exc:
            from .errors import UserError

            raise UserError(f"--profile: cannot write {path}: {exc.strerror}",
                            hint="name a file in an existing, writable directory") from None
