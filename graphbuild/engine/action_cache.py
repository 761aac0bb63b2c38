"""The action cache: action key -> outcome, plus each node's last inputs (for --explain) and
duration (for scheduling). Backed by diskcache under ``cache_dir/actions``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ..rule_api import NodeId, Outcome
from .hashing import read_pickle, write_pickle

HOT_INDEX = "action-index.pickle"


class ActionCache:
    def __init__(self, directory: Path) -> None:
        import sqlite3

        import diskcache

        self._hot_path = directory.with_name(HOT_INDEX)
        try:
            self._db = diskcache.Cache(str(directory), size_limit=2**34, cull_limit=0)
        except sqlite3.DatabaseError as exc:
            self._hot_path.unlink(missing_ok=True)  # it only mirrors the database
            # A cache is only a cache: as Bazel does with a bad action cache, set it aside and
            # start an empty one (everything rebuilds once) instead of failing every command.
            bad = directory.with_name(directory.name + ".bad")
            shutil.rmtree(bad, ignore_errors=True)
            os.replace(directory, bad)
            print(f"graphbuild: warning: the action cache {directory} is unreadable ({exc}); "
                  f"moved it to {bad.name} and started an empty one", file=sys.stderr)
            self._db = diskcache.Cache(str(directory), size_limit=2**34, cull_limit=0)
        # node -> (key, digest, data) of its latest outcome, in one file read once: a no-op
        # build then answers every lookup without a database query.
        self._hot: dict[NodeId, tuple] = read_pickle(self._hot_path)
        self._hot_dirty = False
        # A fresh runner's cache is empty: every lookup would query SQLite for nothing.
        self._empty = not self._hot and len(self._db) == 0

    def get(self, key: str, node: NodeId | None = None) -> Outcome | None:
        hot = self._hot.get(node) if node is not None else None
        if hot is not None and hot[0] == key:
            return Outcome(hot[1], hot[2])
        if self._empty:
            return None
        rec = self._db.get("k:" + key)
        if rec is None:
            return None
        if node is not None:
            self._remember(node, key, rec["digest"], rec["data"])
        return Outcome(rec["digest"], rec["data"])

    def _remember(self, node: NodeId, key: str, digest, data) -> None:
        self._hot[node] = (key, digest, data)
        self._hot_dirty = True

    def put(self, key: str, outcome: Outcome, node: NodeId, mnemonic: str, snapshot: dict,
            duration: float) -> None:
        """Record an outcome; call only after every output it names is stored."""
        self._empty = False
        with self._db.transact():
            self._db.set("k:" + key, {"digest": outcome.digest, "data": outcome.data,
                                      "node": node, "mnemonic": mnemonic})
            self._db.set("n:" + node, {"key": key, "snapshot": snapshot, "duration": duration,
                                       "mnemonic": mnemonic})
        self._remember(node, key, outcome.digest, outcome.data)

    def put_many(self, records: list[tuple]) -> None:
        """``put`` for many (key, outcome, node, mnemonic, snapshot, duration), one transaction."""
        with self._db.transact():
            for record in records:
                self.put(*record)

    def last(self, node: NodeId) -> dict | None:
        return None if self._empty else self._db.get("n:" + node)

    def forget(self, key: str) -> None:
        self._db.delete("k:" + key)
        for node in [n for n, hot in self._hot.items() if hot[0] == key]:
            del self._hot[node]
            self._hot_dirty = True

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
        self._hot, self._hot_dirty = {}, True
        return self._db.clear()

    def volume(self) -> int:
        return self._db.volume()

    def close(self) -> None:
        if self._hot_dirty:
            write_pickle(self._hot_path, self._hot)
            self._hot_dirty = False
        self._db.close()
