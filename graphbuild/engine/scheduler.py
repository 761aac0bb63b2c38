"""Running the action graph: keys, cache hits, a priority worker pool, failures and interrupts.

A node starts the moment its last dependency finishes (graphlib-style get_ready/done, never in
waves), or with its batch (engine/batch.py): a node may wait up to two seconds for a member of
its batch whose dependencies are about to finish. Among runnable nodes, the one with the
longest remaining path (by earlier durations) goes first.
"""

from __future__ import annotations

import heapq
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ActionFailed, GraphbuildError, is_no_space
from ..events import Events, Profile
from ..registry import limits
from ..rule_api import Action, NodeId, Outcome, RunContext
from ..workspace import Workspace
from . import explain, run_lock
from .action_cache import ActionCache
from .batch import Batch, Batching
from .cas import CAS, out_path, replace_dir
from .hashing import StatCache, digest_bytes, digest_json, read_pickle, write_pickle

KEY_SCHEMA = 2  # 2: the inputs enter the key as one digest of their (path, digest) list
RECORD_BATCH = 64  # finished outcomes are written together: at most this many,
RECORD_EVERY_S = 0.5  # or this often (each transaction costs the main thread ~1 ms)
DEFAULT_DURATION = 1.0
MIN_IO_JOBS = 8  # io-bound nodes (pushes) run beyond -j: up to max(this, 4 * jobs) at once
LOG_TAIL = 40
LOOKUP_THREADS = 4
LOOKUP = object()  # _prepare's answer when the remote cache is to be asked first
READS_IMAGES = ("Image",)  # actions reading their image dependencies' bytes: hashed first


