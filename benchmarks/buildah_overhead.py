"""Overhead of graphbuild's buildah backend over a plain `buildah bud` (issue 5, target <= 10%).

Run (from the repository root, graphbuild installed, as root; needs buildah and busybox-static):

    python benchmarks/buildah_overhead.py            # ~32 MB of sources, 3 rounds
    python benchmarks/buildah_overhead.py --quick    # ~4 MB, 1 round

The same Dockerfile, context and platforms (linux/amd64 + linux/arm64) both ways:

    FROM scratch
    COPY rootfs/ /            # Debian's static busybox and 5 applet links (no network here)
    COPY src/ /src/           # N generated files, half text, half random
    RUN mkdir /out && cd /src && sha256sum * > /out/sums && cat * > /out/all && gzip -1 /out/all

* graphbuild: an `image` target with `backend: buildah` over both platforms, tagged, from a
  fresh cache (so also a fresh buildah storage): `graphbuild run //app:img`. That is Python
  start-up, loading and analysis, one `buildah bud` per platform (run in parallel), the import
  of each result into the store (verify every blob, gzip the new layer) and the index.
* plain: `buildah bud --platform linux/amd64,linux/arm64 --manifest bench` with the same
  storage flags (vfs, chroot), `--layers=false` and `--timestamp 0`, from a fresh storage.
  For reference, also `buildah manifest push --all bench oci:DIR`, which is what it takes plain
  buildah to produce an OCI image on disk, as graphbuild does.
* plain, parallel: buildah 1.28 builds the platforms of one `bud` one after the other, while
  graphbuild runs one `bud` per platform at once. To separate that from graphbuild's own cost,
  also one `buildah bud --platform P --tag bench-P` per platform, started together (fresh
  storage): graphbuild / this is the strict overhead.

Both binaries run the same busybox for arm64 (the arm64 "base" holds the host's binary), so no
emulator is involved and RUN costs the same on both platforms. Rounds alternate; medians are
printed with the ratio graphbuild / plain bud.

Options: --files N, --size-mb M, --rounds R, --keep.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import graphbuild_where, machine_line

PLATFORMS = ("linux/amd64", "linux/arm64")
SEED = 20240602
# Only the applets the RUN needs: the engine hashes each symlinked input by its target's content,
# and 290 links to busybox would add ~0.5 s of input hashing that is no part of the backend.
APPLETS = ("sh", "mkdir", "sha256sum", "cat", "gzip")
DOCKERFILE = """FROM scratch
COPY rootfs/ /
COPY src/ /src/
RUN mkdir /out && cd /src && sha256sum * > /out/sums && cat * > /out/all && gzip -1 /out/all
"""


def generate(ctx: Path, files: int, total: int, busybox: str) -> None:
    bin_dir = ctx / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy(busybox, bin_dir / "busybox")
    for applet in APPLETS:
        (bin_dir / applet).symlink_to("busybox")
    rng = random.Random(SEED)
    src = ctx / "src"
    src.mkdir()
    for i in range(files):
        size = max(1024, int(rng.uniform(0.5, 1.5) * total / files))
        if i % 2:
            data = rng.randbytes(size)
        else:
            words = [rng.choice(("alpha", "beta", "gamma", "delta", str(i))) for _ in range(size // 6)]
            data = " ".join(words).encode()[:size]
        (src / f"f{i:04d}").write_bytes(data)
    (ctx / "Dockerfile").write_text(DOCKERFILE)


def timed(argv: list[str], cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                 f"{proc.stderr[-3000:]}")
    return elapsed


def timed_together(argvs: list[list[str]]) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for a in argvs]
    outs = [p.communicate()[0] for p in procs]
    elapsed = time.perf_counter() - t0
    for argv, proc, out in zip(argvs, procs, outs):
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{out[-3000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~4 MB of sources, 1 round")
    ap.add_argument("--files", type=int)
    ap.add_argument("--size-mb", type=float)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    files = args.files or (20 if args.quick else 64)
    size = int((args.size_mb or (4 if args.quick else 32)) * 1e6)
    rounds = args.rounds or (1 if args.quick else 3)
    busybox = shutil.which("busybox")
    if not shutil.which("buildah") or not busybox:
        sys.exit("needs buildah and busybox-static (apt-get install buildah busybox-static)")

    version = subprocess.run(["buildah", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    print(machine_line())
    print(graphbuild_where())
    print(version)
    top = Path(tempfile.mkdtemp(prefix="gb-bench-buildah-"))
    try:
        ws = top / "ws"
        ctx = ws / "app"
        ctx.mkdir(parents=True)
        generate(ctx, files, size, busybox)
        (ws / "WORKSPACE.yaml").write_text("")
        (ctx / "BUILD.yaml").write_text(
            "img:\n  rule: image\n  backend: buildah\n"
            f"  platforms: [{', '.join(PLATFORMS)}]\n  tags: [\"bench/buildah:v1\"]\n")
        (ctx / ".dockerignore").write_text("BUILD.yaml\n")
        print(f"context: busybox rootfs + {files} files, {size / 1e6:.0f} MB; Dockerfile:\n  "
              + DOCKERFILE.strip().replace("\n", "\n  "))

        exe = shutil.which("graphbuild")
        gb = ([exe] if exe else [sys.executable, "-m", "graphbuild"]) + [
            "run", "//app:img", "--output", "plain"]
        root = top / "plain"
        common = ["--root", str(root / "root"), "--runroot", str(root / "run"),
                  "--storage-driver", "vfs"]
        bud = ["buildah", *common, "bud", "--isolation", "chroot", "--layers=false",
               "--timestamp", "0", "--platform", ",".join(PLATFORMS), "--manifest", "bench",
               "-f", str(ctx / "Dockerfile"), str(ctx)]
        push = ["buildah", *common, "manifest", "push", "--all", "bench",
                f"oci:{top / 'plain-oci'}:bench"]
        print("commands:")
        print(f"  graphbuild: (cd {ws} && rm -rf .graphbuild && {' '.join(gb)})")
        print(f"  plain:      {' '.join(bud)}")
        print(f"  reference:  {' '.join(push)}")

        per_platform = [
            [*bud[:bud.index("--platform")], "--platform", plat, "--tag",
             "bench-" + plat.replace("/", "-"), "-f", str(ctx / "Dockerfile"), str(ctx)]
            for plat in PLATFORMS]
        print(f"  parallel:   {' & '.join(' '.join(a) for a in per_platform)}")

        gb_t, bud_t, push_t, par_t = [], [], [], []
        for r in range(rounds):
            shutil.rmtree(ws / ".graphbuild", ignore_errors=True)
            gb_t.append(timed(gb, ws))
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(top / "plain-oci", ignore_errors=True)
            bud_t.append(timed(bud))
            push_t.append(timed(push))
            shutil.rmtree(root, ignore_errors=True)
            par_t.append(timed_together(per_platform))
            print(f"round {r + 1}: graphbuild {gb_t[-1]:.2f} s; plain bud {bud_t[-1]:.2f} s "
                  f"(+ manifest push to oci: {push_t[-1]:.2f} s); plain, one bud per platform "
                  f"in parallel {par_t[-1]:.2f} s")
        g, b, p, q = (statistics.median(x) for x in (gb_t, bud_t, push_t, par_t))
        ratio = g / b
        met = ratio <= 1.10
        print(f"median of {rounds}: graphbuild {g:.2f} s, plain bud {b:.2f} s, plain bud + push "
              f"{b + p:.2f} s, plain parallel buds {q:.2f} s")
        print(f"overhead graphbuild / plain bud = {ratio:.3f} ({(ratio - 1) * 100:+.1f}%, target "
              f"<= +10%): {'MET' if met else 'NOT MET'}; graphbuild / (bud + push) = "
              f"{g / (b + p):.3f}; graphbuild / parallel buds = {g / q:.3f} "
              f"({(g / q - 1) * 100:+.1f}%)")
        return 0 if met else 1
    finally:
        for r in (top / "plain", ws / ".graphbuild" / "buildah"):
            shutil.rmtree(r, ignore_errors=True)
        if args.keep:
            print(f"kept: {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
