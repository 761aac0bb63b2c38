"""Cold-build benchmark: graphbuild's native backend vs buildah on a COPY-only Dockerfile.

Run (from the repository root, with graphbuild installed, as root for buildah):

    python benchmarks/cold_build.py            # ~100 MB context: 400 files, 3 rounds
    python benchmarks/cold_build.py --quick    # ~10 MB context: 40 files, 1 round

What it does (issue 3, "Performance / Cold build against buildah"):

* generates, from a fixed seed, a context of N files (half text, half random bytes, ~250 KB
  each on average) in four directories, and a Dockerfile `FROM scratch` + one `COPY` per
  directory (four layers);
* graphbuild: a workspace whose package `app` holds that context, one `image` target over
  linux/amd64 + linux/arm64 tagged `bench/cold:v1`; `graphbuild run //app:img` from a fresh cache
  (the OCI layout is `<ws>/.graphbuild/oci`);
* buildah (Debian's, rootful, `--storage-driver vfs --isolation chroot`, storage in a fresh
  temp dir through `--root`/`--runroot`): `buildah bud --platform linux/amd64,linux/arm64
  --manifest X` then `buildah manifest push --all X oci:DIR`;
* the single-pass limit: `tar -cf - -C <context> . | gzip -6 | sha256sum`, once over the files;
* rounds interleaved (graphbuild, buildah, tar|gzip), each from fresh state; prints the medians,
  the ratio graphbuild/buildah (target <= 0.5), the layer bytes of each (the layers of one
  platform's manifest, and the unique layer blobs in the layout) with their ratio (target <= 1.1),
  and graphbuild's peak RSS (target <= 150 MB; ru_maxrss from os.wait4, what `/usr/bin/time -v`
  calls "Maximum resident set size").

For information, it also times graphbuild's own `write_layers_parallel` (in-process) over the
same four layers, at the engine's gzip level (`graphbuild.oci.layers.COMPRESS_LEVEL`) or at each
of --levels. With --gb-levels, each round also runs the whole graphbuild build once per listed
gzip level (the level set in the graphbuild process: `graphbuild.oci.layers.COMPRESS_LEVEL = N`
before the CLI runs), to compare levels end to end.

Options: --files N, --size-mb M, --rounds R, --jobs J, --levels L1,L2 (gzip levels for the
informational parallel-layer runs), --gb-levels L1,L2 (extra end-to-end graphbuild runs at those
levels), --profile FILE (one extra graphbuild run under cProfile, stats written to FILE), --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CPU, graphbuild_cmd, graphbuild_where, machine_line, run

PLATFORMS = ("linux/amd64", "linux/arm64")
DIRS = ("text-a", "text-b", "bin-a", "bin-b")
SEED = 20240601
WORDS = ("the", "of", "and", "to", "in", "is", "for", "on", "that", "with", "as", "by", "this",
         "are", "from", "be", "or", "at", "an", "it", "not", "which", "func", "return", "if",
         "else", "var", "const", "import", "package", "struct", "interface", "string", "int",
         "error", "nil", "true", "false", "self", "def", "class", "lambda", "yield", "await",
         "async", "while", "break", "continue", "switch", "case", "default", "config", "value",
         "key", "name", "path", "file", "data", "buffer", "index", "count", "result", "status")


def generate(ctx: Path, files: int, total_bytes: int) -> int:
    """Half text, half random files of sizes drawn around total/files; returns the bytes."""
    rng = random.Random(SEED)
    mean = total_bytes // files
    written = 0
    for i in range(files):
        is_text = i % 2 == 0
        d = DIRS[(0 if is_text else 2) + (i // 2) % 2]
        size = max(1024, int(rng.uniform(0.25, 1.75) * mean))
        path = ctx / d / f"f{i:04d}.{'txt' if is_text else 'bin'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_text:
            out: list[str] = []
            n = 0
            while n < size:
                words = rng.choices(WORDS, k=rng.randint(4, 14))
                line = " ".join(words) + f" {rng.randint(0, 99999)}\n"
                out.append(line)
                n += len(line)
            data = "".join(out).encode()[:size]
        else:
            data = rng.randbytes(size)
        path.write_bytes(data)
        written += len(data)
    return written


def dockerfile() -> str:
    return "FROM scratch\n" + "".join(f"COPY {d}/ /data/{d}/\n" for d in DIRS)


def graphbuild_at_level(level: int) -> list[str]:
    """The graphbuild CLI with its layer gzip level set to ``level`` in-process."""
    code = ("import sys, graphbuild.oci.layers as layers; "
            f"layers.COMPRESS_LEVEL = {level}; sys.argv[0] = 'graphbuild'; "
            "from graphbuild.cli import entry; entry()")
    return [sys.executable, "-c", code]


def engine_level() -> int:
    from graphbuild.oci.layers import COMPRESS_LEVEL

    return COMPRESS_LEVEL




def layout_layers(layout: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(layers of each platform's manifest summed, by platform), and the unique layer blobs
    (digest -> size) reachable from the layout's index.json."""
    def blob(digest: str) -> dict:
        return json.loads((layout / "blobs" / digest.replace(":", "/")).read_text())

    per_platform: dict[str, int] = {}
    unique: dict[str, int] = {}

    def walk(desc: dict) -> None:
        mt = desc.get("mediaType", "")
        if "index" in mt or "manifest.list" in mt:
            for child in blob(desc["digest"])["manifests"]:
                walk(child)
            return
        manifest = blob(desc["digest"])
        plat = desc.get("platform") or {}
        name = "/".join(x for x in (plat.get("os"), plat.get("architecture"),
                                    plat.get("variant")) if x) or desc["digest"][:19]
        per_platform[name] = sum(layer["size"] for layer in manifest["layers"])
        for layer in manifest["layers"]:
            unique[layer["digest"]] = layer["size"]

    for desc in json.loads((layout / "index.json").read_text())["manifests"]:
        walk(desc)
    return per_platform, unique


