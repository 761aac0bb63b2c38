"""Scheduler benchmark: graphbuild vs ninja vs make on the same random DAG of sleeping commands.

Run (from the repository root, with graphbuild installed):

    python benchmarks/scheduler.py            # 400 nodes, -j 8, 3 rounds
    python benchmarks/scheduler.py --quick    # 120 nodes, 1 round (a smoke check, ~10 s)

What it does (issue 2, "Performance / Scheduler"):

* generates, from a fixed seed, a DAG of N `command` nodes; node i sleeps a duration drawn
  uniformly from [0.02, 0.2] s and depends on up to 3 nodes among the 40 before it;
* writes the same DAG three ways, in a fresh temporary directory per run:
  a graphbuild workspace (one package `dag`, targets n000…, `deps` between them),
  a `build.ninja`, and a `Makefile`;
* runs each with `-j 8` from fresh state (no cache, no earlier timings), rounds interleaved,
  and measures the wall-clock makespan of the whole process (start-up and loading included);
* prints the makespans, the lower bound max(critical path, total work / jobs) computed from the
  nominal sleep durations, and the ratios graphbuild/ninja and graphbuild/lower-bound against the
  targets (graphbuild <= ninja, graphbuild <= 1.10 x lower bound).

Extra figures, for diagnosis: graphbuild's own `build_finished.duration_s` (scheduling only,
without start-up and BUILD loading), and one informational graphbuild run with `--no-cache` after
the fresh one, when the scheduler knows every node's duration from the previous run.

Options: --nodes N, --jobs J, --rounds R, --seed S, --keep (keep the generated directories and
print where they are).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import graphbuild_cmd, graphbuild_where, machine_line

WINDOW = 40       # dependencies are drawn among the WINDOW nodes before a node
MAX_DEPS = 3
MIN_S, MAX_S = 0.02, 0.2


def make_dag(n: int, seed: int) -> tuple[list[float], list[list[int]]]:
    rng = random.Random(seed)
    durations, deps = [], []
    for i in range(n):
        durations.append(round(rng.uniform(MIN_S, MAX_S), 3))
        lo = max(0, i - WINDOW)
        k = rng.randint(0, min(MAX_DEPS, i - lo))
        deps.append(sorted(rng.sample(range(lo, i), k)))
    return durations, deps


def lower_bound(durations: list[float], deps: list[list[int]],
                jobs: int) -> tuple[float, float, float]:
    finish: list[float] = []
    for i, d in enumerate(durations):
        finish.append(d + max((finish[j] for j in deps[i]), default=0.0))
    cp, work = max(finish), sum(durations)
    return cp, work, max(cp, work / jobs)


def name(i: int) -> str:
    return f"n{i:03d}"


def write_graphbuild(root: Path, durations, deps) -> None:
    (root / "dag").mkdir(parents=True)
    (root / "WORKSPACE.yaml").write_text("{}\n")
    lines = []
    for i, d in enumerate(durations):
        lines.append(f"{name(i)}:")
        lines.append("  rule: command")
        lines.append(f"  cmd: sleep {d}")
        if deps[i]:
            lines.append("  deps: [" + ", ".join(f'":{name(j)}"' for j in deps[i]) + "]")
    (root / "dag" / "BUILD.yaml").write_text("\n".join(lines) + "\n")


def write_ninja(root: Path, durations, deps) -> None:
    root.mkdir(parents=True)
    (root / "out").mkdir()
    out = ["rule sleep", "  command = sleep $dur && touch $out", ""]
    for i, d in enumerate(durations):
        implicit = " | " + " ".join(f"out/{name(j)}" for j in deps[i]) if deps[i] else ""
        out.append(f"build out/{name(i)}: sleep{implicit}")
        out.append(f"  dur = {d}")
    (root / "build.ninja").write_text("\n".join(out) + "\n")


def write_make(root: Path, durations, deps) -> None:
    root.mkdir(parents=True)
    (root / "out").mkdir()
    out = ["all: " + " ".join(f"out/{name(i)}" for i in range(len(durations))), ""]
    for i, d in enumerate(durations):
        out.append(f"out/{name(i)}: " + " ".join(f"out/{name(j)}" for j in deps[i]))
        out.append(f"\tsleep {d} && touch $@")
    (root / "Makefile").write_text("\n".join(out) + "\n")


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed in {cwd} (exit {proc.returncode}):\n"
                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def build_stats(stdout: str) -> tuple[float, dict]:
    for line in stdout.splitlines():
        if line.startswith("{"):
            ev = json.loads(line)
            if ev.get("event") == "build_finished":
                return ev["duration_s"], ev["counts"]
    return float("nan"), {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="120 nodes, 1 round")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seed", type=int, default=20240602)
    ap.add_argument("--keep", action="store_true", help="keep the generated directories")
    args = ap.parse_args()
    n = args.nodes or (120 if args.quick else 400)
    rounds = args.rounds or (1 if args.quick else 3)
    for tool in ("ninja", "make"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")

    print(machine_line())
    print(graphbuild_where())
    durations, deps = make_dag(n, args.seed)
    cp, work, lb = lower_bound(durations, deps, args.jobs)
    print(f"DAG: {n} nodes, {sum(map(len, deps))} edges, seed {args.seed}, -j {args.jobs}")
    print(f"critical path {cp:.3f} s, total work {work:.3f} s (work/{args.jobs} = "
          f"{work / args.jobs:.3f} s), lower bound {lb:.3f} s")

    base = Path(tempfile.mkdtemp(prefix="gb-bench-sched-"))
    gb = graphbuild_cmd()
    times: dict[str, list[float]] = {"graphbuild": [], "ninja": [], "make": []}
    gb_sched, gb_warm = [], []
    try:
        for r in range(rounds):
            d = base / f"round{r}"
            write_graphbuild(d / "gb", durations, deps)
            write_ninja(d / "ninja", durations, deps)
            write_make(d / "make", durations, deps)
            t, _ = timed(["ninja", "-j", str(args.jobs)], d / "ninja")
            times["ninja"].append(t)
            t, _ = timed(["make", "-s", "-j", str(args.jobs)], d / "make")
            times["make"].append(t)
            t, out = timed([*gb, "run", "//...", "-j", str(args.jobs), "--output", "json"],
                           d / "gb")
            sched, counts = build_stats(out)
            if counts.get("built") != n:
                sys.exit(f"graphbuild built {counts} nodes, expected {n}")
            times["graphbuild"].append(t)
            gb_sched.append(sched)
            # Informational: same workspace, cache ignored, durations known from the run above.
            t, _ = timed([*gb, "run", "//...", "-j", str(args.jobs), "--output", "json",
                          "--no-cache"], d / "gb")
            gb_warm.append(t)
            print(f"round {r + 1}/{rounds}: graphbuild {times['graphbuild'][-1]:.3f} s "
                  f"(scheduler {sched:.3f} s), ninja {times['ninja'][-1]:.3f} s, "
                  f"make {times['make'][-1]:.3f} s, graphbuild --no-cache with known "
                  f"durations {t:.3f} s", flush=True)
            if not args.keep:
                shutil.rmtree(d, ignore_errors=True)
    finally:
        if args.keep:
            print(f"kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    print(f"{'tool':<34}{'makespan (median)':>18}{'min':>9}{'max':>9}{'/ lower bound':>15}")
    for k in ("graphbuild", "ninja", "make"):
        v = times[k]
        print(f"{k:<34}{med[k]:>16.3f} s{min(v):>9.3f}{max(v):>9.3f}{med[k] / lb:>15.3f}")
    print(f"{'graphbuild, scheduler only':<34}{statistics.median(gb_sched):>16.3f} s"
          f"{min(gb_sched):>9.3f}{max(gb_sched):>9.3f}{statistics.median(gb_sched) / lb:>15.3f}")
    print(f"{'graphbuild, known durations':<34}{statistics.median(gb_warm):>16.3f} s"
          f"{min(gb_warm):>9.3f}{max(gb_warm):>9.3f}{statistics.median(gb_warm) / lb:>15.3f}")
    print(f"{'lower bound':<34}{lb:>16.3f} s")
    print(f"at the end: {machine_line()}")
    r_ninja, r_lb = med["graphbuild"] / med["ninja"], med["graphbuild"] / lb
    ok1, ok2 = r_ninja <= 1.0, r_lb <= 1.10
    print()
    print(f"graphbuild / ninja       = {r_ninja:.3f}  (target <= 1.00): "
          f"{'MET' if ok1 else 'NOT MET'}")
    print(f"graphbuild / lower bound = {r_lb:.3f}  (target <= 1.10): {'MET' if ok2 else 'NOT MET'}")
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