class Interrupted(GraphbuildError):
    exit_code = 130

    def __init__(self, message: str, summary: Summary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class Options:
    jobs: int
    keep_going: bool = False
    dry_run: bool = False
    no_cache: bool = False


@dataclass
class NodeResult:
    node: NodeId
    status: str  # built | cached | failed | skipped | (dry run) would-run
    reason: str = ""
    outcome: Outcome | None = None
    duration: float = 0.0
    log: str = ""
    notes: list[str] = field(default_factory=list)  # remarks from the action (e.g. emulation)
    remote_duration: float | None = None  # a remote cache hit: how long it took where it ran
    # failed on a stored output found missing or corrupt (removed on the way): a build again
    # rebuilds what it belonged to
    damage: bool = False


@dataclass
class Summary:
    results: dict[NodeId, NodeResult] = field(default_factory=dict)
    duration: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {"built": 0, "cached": 0, "failed": 0, "skipped": 0}
        for r in self.results.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        c = self.counts()
        return c["failed"] == 0 and c["skipped"] == 0

    @property
    def only_damage(self) -> bool:
        """Every failure was a stored output found damaged (which a second pass rebuilds)."""
        failed = [r for r in self.results.values() if r.status == "failed"]
        return bool(failed) and all(r.damage for r in failed)


def _is_damage(exc: BaseException) -> bool:
    from ..oci.store import BlobCorrupt, BlobNotFound

    return isinstance(exc, (BlobCorrupt, BlobNotFound))


class Engine:
    """Per-run shared state: caches, stores, running processes, cancellation."""

    def __init__(self, ws: Workspace, events: Events, profile: Profile | None = None) -> None:
        self.ws = ws
        self.events = events
        self.profile = profile
        self.cache_dir: Path = ws.cache_dir
        self.root_str = str(ws.root)
        # shared with other builds; `cache gc`/`clean` wait for it (and a build for them)
        self.lock = run_lock.shared(self.cache_dir)
        self.stat_cache = StatCache(self.cache_dir / "stat-cache.pickle")
        # node -> tree digest of its materialised output directory (one file, not one per node)
        self._published_path = self.cache_dir / "published.pickle"
        self.published: dict[NodeId, str] = read_pickle(self._published_path)
        self._published_dirty = False
        try:
            self.actions = ActionCache(self.cache_dir / "actions")
        except BaseException:
            self.lock.release()
            raise
        self.cancelled = threading.Event()
        # one per run: a registry that keeps failing ends the run's pushes in seconds
        self.retries = limits.RetryBudget()
        self._procs: dict[int, subprocess.Popen] = {}
        self._procs_lock = threading.Lock()
        self._cas: CAS | None = None
        self._store = None
        self._lazy_lock = threading.Lock()
        self.remote_cache = None  # a remote_cache.RemoteCache when the run uses one
        self.verify_lock = threading.Lock()
        self.verified_dirs: set[tuple[NodeId, str]] = set()  # dependency outputs checked

    @property
    def cas(self) -> CAS:
        with self._lazy_lock:
            if self._cas is None:
                self._cas = CAS(self.cache_dir / "cas")
            return self._cas

    @property
    def store(self):
        with self._lazy_lock:
            if self._store is None:
                from .remote_cache import open_store

                self._store = open_store(self.ws)
            return self._store

    def out_dir(self, node: NodeId) -> str:
        return out_path(self.cache_dir, node)

    def mark_published(self, node: NodeId, digest: str) -> None:
        self.published[node] = digest
        self._published_dirty = True

    def run_process(self, argv, *, cwd, env=None, stdin=None, log_path: Path) -> int:
        """Run in a new process group (so an interrupt stops all of it), output to log_path."""
        if self.cancelled.is_set():
            raise ActionFailed("interrupted")
        with open(log_path, "ab") as log:
            try:
                proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.PIPE if stdin is not None
                                        else subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:  # e.g. `sh` not on the PATH the action's env sets
                raise ActionFailed(f"cannot start {argv[0]} in {cwd}: {exc.strerror}") from None
            with self._procs_lock:
                self._procs[proc.pid] = proc
            try:
                if stdin is not None:
                    proc.communicate(stdin)
                return proc.wait()
            finally:
                with self._procs_lock:
                    self._procs.pop(proc.pid, None)

    def kill_all(self) -> None:
        """Stop every running action's whole process group: TERM, then KILL after a grace period."""
        with self._procs_lock:
            procs = list(self._procs.values())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in procs:
                try:
                    os.killpg(p.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                time.sleep(0.02)

    def close(self) -> None:
        if self.remote_cache is not None:
            self.remote_cache.finish()
        self.stat_cache.save()
        if self._published_dirty:
            write_pickle(self._published_path, self.published)
        try:
            if self._store is not None:
                self._store.save()
            self.actions.close()
        finally:
            self.lock.release()


class ActionContext(RunContext):
    """The RunContext one action sees."""

    def __init__(self, engine: Engine, action: Action, deps: dict[NodeId, Outcome]) -> None:
        self.engine = engine
        self.ws = engine.ws
        self.action = action
        self.deps = deps
        self.cancelled = engine.cancelled
        self._scratch: Path | None = None
        self.notes: list[str] = []

    @property
    def cas(self) -> CAS:
        return self.engine.cas

    @property
    def store(self):
        return self.engine.store

    def out_dir(self, node: NodeId) -> Path:
        return Path(self.engine.out_dir(node))

    def scratch_dir(self) -> Path:
        if self._scratch is None:
            base = self.engine.cache_dir / "tmp"
            base.mkdir(parents=True, exist_ok=True)
            self._scratch = Path(tempfile.mkdtemp(dir=base, prefix="action-"))
        return self._scratch

    @property
    def log_path(self) -> Path:
        return self.scratch_dir() / "action.log"

    def run_process(self, argv, *, cwd, env=None, stdin=None) -> tuple[int, str]:
        code = self.engine.run_process(argv, cwd=cwd, env=env, stdin=stdin, log_path=self.log_path)
        return code, self.log_tail() if code else ""

    def input_digests(self) -> dict[str, str]:
        return self.engine.stat_cache.digest_many(self.engine.root_str, self.action.inputs)

    def log(self, text: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(text.rstrip("\n") + "\n")

    def note(self, text: str) -> None:
        """A remark shown with the node's progress line and event (e.g. emulation in use)."""
        self.notes.append(text)

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-LOG_TAIL:])

    def publish_dir(self, src: Path, node: NodeId, digest: str) -> None:
        replace_dir(src, self.out_dir(node))
        self.engine.mark_published(node, digest)

    def ensure_dir(self, node: NodeId, digest: str) -> bool:
        """Runs for every cached command node of a no-op build: a dict lookup and one stat."""
        dest = self.engine.out_dir(node)
        if self.engine.published.get(node) == digest and os.path.isdir(dest):
            return True
        problems: list[str] = []
        if not self.cas.restore_tree(digest, Path(dest), problems):
            for problem in problems:
                self.note(f"cached output damaged: {problem}")
            return False
        self.engine.mark_published(node, digest)
        return True

    def verify_inputs(self) -> None:
        """Check what this action reads from its dependencies, by digest, once per run each:
        a command's output directory that was modified is restored from the CAS (or, if that
        copy is bad too, fails this node and is dropped so the next run rebuilds it); an image
        that an image build reads is hashed, a bad blob failing the node and being removed."""
        for node, outcome in self.deps.items():
            if outcome is None:
                continue
            if "tree" in outcome.data:
                self._verify_dir(node, outcome.data["tree"])
            elif "descriptor" in outcome.data and self.action.mnemonic in READS_IMAGES:
                self.store.verify_closure(outcome.data["descriptor"])

    def _verify_dir(self, node: NodeId, digest: str) -> None:
        engine = self.engine
        with engine.verify_lock:
            if (node, digest) in engine.verified_dirs:
                return
            dest = Path(engine.out_dir(node))
            try:
                intact = self.cas.tree_digest(dest) == digest
            except (OSError, ActionFailed):
                intact = False
            if not intact:
                problems: list[str] = []
                if not self.cas.restore_tree(digest, dest, problems):
                    shutil.rmtree(dest, ignore_errors=True)
                    engine.published.pop(node, None)
                    engine._published_dirty = True
                    raise ActionFailed(f"the output of {node} in {dest} was modified and its "
                                       f"cached copy is {'damaged' if problems else 'missing'}"
                                       f"; run again to rebuild {node}")
                self.note(f"restored the output of {node}: {dest} had been modified")
            engine.verified_dirs.add((node, digest))

    def cleanup(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


class _Pool:
    """Up to ``jobs`` long-lived worker threads fed from one queue (a thread per node costs
    ~1 ms of the main thread's time, which a graph of short actions feels)."""

    def __init__(self, work, jobs: int) -> None:
        self._work = work
        self._jobs = jobs
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, group: list[NodeId], running: int) -> None:
        """Queue ``group`` (a node, or a batch started together); ``running`` counts the nodes
        in flight, these included: a thread is added while there are fewer, so none waits and
        none idles for nothing."""
        if len(self._threads) < min(self._jobs, running):
            t = threading.Thread(target=self._loop, name=f"gb-worker-{len(self._threads)}",
                                 daemon=True)
            self._threads.append(t)
            t.start()
        self._queue.put(group)

    def _loop(self) -> None:
        while (group := self._queue.get()) is not None:
            self._work(group)

    def stop(self) -> None:
        """Let running work finish, then end every worker."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        self._threads = []


def _warn_damaged(node: NodeId, problems: str) -> None:
    """A cache hit thrown away for damage is said on every output (its result line may stay
    quiet): one line, on stderr, which a live display keeps above itself."""
    line = " ".join(problems.split())  # one line, whatever a problem's text holds
    print(f"graphbuild: warning: {node}: {line}; rebuilding it", file=sys.stderr, flush=True)


class Scheduler:
    """Runs an action graph (edges dependency -> dependent) on ``opts.jobs`` workers."""

    def __init__(self, engine: Engine, graph, actions: dict[NodeId, Action], opts: Options,
                 on_start=None) -> None:
        self.engine = engine
        self.on_start = on_start
        self.graph = graph
        if engine.remote_cache is not None:
            engine.remote_cache.nodes.update(graph.nodes)  # what the scope's pack keeps
        self.actions = actions
        self.opts = opts
        self.summary = Summary()
        self._timings_path = engine.cache_dir / "timings.pickle"
        self._timings = self._load_timings()
        # SimpleQueue: its get() holds no Python-level lock that a Ctrl-C raised inside it
        # could leave taken, which would block the workers' put() and so the shutdown
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._keys: dict[NodeId, tuple[str, dict]] = {}
        self._input_memo: dict[tuple, tuple[dict[str, str], str]] = {}
        self._stop_reason: str | None = None
        self._pending: list[tuple] = []  # finished outcomes not yet in the action cache
        self._flushed = time.monotonic()
        self._lookup_pool = None
        self._started_at: dict[NodeId, float] = {}

    # -- priorities -----------------------------------------------------------------------------
    def _load_timings(self) -> dict[str, float]:
        return read_pickle(self._timings_path)

    def _save_timings(self) -> None:
        changed = False
        for node, res in self.summary.results.items():
            if res.status == "built":
                self._timings[node] = res.duration
                changed = True
            elif res.remote_duration is not None:  # how long it took on the machine that ran it
                self._timings.setdefault(node, res.remote_duration)
                changed = True
        if changed:
            write_pickle(self._timings_path, self._timings)

    def _priorities(self) -> dict[NodeId, float]:
        """Longest remaining path (own duration plus the heaviest chain of dependents)."""
        prio: dict[NodeId, float] = {}
        for node in reversed(self.graph.topological_order()):
            tail = max((prio[s] for s in self.graph.successors(node)), default=0.0)
            prio[node] = self._timings.get(node, DEFAULT_DURATION) + tail
        return prio

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> Summary:
        t0 = self._t0 = time.monotonic()
        waiting = {n: self.graph.in_degree(n) for n in self.graph.nodes}
        ready = [n for n, d in waiting.items() if d == 0]
        prio = self._priorities()
        # runnable nodes by Action.io_bound: CPU work takes -j slots, network waits their own
        runnable: dict[bool, list[tuple[float, int, NodeId]]] = {False: [], True: []}
        limits = {False: self.opts.jobs, True: max(MIN_IO_JOBS, 4 * self.opts.jobs)}
        busy = {False: 0, True: 0}
        running: set[NodeId] = set()
        looking: set[NodeId] = set()  # remote cache lookups under way
        batching = Batching(self.graph, self.actions)
        # a started node -> [its batch's members still running, the io class of their slot]
        slots: dict[NodeId, list] = {}
        seq = 0
        pool = _Pool(self._work, limits[False] + limits[True])

        def queue_run(node: NodeId) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(runnable[self.actions[node].io_bound], (-prio[node], seq, node))
            batching.queued(node)

        def started(node: NodeId) -> bool:  # with its batch, or already over
            return node in running or node in self.summary.results

        def eta(node: NodeId) -> float | None:
            """Seconds until a busy node should finish (from earlier runs' durations); None
            when it is not busy."""
            if node in looking:
                return 0.0
            if node not in running:
                return None
            expected = self._timings.get(node, DEFAULT_DURATION)
            return max(0.0, self._started_at[node] + expected - time.monotonic())

        try:
            while True:
                while ready:
                    node = ready.pop()
                    if node in self.summary.results:
                        continue
                    if self._stop_reason:
                        self._finish(NodeResult(node, "skipped", self._stop_reason), ready, waiting)
                        continue
                    res = self._prepare(node)
                    if res is None:
                        queue_run(node)
                    elif res is LOOKUP:
                        looking.add(node)
                        if self.engine.remote_cache.answers_now(node, self._keys[node][0]):
                            self._lookup(node)  # no network: here, its result queued
                        else:
                            self._lookups().submit(self._lookup, node)
                    else:
                        self._finish(res, ready, waiting)
                for io, heap in runnable.items():
                    while heap and busy[io] < limits[io] and not self._stop_reason:
                        entry = heapq.heappop(heap)
                        node = entry[2]
                        if started(node):
                            continue
                        if batching.coming(node, started, self.summary.results.__contains__,
                                           eta):
                            batching.held.append(entry)
                            continue
                        group = batching.group(node, started)
                        running.update(group)
                        busy[io] += 1  # one slot for the whole batch
                        share = [len(group), io]
                        slots.update((m, share) for m in group)
                        self._start(group, pool, len(running))
                if self._stop_reason:
                    for heap in runnable.values():
                        for _, _, node in heap:
                            if not started(node):
                                self._finish(NodeResult(node, "skipped", self._stop_reason),
                                             ready, waiting)
                        heap.clear()
                if not (running or looking or ready or any(runnable.values()) or batching.held):
                    break
                if running or looking:
                    res = self._next_result(batching.wake_at())
                    if res is None:
                        pass  # a node held for its batch is asked again
                    elif res.node in looking:
                        looking.discard(res.node)
                        if res.status == "miss":  # build it; the reason says why
                            self._keys[res.node] = (*self._keys[res.node][:2], res.reason)
                            queue_run(res.node)
                        else:
                            self._finish(res, ready, waiting)
                    else:
                        running.discard(res.node)
                        share = slots.pop(res.node)
                        share[0] -= 1
                        if not share[0]:
                            busy[share[1]] -= 1
                        self._finish(res, ready, waiting)
                for entry in batching.held:  # asked again, now that something finished
                    heapq.heappush(runnable[self.actions[entry[2]].io_bound], entry)
                batching.held.clear()
        except KeyboardInterrupt:
            self._interrupt(pool)
        finally:
            self._flush_records()
            if self._lookup_pool is not None:
                self._lookup_pool.shutdown(wait=False, cancel_futures=True)
        pool.stop()
        self._skip_unreached()
        self.summary.duration = time.monotonic() - t0
        if not self.opts.dry_run:
            self._save_timings()
        return self.summary

    def _next_result(self, wake_at: float | None = None) -> NodeResult | None:
        """The next result (a node's, or a lookup's); None once ``wake_at`` (a monotonic
        time) has passed, when a node held for its batch is to be asked again."""
        try:
            return self._results.get_nowait()
        except queue.Empty:
            if time.monotonic() - self._flushed > RECORD_EVERY_S:
                self._flush_records()  # an idle moment: write finished records together
        while True:  # a timeout keeps the main thread responsive to signals
            wait = 0.2 if wake_at is None else min(0.2, wake_at - time.monotonic())
            if wait <= 0:
                return None
            try:
                return self._results.get(timeout=wait)
            except queue.Empty:
                continue

    def _flush_records(self) -> None:
        """Record finished outcomes (their outputs are stored already) from the main thread, in
        one transaction: worker threads would contend for SQLite's lock."""
        if self._pending:
            self.engine.actions.put_many(self._pending)
            self._pending = []
        self._flushed = time.monotonic()

    def _interrupt(self, pool: _Pool) -> None:
        self.engine.cancelled.set()
        if self.engine.remote_cache is not None:
            self.engine.remote_cache.cancel()
        self.engine.kill_all()
        pool.stop()
        self.summary.duration = time.monotonic() - self._t0
        raise Interrupted("interrupted: running actions were stopped; nothing partial was "
                          "recorded", self.summary)

    def _skip_unreached(self) -> None:
        for node in self.graph.nodes:
            if node not in self.summary.results:
                failed = [p for p in self.graph.predecessors(node)
                          if self.summary.results.get(p, NodeResult(p, "")).status in ("failed", "skipped")]
                why = f"dependency {failed[0]} did not build" if failed else (self._stop_reason or "not run")
                self._record(NodeResult(node, "skipped", why))

    # -- per node -------------------------------------------------------------------------------
    def _key(self, node: NodeId) -> tuple[str, dict]:
        action = self.actions[node]
        inputs, inputs_digest = self._inputs(action.inputs)
        deps = {d: self.summary.results[d].outcome.digest for d in self.graph.predecessors(node)}
        snap = explain.snapshot(action, inputs, deps, {})
        key = digest_json({
            "schema": KEY_SCHEMA, "rule": action.rule, "rule_version": action.rule_version,
            "platform": snap["platform"], "inputs": inputs_digest,
            "deps": sorted(deps.items()), "data": action.key_data, "tool": action.tool_version,
        })
        return key, snap

    def _inputs(self, paths: list[str]) -> tuple[dict[str, str], str]:
        """Each input's digest, and one digest of them all. Nodes with the same inputs (an
        image's platforms) share the answer: it is computed once per run."""
        memo_key = tuple(paths)
        hit = self._input_memo.get(memo_key)
        if hit is None:
            inputs = self.engine.stat_cache.digest_many(self.engine.root_str, paths)
            # NUL-separated: no path or digest holds one, and it is cheaper than JSON; a name
            # that is not UTF-8 keeps its bytes (surrogateescape)
            flat = "\0".join(f"{p}\0{d}" for p, d in sorted(inputs.items()))
            flat_bytes = flat.encode("utf-8", "surrogateescape")
            hit = self._input_memo[memo_key] = (inputs, digest_bytes(flat_bytes))
        return hit

    def _prepare(self, node: NodeId) -> NodeResult | None:
        """A cache hit, a dry-run verdict, or None: the node must run."""
        action = self.actions[node]
        if self.opts.dry_run and any(self.summary.results[d].status == "would-run"
                                     for d in self.graph.predecessors(node)):
            dep = next(d for d in self.graph.predecessors(node)
                       if self.summary.results[d].status == "would-run")
            return NodeResult(node, "would-run", f"dependency {dep} would run")
        try:
            key, snap = self._key(node)
        except OSError as exc:
            return NodeResult(node, "failed", f"cannot read input: {exc}")
        if not action.cacheable:
            why = "always runs: its effect is outside the cache"
            if self.opts.dry_run:
                return NodeResult(node, "would-run", why)
            self._keys[node] = (key, snap, why)
            return None
        damaged = ""
        if not self.opts.no_cache:
            hit = self.engine.actions.get(key, node)
            if hit is not None:
                ctx = ActionContext(self.engine, action, self._dep_outcomes(node))
                try:
                    usable = action.check_cached is None or action.check_cached(ctx, hit)
                finally:
                    ctx.cleanup()
                if usable:
                    return NodeResult(node, "cached", "unchanged", hit)
                damaged = "; ".join(ctx.notes)  # what the check found missing or damaged
        last = self.engine.actions.last(node)
        why = "--no-cache" if self.opts.no_cache else damaged or explain.reason(
            last["snapshot"] if last else None, snap)
        if self.opts.dry_run:
            return NodeResult(node, "would-run", why)
        if damaged:
            _warn_damaged(node, damaged)
        self._keys[node] = (key, snap, why)
        remote = self.engine.remote_cache
        if remote is not None and remote.reading and not self.opts.no_cache:
            return LOOKUP
        return None

    # -- the remote cache -----------------------------------------------------------------------
    def _lookups(self):
        """Lookups wait on the network: their own threads, never the worker pool's."""
        if self._lookup_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._lookup_pool = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="gb-lookup")
        return self._lookup_pool

    def _lookup(self, node: NodeId) -> None:
        """On a lookup thread: a remote hit as a cached result, or a "miss" (the node runs)."""
        key, _, why = self._keys[node]
        res = NodeResult(node, "miss", why)
        try:
            with limits.scope(cancelled=self.engine.cancelled, retries=self.engine.retries):
                outcome, said, duration = self.engine.remote_cache.lookup(
                    key, self.engine.store, self.engine.cas, node)
            if outcome is not None and self._usable(node, outcome):
                res = NodeResult(node, "cached", said, outcome, remote_duration=duration)
            else:
                res.reason = f"{said}; {why}" if outcome is None else \
                    f"remote cache entry incomplete; {why}"
        except Exception as exc:  # noqa: BLE001 - a cache fault must not fail the build
            res.reason = f"remote cache lookup failed ({type(exc).__name__}: {exc}); {why}"
        finally:
            self._results.put(res)

    def _prime(self, node: NodeId, outcome: Outcome) -> None:
        """Check a fresh outcome as the next no-op will, so what that check remembers (an
        image's closure) is remembered now, while its blobs are in the page cache: else the
        first no-op after a build reads every manifest back. Its answer is not needed."""
        try:
            self._usable(node, outcome)
        except (OSError, GraphbuildError):
            pass  # the next no-op's check says what is wrong

    def _usable(self, node: NodeId, outcome: Outcome) -> bool:
        action = self.actions[node]
        if action.check_cached is None:
            return True
        ctx = ActionContext(self.engine, action, self._dep_outcomes(node))
        try:
            return action.check_cached(ctx, outcome)
        finally:
            ctx.cleanup()

    def _dep_outcomes(self, node: NodeId) -> dict[NodeId, Outcome]:
        return {d: self.summary.results[d].outcome for d in self.graph.predecessors(node)}

    def _start(self, group: list[NodeId], pool: _Pool, running: int) -> None:
        now = time.monotonic()
        for node in group:
            self._started_at[node] = now
            why = self._keys[node][2]
            if self.on_start:
                self.on_start(node, why)
            action = self.actions[node]
            self.engine.events.emit({  # so a consumer of the events can show what is running
                "event": "action_started", "label": str(action.label),
                "platform": str(action.platform) if action.platform else None,
                "rule": action.rule, "mnemonic": action.mnemonic, "node": node, "reason": why,
            })
        pool.submit(group, running)

    def _work(self, group: list[NodeId]) -> None:
        """On a pool thread: one node, or a batch with a thread for each other member. Each
        member reports when it ends (a failure stops new work at once)."""
        if len(group) == 1:
            self._work_one(group[0], None)
            return
        batch = Batch(group, self.engine.cancelled)
        others = [t for t in (self._spawn(node, batch) for node in group[1:]) if t is not None]
        try:
            self._work_one(group[0], batch)
        finally:
            for t in others:
                t.join()

    def _spawn(self, node: NodeId, batch: Batch) -> threading.Thread | None:
        """A batch member's thread, started; None when none could be (the member failed)."""
        t = threading.Thread(target=self._work_one, args=(node, batch), daemon=True,
                             name=f"{threading.current_thread().name}-batch")
        try:
            t.start()
        except RuntimeError as exc:  # no more threads: this member fails, the others go on
            batch.leave(node)
            self._results.put(NodeResult(node, "failed", f"internal error: {exc}"))
            return None
        return t

    def _work_one(self, node: NodeId, batch: Batch | None) -> None:
        action = self.actions[node]
        why = self._keys[node][2]
        ctx = ActionContext(self.engine, action, self._dep_outcomes(node))
        ctx.batch = batch
        start = time.monotonic()
        res = NodeResult(node, "failed")
        try:
            # registry requests the action makes stop at once on Ctrl-C (the run's event)
            with limits.scope(cancelled=self.engine.cancelled, retries=self.engine.retries):
                ctx.verify_inputs()
                outcome = action.run(ctx)
            if self.engine.cancelled.is_set():
                res = NodeResult(node, "failed", "interrupted")
            else:
                res = NodeResult(node, "built", why, outcome)
                self._prime(node, outcome)
        except ActionFailed as exc:
            res = NodeResult(node, "failed", str(exc), log=exc.log or ctx.log_tail())
        except GraphbuildError as exc:
            res = NodeResult(node, "failed", exc.render(), log=ctx.log_tail(),
                             damage=_is_damage(exc))
        except OSError as exc:
            if not is_no_space(exc):
                res = NodeResult(node, "failed", f"internal error: {type(exc).__name__}: {exc}",
                                 log=traceback.format_exc())
            else:  # one line: a full disk is not a bug
                res = NodeResult(node, "failed", "no space left on device while writing "
                                 f"{exc.filename or 'its output'}")
        # a bug in a rule or backend: fail this node, keep the build
        except Exception as exc:  # noqa: BLE001
            res = NodeResult(node, "failed", f"internal error: {type(exc).__name__}: {exc}",
                             log=traceback.format_exc())
        except SystemExit as exc:  # the worker thread must live on: it serves other nodes
            res = NodeResult(node, "failed", f"internal error: the action called "
                             f"sys.exit({exc.code!r})", log=traceback.format_exc())
        finally:
            if batch is not None:
                batch.leave(node)  # it offered nothing: the others need not wait for it
            res.duration = time.monotonic() - start
            res.notes = list(ctx.notes)
            if ctx.notes:
                res.reason = "; ".join([res.reason, *ctx.notes]) if res.reason else "; ".join(ctx.notes)
            if self.engine.profile:
                self.engine.profile.record(node, action.mnemonic, start, start + res.duration,
                                           {"status": res.status, "reason": res.reason})
            self._results.put(res)
            ctx.cleanup()  # after reporting: the next node need not wait for an rmtree

    def _finish(self, res: NodeResult, ready: list, waiting: dict) -> None:
        self._record(res)
        remote = res.remote_duration is not None
        if (res.status == "built" or remote) and self.actions[res.node].cacheable:
            key, snap, _ = self._keys[res.node]
            duration = res.remote_duration if remote else res.duration
            self._pending.append((key, res.outcome, res.node, self.actions[res.node].mnemonic,
                                  snap, duration))
            if not remote and self.engine.remote_cache is not None:
                self.engine.remote_cache.save(key, res.node, res.outcome, res.duration,
                                              self.engine.store, self.engine.cas)
            if len(self._pending) >= RECORD_BATCH:
                self._flush_records()
        if res.status in ("failed", "skipped"):
            for desc in self.graph.descendants(res.node):
                if desc not in self.summary.results:
                    self._record(NodeResult(desc, "skipped", f"dependency {res.node} "
                                            f"{'failed' if res.status == 'failed' else 'was skipped'}"))
            if res.status == "failed" and not self.opts.keep_going and not self._stop_reason:
                self._stop_reason = f"not started: the build stopped after {res.node} failed " \
                                    "(--keep-going builds everything else)"
            return
        for succ in self.graph.successors(res.node):
            waiting[succ] -= 1
            if waiting[succ] == 0:
                ready.append(succ)

    def _record(self, res: NodeResult) -> None:
        self.summary.results[res.node] = res
        if self.opts.dry_run:
            return
        action = self.actions[res.node]
        self.engine.events.emit({
            "event": "action_finished", "label": str(action.label),
            "platform": str(action.platform) if action.platform else None,
            "rule": action.rule, "status": res.status,
            "digest": res.outcome.digest if res.outcome else None,
            "duration_s": round(res.duration, 3), "reason": res.reason,
            "mnemonic": action.mnemonic, "node": res.node, "log": res.log or None,
            "notes": res.notes,
        })