def parallel_layers(ctx: Path, tmp: Path, workers: int, level: int
                    ) -> tuple[float, float, int]:
    """Wall time and bytes of graphbuild's own write_layers_parallel over the same four layers
    (in-process): what compressing a stage's independent COPY layers at once would give."""
    from graphbuild.oci.layers import LayerEntry, write_layers_parallel

    jobs = [[LayerEntry(f"data/{d}/{f.name}", source=f) for f in sorted((ctx / d).iterdir())]
            for d in DIRS]
    tmp.mkdir(parents=True, exist_ok=True)
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    results = write_layers_parallel(jobs, tmp, max_workers=workers, compress_level=level)
    elapsed = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime
    for _, path in results:
        path.unlink()
    return elapsed, cpu, sum(r.size for r, _ in results)


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 files, ~10 MB, 1 round")
    ap.add_argument("--files", type=int)
    ap.add_argument("--size-mb", type=float)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--profile", help="one extra graphbuild run under cProfile, stats to FILE")
    ap.add_argument("--levels", help="gzip levels for the informational parallel-layer runs "
                    "(comma-separated; default the engine's)")
    ap.add_argument("--gb-levels", help="also run the whole graphbuild build at each of these "
                    "gzip levels in every round (comma-separated)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    files = args.files or (40 if args.quick else 400)
    size = int((args.size_mb or (10 if args.quick else 100)) * 1e6)
    rounds = args.rounds or (1 if args.quick else 3)
    for tool in ("buildah", "tar", "gzip", "sha256sum"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")

    print(machine_line())
    print(graphbuild_where())
    print(f"graphbuild layer gzip level: {engine_level()} (graphbuild.oci.layers.COMPRESS_LEVEL)")
    version = subprocess.run(["buildah", "--version"], capture_output=True, text=True, check=False)
    print(f"buildah: {version.stdout.strip()}")
    top = Path(tempfile.mkdtemp(prefix="gb-bench-cold-"))
    ok = True
    try:
        ws = top / "ws"
        ctx = ws / "app"
        ctx.mkdir(parents=True)
        t0 = time.perf_counter()
        total = generate(ctx, files, size)
        (ctx / "Dockerfile").write_text(dockerfile())
        (ws / "WORKSPACE.yaml").write_text("cache_dir: .graphbuild\n")
        (ws / "BUILD.yaml").write_text("")
        # BUILD.yaml in the context would be a context file for buildah too; it is not COPYed.
        (ctx / "BUILD.yaml").write_text(
            "img:\n  rule: image\n"
            f"  platforms: [{', '.join(PLATFORMS)}]\n"
            "  tags: [\"bench/cold:v1\"]\n")
        print(f"context: {files} files, {mb(total)} ({len(DIRS)} COPY layers), generated in "
              f"{time.perf_counter() - t0:.1f} s; Dockerfile:\n  "
              + dockerfile().strip().replace("\n", "\n  "))

        jobs = ["-j", str(args.jobs)] if args.jobs else []
        gb = [*graphbuild_cmd(), "run", "//app:img", *jobs, "--output", "plain"]
        bah_root = top / "buildah"
        bah_oci = top / "buildah-oci"
        common = ["--root", str(bah_root / "root"), "--runroot", str(bah_root / "run"),
                  "--storage-driver", "vfs"]
        bud = ["buildah", *common, "bud", "--isolation", "chroot",
               "--platform", ",".join(PLATFORMS), "--manifest", "bench-cold", "-f",
               str(ctx / "Dockerfile"), str(ctx)]
        push = ["buildah", *common, "manifest", "push", "--all", "bench-cold",
                f"oci:{bah_oci}:bench-cold"]
        single = f"tar -cf - -C {ctx} {' '.join(DIRS)} | gzip -6 | sha256sum"
        print("commands:")
        print(f"  graphbuild: (cd {ws} && rm -rf .graphbuild && {' '.join(gb)})")
        print(f"  buildah:    {' '.join(bud)}\n              {' '.join(push)}")
        print(f"  single pass: {single}")

        gb_levels = [int(x) for x in args.gb_levels.split(",")] if args.gb_levels else []
        rest = gb[len(graphbuild_cmd()):]
        by_level: dict[int, list[tuple[float, float, int, int]]] = {lv: [] for lv in gb_levels}
        gb_t, gb_rss, bah_t, bud_t, push_t, tar_t = [], [], [], [], [], []
        for r in range(rounds):
            for level in gb_levels:
                shutil.rmtree(ws / ".graphbuild", ignore_errors=True)
                t, rss, _ = run([*graphbuild_at_level(level), *rest], ws)
                per_platform, _ = layout_layers(ws / ".graphbuild" / "oci")
                by_level[level].append((t, CPU["last"], rss, max(per_platform.values())))
                print(f"round {r + 1}: graphbuild at gzip level {level}: {t:.2f} s "
                      f"(CPU {CPU['last']:.2f} s, peak RSS {rss / 1024:.0f} MB), "
                      f"{max(per_platform.values()):,} layer bytes per platform")
            shutil.rmtree(ws / ".graphbuild", ignore_errors=True)
            t, rss, _ = run(gb, ws)
            cg = CPU["last"]
            gb_t.append(t)
            gb_rss.append(rss)
            gp, gu = layout_layers(ws / ".graphbuild" / "oci")

            subprocess.run(["buildah", *common, "rm", "--all"], capture_output=True, check=False)
            shutil.rmtree(bah_root, ignore_errors=True)
            shutil.rmtree(bah_oci, ignore_errors=True)
            tb, _, _ = run(bud)
            cb = CPU["last"]
            tp, _, _ = run(push)
            cb += CPU["last"]
            bud_t.append(tb)
            push_t.append(tp)
            bah_t.append(tb + tp)

            ts, _, _ = run(single, shell=True)
            cs = CPU["last"]
            tar_t.append(ts)
            print(f"round {r + 1} (load {os.getloadavg()[0]:.2f}): graphbuild {t:.2f} s "
                  f"(CPU {cg:.2f} s, peak RSS {rss / 1024:.0f} MB); buildah {tb + tp:.2f} s "
                  f"(bud {tb:.2f} + manifest push {tp:.2f}; CPU {cb:.2f} s); "
                  f"tar|gzip|sha256sum {ts:.2f} s (CPU {cs:.2f} s)")

        g, b, s = (statistics.median(x) for x in (gb_t, bah_t, tar_t))
        peak = max(gb_rss) / 1024
        ratio = g / b
        print(f"wall time (median of {rounds}): graphbuild {g:.2f} s, buildah {b:.2f} s "
              f"(bud {statistics.median(bud_t):.2f} + push {statistics.median(push_t):.2f}), "
              f"single pass {s:.2f} s")
        met = ratio <= 0.5
        ok &= met
        print(f"wall-time ratio graphbuild/buildah = {ratio:.3f} (target <= 0.5): "
              f"{'MET' if met else 'NOT MET'}; graphbuild/single pass = {g / s:.2f}")

        bp, bu = layout_layers(bah_oci)
        g_one, b_one = max(gp.values()), max(bp.values())
        print(f"layer bytes per platform: graphbuild {gp}, buildah {bp}")
        print(f"unique layer blobs in the layout: graphbuild {len(gu)} blobs, "
              f"{mb(sum(gu.values()))}; "
              f"buildah {len(bu)} blobs, {mb(sum(bu.values()))}")
        lratio = g_one / b_one
        met = lratio <= 1.1
        ok &= met
        print(f"layer-bytes ratio graphbuild/buildah (one platform's layers) = {lratio:.3f} "
              f"(target <= 1.1): {'MET' if met else 'NOT MET'}")
        met = peak <= 150
        ok &= met
        print(f"graphbuild peak RSS = {peak:.1f} MB (target <= 150 MB): "
              f"{'MET' if met else 'NOT MET'}")

        for level, runs in by_level.items():
            lt = statistics.median(x[0] for x in runs)
            lc = statistics.median(x[1] for x in runs)
            print(f"graphbuild at gzip level {level} (median of {rounds}): {lt:.2f} s "
                  f"(CPU {lc:.2f} s), ratio to buildah {lt / b:.3f}; layer bytes per platform "
                  f"{runs[-1][3]:,} = {runs[-1][3] / b_one:.3f} x buildah's; peak RSS "
                  f"{max(x[2] for x in runs) / 1024:.1f} MB")

        # Informational: the engine's layer writer with the four layers in parallel.
        workers = args.jobs or os.cpu_count() or 1
        levels = [int(x) for x in args.levels.split(",")] if args.levels else [engine_level()]
        for level in levels:
            tp, cpu, nbytes = parallel_layers(ctx, top / "parallel", workers, level)
            print(f"informational: graphbuild.oci.layers.write_layers_parallel over the "
                  f"{len(DIRS)} layers, {workers} workers, gzip level {level} (in-process): "
                  f"{tp:.2f} s (CPU {cpu:.2f} s), {mb(nbytes)} ({nbytes / b_one:.3f} x buildah's layer bytes)")

        if args.profile:
            shutil.rmtree(ws / ".graphbuild", ignore_errors=True)
            prof = Path(args.profile).resolve()
            t, _, _ = run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "graphbuild",
                           *gb[len(graphbuild_cmd()):]], ws)
            print(f"profiled run: {t:.2f} s, stats in {prof}")
    finally:
        subprocess.run(["buildah", "--root", str(top / "buildah" / "root"), "--runroot",
                        str(top / "buildah" / "run"), "--storage-driver", "vfs", "rm", "--all"],
                       capture_output=True, check=False)
        if args.keep:
            print(f"kept: {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
