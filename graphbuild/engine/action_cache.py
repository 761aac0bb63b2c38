"""The action cache: action key -> outcome, plus each node's last inputs (for --explain) and
duration (for scheduling). Backed by diskcache under ``cache_dir/actions``.

A cache is only a cache: a database that cannot be read (damaged pages, not a database) is set
aside with a warning and an empty one started, as Bazel does with a bad action cache; a value
that cannot be unpickled is dropped with a warning. A full disk is neither: it is reported
(exit 1) and the cache left as it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

from ..errors import BuildError, GraphbuildError, is_no_space, no_space
from ..rule_api import NodeId, Outcome
from .hashing import read_pickle, write_pickle

HOT_INDEX = "action-index.pickle"


class Unreadable(GraphbuildError):
    """The database is damaged and the cache was opened read-only (so it was not set aside)."""


def _is_full(exc: Exception, directory: Path | None = None) -> bool:
    """A full disk, said as such or (SQLite opening a database) as "disk I/O error" on a file
    system with no space left."""
    if is_no_space(exc):
        return True
    if directory is None or "I/O" not in str(exc):
        return False
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def _is_damage(exc: Exception) -> bool:
    """Damage (not a database, malformed pages, an unpicklable value) rather than trouble with
    the disk or a lock (OperationalError), which setting the cache aside would not cure."""
    import sqlite3

    return not isinstance(exc, (sqlite3.OperationalError, OSError))


class ActionCache:
    def __init__(self, directory: Path, *, readonly: bool = False) -> None:
        """``readonly`` (`cache verify` without --repair): damage is reported, never fixed."""
        import sqlite3

        self._dir = directory
        self._readonly = readonly
        self._hot_path = directory.with_name(HOT_INDEX)
        self._garbled: list[str] = []
        try:
            self._db = self._open()
        except (sqlite3.DatabaseError, OSError) as exc:
            if _is_full(exc) or isinstance(exc, OSError):
                raise no_space(directory / "cache.db") if _is_full(exc) else exc
            self._db = self._set_aside(exc, opened=False)
        # node -> (key, digest, data) of its latest outcome, in one file read once: a no-op
        # build then answers every lookup without a database query.
        self._hot: dict[NodeId, tuple] = read_pickle(self._hot_path)
        self._hot_dirty = False
        # A fresh runner's cache is empty: every lookup would query SQLite for nothing.
        self._empty = not self._hot and self._count() == 0

    def _count(self) -> int:
        import sqlite3

        try:
            return len(self._db)
        except sqlite3.DatabaseError as exc:
            if _is_full(exc):
                raise no_space(self._dir / "cache.db") from None
            self._set_aside(exc)
            return 0

    def _open(self):
        import diskcache

        return diskcache.Cache(str(self._dir), size_limit=2**34, cull_limit=0)

    def _set_aside(self, exc: Exception, opened: bool = True):
        """Move the unreadable database to ``actions.bad`` and start an empty one; a full disk
        or another I/O failure is reported instead (the cache is healthy)."""
        if _is_full(exc, self._dir):
            raise no_space(self._dir / "cache.db") from None
        if not _is_damage(exc):
            raise BuildError(f"the action cache {self._dir} cannot be used: {exc}") from None
        if self._readonly:
            raise Unreadable(f"the action cache {self._dir} is unreadable ({exc})")
        if opened:
            with contextlib.suppress(Exception):  # closing a broken database may fail too
                self._db.close()
        self._hot_path.unlink(missing_ok=True)  # it only mirrors the database
        self._hot, self._hot_dirty = {}, False
        bad = self._dir.with_name(self._dir.name + ".bad")
        shutil.rmtree(bad, ignore_errors=True)
        os.replace(self._dir, bad)
        print(f"graphbuild: warning: the action cache {self._dir} is unreadable ({exc}); "
              f"moved it to {bad.name} and started an empty one", file=sys.stderr)
        self._db = self._open()
        return self._db

    def _read(self, db_key: str):
        """A value, or None; a damaged database is set aside, a garbled value dropped."""
        import sqlite3

        try:
            return self._db.get(db_key)
        except sqlite3.DatabaseError as exc:
            if _is_full(exc):
                raise no_space(self._dir / "cache.db") from None
            self._set_aside(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - unpickling garbage raises almost anything
            if not self._readonly:
                print(f"graphbuild: warning: the action cache entry {db_key[:20]} is "
                      f"unreadable ({type(exc).__name__}); dropped it", file=sys.stderr)
            self._garbled.append(db_key)
            self._drop(db_key)
            return None

    def _drop(self, db_key: str) -> None:
        import sqlite3

        if self._readonly:
            return
        try:
            self._db.delete(db_key)
        except sqlite3.DatabaseError as exc:
            if _is_full(exc):
                raise no_space(self._dir / "cache.db") from None
            self._set_aside(exc)

    def get(self, key: str, node: NodeId | None = None) -> Outcome | None:
        hot = self._hot.get(node) if node is not None else None
        if hot is not None and hot[0] == key:
            return Outcome(hot[1], hot[2])
        if self._empty:
            return None
        rec = self._read("k:" + key)
        if not isinstance(rec, dict) or "digest" not in rec or not isinstance(rec.get("data"),
                                                                             dict):
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
        self._write([(key, outcome, node, mnemonic, snapshot, duration)])

    def put_many(self, records: list[tuple]) -> None:
        """``put`` for many (key, outcome, node, mnemonic, snapshot, duration), one transaction."""
        self._write(records)

    def _write(self, records: list[tuple]) -> None:
        import sqlite3

        self._empty = False

        for attempt in (1, 2):
            try:
                with self._db.transact():
                    for key, outcome, node, mnemonic, snapshot, duration in records:
                        self._db.set("k:" + key, {"digest": outcome.digest, "data": outcome.data,
                                                  "node": node, "mnemonic": mnemonic})
                        self._db.set("n:" + node, {"key": key, "snapshot": snapshot,
                                                   "duration": duration, "mnemonic": mnemonic})
                break
            except (sqlite3.DatabaseError, OSError) as exc:
                if _is_full(exc):
                    raise no_space(self._dir / "cache.db") from None
                if attempt == 2 or isinstance(exc, OSError):
                    raise
                self._set_aside(exc)  # then record into the fresh one
        for key, outcome, node, *_ in records:
            self._remember(node, key, outcome.digest, outcome.data)

    def last(self, node: NodeId) -> dict | None:
        if self._empty:
            return None
        rec = self._read("n:" + node)
        return rec if isinstance(rec, dict) and isinstance(rec.get("snapshot"), dict) else None

    def forget(self, key: str) -> None:
        self._drop("k:" + key)
        for node in [n for n, hot in self._hot.items() if hot[0] == key]:
            del self._hot[node]
            self._hot_dirty = True

    def _keys(self, prefix: str) -> list[str]:
        import sqlite3

        try:
            return [k for k in self._db.iterkeys() if isinstance(k, str) and k.startswith(prefix)]
        except sqlite3.DatabaseError as exc:
            if _is_full(exc):
                raise no_space(self._dir / "cache.db") from None
            self._set_aside(exc)
            return []

    def records(self):
        """Every (key, record) of action outcomes (unreadable ones dropped: see ``garbled``)."""
        for k in self._keys("k:"):
            rec = self._read(k)
            if isinstance(rec, dict) and isinstance(rec.get("data"), dict):
                yield k[2:], rec

    def node_records(self):
        for k in self._keys("n:"):
            rec = self._read(k)
            if isinstance(rec, dict) and "key" in rec:
                yield k[2:], rec

    def used_keys(self) -> set[str]:
        """The key each node's latest run used (built or found cached): what gc keeps."""
        return {hot[0] for hot in self._hot.values()}

    @property
    def garbled(self) -> list[str]:
        """The entries found unreadable (dropped, unless read-only)."""
        return list(self._garbled)

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
