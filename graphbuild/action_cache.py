"""The action cache: action key -> outcome, plus each node's last inputs (for --explain) and
duration (for scheduling). Backed by diskcache under ``cache_dir/actions``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .rule_api import NodeId, Outcome


class ActionCache:
    def __init__(self, directory: Path) -> None:
        import sqlite3

        import diskcache

        try:
            self._db = diskcache.Cache(str(directory), size_limit=2**34, cull_limit=0)
        except sqlite3.DatabaseError as exc:
            # A cache is only a cache: as Bazel does with a bad action cache, set it aside and
            # start an empty one (everything rebuilds once) instead of failing every command.
            bad = directory.with_name(directory.name + ".bad")
            shutil.rmtree(bad, ignore_errors=True)
            os.replace(directory, bad)
            print(f"graphbuild: warning: the action cache {directory} is unreadable ({exc}); "
                  f"moved it to {bad.name} and started an empty one", file=sys.stderr)
            self._db = diskcache.Cache(str(directory), size_limit=2**34, cull_limit=0)

    def get(self, key: str) -> Outcome | None:
        rec = self._db.get("k:" + key)
        return None if rec is None else Outcome(rec["digest"], rec["data"])

    def put(self, key: str, outcome: Outcome, node: NodeId, mnemonic: str, snapshot: dict,
            duration: float) -> None:
        """Record an outcome; call only after every output it names is stored."""
        with self._db.transact():
            self._db.set("k:" + key, {"digest": outcome.digest, "data": outcome.data,
                                      "node": node, "mnemonic": mnemonic})
            self._db.set("n:" + node, {"key": key, "snapshot": snapshot, "duration": duration,
                                       "mnemonic": mnemonic})

    def last(self, node: NodeId) -> dict | None:
        return self._db.get("n:" + node)

    def forget(self, key: str) -> None:
        self._db.delete("k:" + key)

    def records(self):
        """Every (key, record) of action outcomes."""
        for k in self._db.iterkeys():
            if k.startswith("k:"):
                rec = self._db.get(k)
                if rec is not None:
                    yield k[2:], rec

    def node_records(self):
        for k in self._db.iterkeys():
            if k.startswith("n:"):
                rec = self._db.get(k)
                if rec is not None:
                    yield k[2:], rec

    def clear(self) -> int:
        return self._db.clear()

    def volume(self) -> int:
        return self._db.volume()

    def close(self) -> None:
        self._db.close()
