"""Where a graphbuild command spends its time, per engine function (wall time, call counts).

Run it inside a workspace, with the graphbuild arguments after `--`:

    python /path/to/benchmarks/profile_phases.py -- run //... -j 8 --output json

It runs the command in-process with timers wrapped around the engine functions that the
benchmarks found hot (see docs/benchmarks.md), from the main thread and the worker threads alike,
and prints a table. Unlike cProfile it adds almost no overhead to the code it does not wrap, and it
sees the worker threads. Functions that no longer exist (after a refactor) are skipped and listed.
The command's own output is discarded.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import sys
import threading
import time

# (module, attribute path, label); a label starting with "worker" runs in worker threads.
WRAPS = [
    ("graphbuild.cli.common", "load", "main: load (BUILD files + analysis)"),
    ("graphbuild.engine.loader", "Loader._read_cache", "main:   parse-cache read"),
    ("graphbuild.engine.loader", "Loader.find_packages", "main:   Loader.find_packages"),
    ("graphbuild.engine.loader", "Loader._parse", "main:   Loader._parse (YAML, cache miss)"),
    ("graphbuild.engine.target_graph", "TargetGraph.__init__",
     "main:   TargetGraph (incl. import networkx)"),
    ("graphbuild.engine.target_graph", "TargetGraph._check_cycles", "main:     TargetGraph._check_cycles"),
    ("graphbuild.engine.analysis", "Analysis.__init__", "main:   Analysis"),
    ("graphbuild.engine.analysis", "Analysis.glob", "main:     Analysis.glob"),
    ("graphbuild_rules._private.image", "ImageRule.analyze", "main:     image analyze"),
    ("graphbuild_rules._private.image_inputs", "Setup.__init__", "main:       image Setup"),
    ("graphbuild_rules._private.image_inputs", "Setup.node_spec", "main:       image node_spec"),
    ("graphbuild_rules._private.manifest", "ManifestRule.analyze", "main:     manifest analyze"),
    ("graphbuild.engine.scheduler", "Engine.__init__", "main: Engine.__init__ (stat cache, diskcache)"),
    ("graphbuild.engine.scheduler", "Scheduler.run", "main: Scheduler.run"),
    ("graphbuild.engine.scheduler", "Scheduler._priorities", "main:   Scheduler._priorities"),
    ("graphbuild.engine.scheduler", "Scheduler._prepare", "main:   Scheduler._prepare"),
    ("graphbuild.engine.scheduler", "Scheduler._key", "main:     Scheduler._key"),
    ("graphbuild.engine.hashing", "StatCache.digest_many", "main:       StatCache.digest_many"),
    ("graphbuild.engine.scheduler", "digest_json", "main:       digest_json"),
    ("graphbuild.engine.action_cache", "ActionCache.get", "main:     ActionCache.get"),
    ("graphbuild.engine.scheduler", "ActionContext.ensure_dir", "main:     ActionContext.ensure_dir"),
    ("graphbuild.engine.scheduler", "Scheduler._start", "main:   Scheduler._start (thread start)"),
    ("graphbuild.engine.scheduler", "Scheduler._finish", "main:   Scheduler._finish (incl. events)"),
    ("graphbuild.engine.scheduler", "Engine.close", "main: Engine.close"),
    ("graphbuild_rules._private.command", "_run", "worker: command _run"),
    ("graphbuild.engine.scheduler", "ActionContext.scratch_dir", "worker:   ActionContext.scratch_dir"),
    ("graphbuild.engine.scheduler", "Engine.run_process", "worker:   Engine.run_process (sh -c)"),
    ("graphbuild.engine.scheduler", "ActionContext.log_tail", "worker:   ActionContext.log_tail"),
    ("graphbuild.engine.cas", "CAS.put_tree", "worker:   CAS.put_tree"),
    ("graphbuild.engine.scheduler", "ActionContext.publish_dir", "worker:   ActionContext.publish_dir"),
    ("graphbuild.engine.action_cache", "ActionCache.put", "worker: ActionCache.put"),
    ("graphbuild.engine.scheduler", "ActionContext.cleanup", "worker: ActionContext.cleanup"),
]


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        sys.exit(__doc__)
    t0 = time.perf_counter()
    from graphbuild import cli

    acc: dict[str, list] = {}
    lock = threading.Lock()
    missing = []
    for modname, path, label in WRAPS:
        try:
            owner = importlib.import_module(modname)
            *parents, name = path.split(".")
            for p in parents:
                owner = getattr(owner, p)
            func = getattr(owner, name)
        except (ImportError, AttributeError):
            missing.append(f"{modname}:{path}")
            continue

        def timed(*a, __f=func, __label=label, **k):
            start = time.perf_counter()
            try:
                return __f(*a, **k)
            finally:
                d = time.perf_counter() - start
                with lock:
                    e = acc.setdefault(__label, [0.0, 0])
                    e[0] += d
                    e[1] += 1

        setattr(owner, name, functools.wraps(func)(timed))
    t1 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    t2 = time.perf_counter()
    print(f"graphbuild {' '.join(argv)}  (exit {code})")
    print(f"importing graphbuild.cli: {t1 - t0:.3f} s; the command: {t2 - t1:.3f} s "
          "(interpreter start-up not included)")
    print(f"{'function':<52}{'total s':>9}{'calls':>8}{'ms/call':>9}")
    for _, _, label in WRAPS:
        if label in acc:
            total, n = acc[label]
            print(f"{label:<52}{total:>9.3f}{n:>8}{total / n * 1000:>9.2f}")
    if missing:
        print("not found (renamed?): " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
