"""No-op benchmark: graphbuild vs ninja on a generated monorepo, plus an incremental check.

Run (from the repository root, with graphbuild installed):

    python benchmarks/noop.py            # 1,000 packages x 20 sources x 2 platforms, 7 no-op runs
    python benchmarks/noop.py --quick    # 200 packages, 3 no-op runs (a smoke check)

What it does (issue 2, "Performance / No-op"):

* generates a workspace of N packages `pkgs/pNNNN`, each with 20 source files under `src/` and one
  target `bin` (`rule: command`, `srcs: [src/*]`, `platforms: [linux/amd64, linux/arm64]`,
  `cmd: cat src/* > $OUT/x`): 2 x N action nodes over 20 x N files;
* writes an equivalent `build.ninja` in the same directory over the same source files (one edge per
  package and platform, `cat $in > $out`), so both tools see the same graph;
* full-builds both (graphbuild with -j 8), then measures no-op runs, interleaved: one warm-up run of
  each (reported) and then --runs measured runs; prints the medians, the ratio graphbuild/ninja
  (target <= 10) and graphbuild's peak RSS (target <= 150 MB; ru_maxrss of the graphbuild process
  from os.wait4, i.e. what `/usr/bin/time -v` reports as "Maximum resident set size");
* checks that after one source file of one package is edited, graphbuild rebuilds exactly that
  package's 2 nodes (counted from the `action_finished` events of `--output json`), and ninja's
  count for comparison; then, for information, what a pure `touch` (new mtime, same content) does.

Options: --packages N, --runs R, --jobs J, --keep (keep the workspace and print where it is).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import events, graphbuild_cmd, graphbuild_where, machine_line, run

SOURCES = 20
PLATFORMS = ("linux/amd64", "linux/arm64")


def generate(root: Path, packages: int) -> None:
    (root / "WORKSPACE.yaml").write_text("{}\n")
    ninja = ["rule cat", "  command = cat $in > $out", ""]
    for p in range(packages):
        pkg = f"pkgs/p{p:04d}"
        src = root / pkg / "src"
        src.mkdir(parents=True)
        for s in range(SOURCES):
            body = f"/* {pkg} source {s} */\nint f{s}(void) {{ return {p * SOURCES + s}; }}\n"
            (src / f"f{s:02d}.c").write_text(body)
        (root / pkg / "BUILD.yaml").write_text(
            "bin:\n"
            "  rule: command\n"
            "  srcs: [\"src/*\"]\n"
            f"  platforms: [{', '.join(PLATFORMS)}]\n"
            "  cmd: cat src/* > $OUT/x\n")
        ins = " ".join(f"{pkg}/src/f{s:02d}.c" for s in range(SOURCES))
        for plat in PLATFORMS:
            ninja.append(f"build ninja-out/{pkg}/{plat.replace('/', '-')}/x: cat {ins}")
    (root / "build.ninja").write_text("\n".join(ninja) + "\n")


def built_nodes(stdout: str) -> list[str]:
    return sorted(e["node"] for e in events(stdout)
                  if e.get("event") == "action_finished" and e["status"] == "built")


def ninja_steps(stdout: str) -> int:
    return sum(1 for line in stdout.splitlines() if line.startswith("["))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 packages, 3 no-op runs")
    ap.add_argument("--packages", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the generated workspace")
    args = ap.parse_args()
    packages = args.packages or (200 if args.quick else 1000)
    runs = args.runs or (3 if args.quick else 7)
    if not shutil.which("ninja"):
        sys.exit("ninja is not installed")
    gb = [*graphbuild_cmd(), "run", "//...", "-j", str(args.jobs), "--output", "json"]
    ninja = ["ninja", "-j", str(args.jobs)]
    nodes = packages * len(PLATFORMS)

    print(machine_line())
    print(graphbuild_where())
    root = Path(tempfile.mkdtemp(prefix="gb-bench-noop-"))
    ok = True
    try:
        t0 = time.perf_counter()
        generate(root, packages)
        print(f"workspace: {packages} packages, {packages * SOURCES} source files, {nodes} nodes "
              f"(generated in {time.perf_counter() - t0:.1f} s)")

        t, rss, out = run(gb, root)
        built = len(built_nodes(out))
        print(f"full build: graphbuild {t:.2f} s ({built} built, peak RSS {rss / 1024:.1f} MB)",
              end="")
        if built != nodes:
            sys.exit(f"\ngraphbuild built {built} nodes, expected {nodes}")
        t, _, out = run(ninja, root)
        print(f", ninja {t:.2f} s ({ninja_steps(out)} steps)")

        gb_times, gb_rss, ninja_times = [], [], []
        for i in range(runs + 1):
            tg, rss, out = run(gb, root)
            if built_nodes(out):
                sys.exit(f"graphbuild no-op run rebuilt {built_nodes(out)[:5]}…")
            tn, _, nout = run(ninja, root)
            if "no work to do" not in nout:
                sys.exit(f"ninja no-op run did work:\n{nout[-500:]}")
            if i == 0:
                print(f"warm-up no-op: graphbuild {tg:.3f} s (peak RSS {rss / 1024:.1f} MB), "
                      f"ninja {tn:.3f} s")
                continue
            gb_times.append(tg)
            gb_rss.append(rss)
            ninja_times.append(tn)
        mg, mn = statistics.median(gb_times), statistics.median(ninja_times)
        peak = max(gb_rss) / 1024
        ratio = mg / mn
        print(f"no-op, {runs} runs: graphbuild median {mg:.3f} s (min {min(gb_times):.3f}, "
              f"max {max(gb_times):.3f}); ninja median {mn:.3f} s (min {min(ninja_times):.3f}, "
              f"max {max(ninja_times):.3f})")
        met_ratio, met_rss = ratio <= 10, peak <= 150
        ok &= met_ratio and met_rss
        print(f"no-op ratio graphbuild/ninja = {ratio:.1f}x (target <= 10x): "
              f"{'MET' if met_ratio else 'NOT MET'}")
        print(f"graphbuild peak RSS (no-op) = {peak:.1f} MB (target <= 150 MB): "
              f"{'MET' if met_rss else 'NOT MET'}")

        # Incremental: edit one source file of one package.
        pkg = f"pkgs/p{packages // 2:04d}"
        victim = root / pkg / "src" / "f07.c"
        with open(victim, "a") as fh:
            fh.write("/* edited */\n")
        expected = sorted(f"//{pkg}:bin[{p}]" for p in PLATFORMS)
        t, _, out = run(gb, root)
        got = built_nodes(out)
        tn, _, nout = run(ninja, root)
        exact = got == expected
        ok &= exact
        print(f"edit {pkg}/src/f07.c: graphbuild rebuilt {len(got)} node(s) {got} in {t:.3f} s; "
              f"ninja ran {ninja_steps(nout)} step(s) in {tn:.3f} s")
        print(f"rebuilds exactly that package's {len(expected)} nodes: "
              f"{'MET' if exact else 'NOT MET'}")

        # Informational: a pure touch (same bytes, new mtime).
        os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
        t, _, out = run(gb, root)
        got = built_nodes(out)
        tn, _, nout = run(ninja, root)
        print(f"touch only (same content) {pkg}/src/f07.c: graphbuild rebuilt {len(got)} node(s) "
              f"in {t:.3f} s (action keys are content hashes); ninja ran {ninja_steps(nout)} "
              f"step(s) (mtime-based)")
    finally:
        print(f"at the end: {machine_line()}")
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
