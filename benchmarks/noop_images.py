"""No-op benchmark for images: graphbuild vs ninja on a generated monorepo of image targets.

Run (from the repository root, with graphbuild installed):

    python benchmarks/noop_images.py            # 1,000 packages, 7 no-op runs
    python benchmarks/noop_images.py --quick    # 200 packages, 3 no-op runs (a smoke check)

What it does (issue 3, "Performance / No-op"):

* generates a workspace of N packages `pkgs/pNNNN`, each with 20 small source files under `src/`,
  a Dockerfile `FROM scratch` / `COPY src/ /app/`, an `image` target `img` over linux/amd64 and
  linux/arm64, and a `manifest` target `m` over it: per package 2 Image nodes, the image's Index
  node (a multi-platform image has one) and 1 Manifest node;
* writes the equivalent `build.ninja` over the same files: per package one edge per platform
  (`tar -cf $out $in`, the 20 files in, one tarball out) and a manifest edge over the two
  tarballs, so ninja stats the same 20,000 sources and keeps a comparable graph (3 edges per
  package);
* full-builds both, then measures no-op runs, interleaved: one warm-up run of each (reported) and
  then --runs measured runs; prints the medians, the ratio graphbuild/ninja (target <= 10) and
  graphbuild's peak RSS during the no-op (ru_maxrss of the graphbuild process from os.wait4);
* edits one source file of one package (appends a line) and lists, from the `action_finished`
  events of `--output json`, which nodes were built: the target is exactly that package's 2 Image
  nodes and its Manifest (its Index node is reported separately); ninja's step count for
  comparison; then, for information, what a pure `touch` (new mtime, same bytes) does.

Options: --packages N, --runs R, --jobs J, --profile FILE (one extra no-op run under cProfile,
stats written to FILE), --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import graphbuild_cmd, graphbuild_where, machine_line, run

SOURCES = 20
PLATFORMS = ("linux/amd64", "linux/arm64")
DOCKERFILE = "FROM scratch\nCOPY src/ /app/\n"


def generate(root: Path, packages: int) -> None:
    (root / "WORKSPACE.yaml").write_text("cache_dir: .graphbuild\n")
    ninja = ["rule tar", "  command = tar -cf $out $in", "",
             "rule manifest", "  command = cat $in | sha256sum > $out", ""]
    plats = ", ".join(PLATFORMS)
    for p in range(packages):
        pkg = f"pkgs/p{p:04d}"
        src = root / pkg / "src"
        src.mkdir(parents=True)
        for s in range(SOURCES):
            body = f"# {pkg} file {s}\nvalue = {p * SOURCES + s}\n" + "x" * (s * 13) + "\n"
            (src / f"f{s:02d}.txt").write_text(body)
        (root / pkg / "Dockerfile").write_text(DOCKERFILE)
        (root / pkg / "BUILD.yaml").write_text(
            "img:\n"
            "  rule: image\n"
            f"  platforms: [{plats}]\n"
            "m:\n"
            "  rule: manifest\n"
            "  images: [\":img\"]\n")
        ins = " ".join(f"{pkg}/src/f{s:02d}.txt" for s in range(SOURCES))
        outs = []
        for plat in PLATFORMS:
            out = f"ninja-out/{pkg}/{plat.replace('/', '-')}.tar"
            outs.append(out)
            ninja.append(f"build {out}: tar {ins} | {pkg}/Dockerfile")
        ninja.append(f"build ninja-out/{pkg}/manifest: manifest {' '.join(outs)}")
    (root / "build.ninja").write_text("\n".join(ninja) + "\n")


def finished(stdout: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))
            if e.get("event") == "action_finished"]


def built(stdout: str) -> list[tuple[str, str]]:
    """(mnemonic, node) of every node built (not cached)."""
    return sorted((e.get("mnemonic", e.get("rule")), e.get("node") or e["label"])
                  for e in finished(stdout) if e["status"] == "built")


def ninja_steps(stdout: str) -> int:
    return sum(1 for line in stdout.splitlines() if line.startswith("["))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 packages, 3 no-op runs")
    ap.add_argument("--packages", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--profile", help="one extra no-op run under cProfile, stats to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the generated workspace")
    args = ap.parse_args()
    packages = args.packages or (200 if args.quick else 1000)
    runs = args.runs or (3 if args.quick else 7)
    if not shutil.which("ninja"):
        sys.exit("ninja is not installed")
    gb_args = ["run", "//...", "-j", str(args.jobs), "--output", "json"]
    gb = [*graphbuild_cmd(), *gb_args]
    ninja = ["ninja", "-j", str(args.jobs)]

    print(machine_line())
    print(graphbuild_where())
    root = Path(tempfile.mkdtemp(prefix="gb-bench-noopimg-"))
    ok = True
    try:
        t0 = time.perf_counter()
        generate(root, packages)
        print(f"workspace {root}: {packages} packages, {packages * SOURCES} source files, "
              f"{packages * 4} graphbuild nodes (2 Image + Index + Manifest per package), "
              f"{packages * 3} ninja edges (generated in {time.perf_counter() - t0:.1f} s)")
        print(f"commands: (cd WS && {' '.join(gb)}) ; (cd WS && {' '.join(ninja)})")

        t, rss, out = run(gb, root)
        kinds: dict[str, int] = {}
        for mnemonic, _ in built(out):
            kinds[mnemonic] = kinds.get(mnemonic, 0) + 1
        print(f"full build: graphbuild {t:.2f} s (built {kinds}, peak RSS {rss / 1024:.1f} MB)",
              end="")
        tn, _, nout = run(ninja, root)
        print(f", ninja {tn:.2f} s ({ninja_steps(nout)} steps)")

        gb_times, gb_rss, ninja_times = [], [], []
        for i in range(runs + 1):
            tg, rss, out = run(gb, root)
            if built(out):
                reasons: dict[str, int] = {}
                for e in finished(out):
                    if e["status"] == "built":
                        reasons[e.get("reason", "?")] = reasons.get(e.get("reason", "?"), 0) + 1
                sys.exit(f"graphbuild no-op run {i + 1} rebuilt {len(built(out))} nodes, "
                         f"e.g. {built(out)[:3]}; reasons: {reasons}")
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
        ratio = mg / mn
        peak = max(gb_rss) / 1024
        print(f"no-op, {runs} runs: graphbuild median {mg:.3f} s (min {min(gb_times):.3f}, "
              f"max {max(gb_times):.3f}); ninja median {mn:.3f} s (min {min(ninja_times):.3f}, "
              f"max {max(ninja_times):.3f})")
        met = ratio <= 10
        ok &= met
        print(f"no-op ratio graphbuild/ninja = {ratio:.1f}x (target <= 10x): "
              f"{'MET' if met else 'NOT MET'}")
        print(f"graphbuild peak RSS (no-op) = {peak:.1f} MB")

        # Incremental: edit one source file of one package.
        pkg = f"pkgs/p{packages // 2:04d}"
        victim = root / pkg / "src" / "f07.txt"
        with open(victim, "a") as fh:
            fh.write("# edited\n")
        t, _, out = run(gb, root)
        got = built(out)
        tn, _, nout = run(ninja, root)
        images = sorted(("Image", f"//{pkg}:img[{p}]") for p in PLATFORMS)
        required = sorted([*images, ("Manifest", f"//{pkg}:m")])
        extra = [g for g in got if g not in required]
        missing = [r for r in required if r not in got]
        index_only = extra == [("Index", f"//{pkg}:img")]
        exact = not missing and (not extra or index_only)
        ok &= exact
        print(f"edit {pkg}/src/f07.txt: graphbuild built {len(got)} node(s) in {t:.3f} s: "
              + ", ".join(f"{m} {n}" for m, n in got)
              + f"; ninja ran {ninja_steps(nout)} step(s) in {tn:.3f} s")
        note = " plus the image's Index node" if index_only else ""
        print(f"rebuilds exactly that package's 2 Image nodes and its Manifest{note}: "
              f"{'MET' if exact else 'NOT MET'}"
              + (f" (missing {missing}, extra {extra})" if not exact else ""))

        # Informational: a pure touch (same bytes, new mtime).
        now = time.time_ns() + 10**9
        os.utime(victim, ns=(now, now))
        t, _, out = run(gb, root)
        tn, _, nout = run(ninja, root)
        print(f"touch only (same bytes) {pkg}/src/f07.txt: graphbuild built {len(built(out))} "
              f"node(s) in {t:.3f} s (keys are content digests); ninja ran {ninja_steps(nout)} "
              f"step(s) in {tn:.3f} s")

        if args.profile:
            prof = Path(args.profile).resolve()
            t, _, out = run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m",
                             "graphbuild", *gb_args], root)
            print(f"profiled no-op run: {t:.3f} s, stats in {prof}")
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
