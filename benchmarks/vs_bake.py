"""The buildx path against `docker buildx bake`, on the same BuildKit: cold, warm no-op, one
edited file.

Run (from the repository root, with graphbuild installed and buildkitd, buildctl, runc and
docker-buildx on PATH; arm64 RUN needs a QEMU binfmt handler and a static arm64 busybox at
tests/.tools/arm64/bin/busybox, as the tests use):

    python benchmarks/vs_bake.py                  # 40 services x 2 platforms, 3 repetitions
    python benchmarks/vs_bake.py --services 4 --reps 1

What it does:

* generates one tree that is both a graphbuild workspace and a bake project: a base image
  (`FROM scratch`, a static busybox per architecture) and N services `FROM base`, each copying
  20 source files (~200 KB, deterministic pseudo-random) and running one small `RUN` (a
  checksum of the sources and `uname -m`; arm64 runs under QEMU), for linux/amd64 and
  linux/arm64;
* graphbuild: every image `backend: buildx`, both platforms routed to one remote-driver builder
  (WORKSPACE.yaml `builders`), services take the base as a named context (`//base`); bake: the
  same Dockerfiles in a `docker-bake.hcl`, services take `contexts = { base = "target:base" }`,
  each exported as an OCI archive (`type=oci`); graphbuild's output is its OCI store. Both
  build the base as part of the run;
* one buildkitd (OCI worker, native snapshotter) serves both;
* cold: BuildKit's cache pruned (`buildctl prune --all`) and graphbuild's cache directory and
  bake's archives removed before each side's run; warm no-op: nothing changed; one edit: one
  source file of one service changed (new content each repetition).

Prints each side's wall time and client CPU seconds per repetition, and the graphbuild/bake
ratio of the medians against the targets (cold <= 1.0, no-op <= 0.05, one edit <= 0.5).
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
from pathlib import Path

from _common import CPU, graphbuild_cmd, graphbuild_where, machine_line, run
from ci_cache import BuildKit, have_buildkit

REPO = Path(__file__).resolve().parent.parent
PLATFORMS = ("linux/amd64", "linux/arm64")
BUSYBOX = {"amd64": Path("/usr/bin/busybox"), "arm64": REPO / "tests/.tools/arm64/bin/busybox"}
FILES, FILE_BYTES = 20, 10 * 1024
BUILDER = "vsbake"
TARGETS = {"cold": 1.0, "no-op": 0.05, "one edit": 0.5}

BASE = """FROM scratch
ARG TARGETARCH
COPY --chmod=755 busybox-${TARGETARCH} /bin/busybox
"""
SERVICE = """FROM base
COPY src/ /app/src/
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox md5sum /app/src/* > /app/sum; /bin/busybox uname -m > /app/arch"]
"""


def generate(root: Path, services: int) -> None:
    rng = random.Random(11)
    plats = ", ".join(PLATFORMS)
    builders = ", ".join(f"{p}: {BUILDER}" for p in PLATFORMS)
    write(root / "WORKSPACE.yaml", f"default_platforms: [{plats}]\nbuilders: {{{builders}}}\n")
    write(root / "base/BUILD.yaml", "base:\n  rule: image\n  backend: buildx\n")
    write(root / "base/Dockerfile", BASE)
    for arch, path in BUSYBOX.items():
        shutil.copyfile(path, root / f"base/busybox-{arch}")
    for i in range(services):
        pkg = root / "services" / name(i)
        write(pkg / "BUILD.yaml", "svc:\n  rule: image\n  backend: buildx\n"
                                  "  contexts: {base: '//base'}\n")
        write(pkg / "Dockerfile", SERVICE)
        for f in range(FILES):
            (pkg / "src").mkdir(parents=True, exist_ok=True)
            (pkg / "src" / f"f{f:02d}.txt").write_bytes(rng.randbytes(FILE_BYTES))
    write(root / "docker-bake.hcl", bake_file(services))


def name(i: int) -> str:
    return f"svc-{i:02d}"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def bake_file(services: int) -> str:
    plats = ", ".join(f'"{p}"' for p in PLATFORMS)
    names = ", ".join(f'"{name(i)}"' for i in range(services))
    out = [f'group "default" {{\n  targets = [{names}]\n}}\n',
           f'target "base" {{\n  context = "base"\n  platforms = [{plats}]\n}}\n']
    for i in range(services):
        out.append(f'target "{name(i)}" {{\n  context = "services/{name(i)}"\n'
                   f'  contexts = {{ base = "target:base" }}\n  platforms = [{plats}]\n'
                   f'  output = ["type=oci,dest=bake-out/{name(i)}.tar"]\n}}\n')
    return "".join(out)


# -- the two sides ---------------------------------------------------------------------------

def graphbuild_run(root: Path, bk: BuildKit) -> tuple[float, float, dict]:
    """(wall s, client CPU s, counts) of `graphbuild run //...` against the builder."""
    env = ["env", f"DOCKER_CONFIG={bk.env['DOCKER_CONFIG']}"]
    elapsed, _, out = run([*env, *graphbuild_cmd(), "-C", str(root), "run", "//...",
                           "--output", "json"])
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    done = next(e for e in events if e["event"] == "build_finished")
    return elapsed, CPU["last"], done["counts"]


def bake_run(root: Path, bk: BuildKit) -> tuple[float, float]:
    env = ["env", f"DOCKER_CONFIG={bk.env['DOCKER_CONFIG']}"]
    elapsed, _, _ = run([*env, shutil.which("docker-buildx"), "bake", "--builder", bk.name,
                         "-f", "docker-bake.hcl", "--progress", "plain"], cwd=root)
    return elapsed, CPU["last"]


def prune(bk: BuildKit) -> None:
    subprocess.run([shutil.which("buildctl"), "--addr", f"unix://{bk.sock}", "prune", "--all"],
                   check=True, capture_output=True)


def forget_outputs(root: Path) -> None:
    shutil.rmtree(root / ".graphbuild", ignore_errors=True)
    shutil.rmtree(root / "bake-out", ignore_errors=True)


def edit(root: Path, rep: int) -> None:
    (root / "services" / name(0) / "src" / "f00.txt").write_bytes(
        random.Random(1000 + rep).randbytes(FILE_BYTES))


# -- measuring -------------------------------------------------------------------------------

def measure(root: Path, bk: BuildKit, reps: int) -> dict[str, dict[str, list[float]]]:
    figures: dict[str, dict[str, list[float]]] = {s: {"graphbuild": [], "bake": []}
                                                   for s in TARGETS}
    for rep in range(reps):
        forget_outputs(root)
        prune(bk)
        t, cpu, counts = graphbuild_run(root, bk)
        report(figures, "cold", "graphbuild", rep, t, cpu, counts)
        prune(bk)
        t, cpu = bake_run(root, bk)
        report(figures, "cold", "bake", rep, t, cpu)
        t, cpu, counts = graphbuild_run(root, bk)
        report(figures, "no-op", "graphbuild", rep, t, cpu, counts)
        t, cpu = bake_run(root, bk)
        report(figures, "no-op", "bake", rep, t, cpu)
        edit(root, rep)
        t, cpu, counts = graphbuild_run(root, bk)
        report(figures, "one edit", "graphbuild", rep, t, cpu, counts)
        t, cpu = bake_run(root, bk)
        report(figures, "one edit", "bake", rep, t, cpu)
    return figures


def report(figures: dict, scenario: str, side: str, rep: int, t: float, cpu: float,
           counts: dict | None = None) -> None:
    figures[scenario][side].append(t)
    built = f", built {counts['built']}, cached {counts['cached']}" if counts else ""
    print(f"  rep {rep + 1} {scenario:8} {side:10}: {t:7.2f} s wall, {cpu:6.2f} s client CPU"
          f"{built}", flush=True)


def summarize(figures: dict) -> None:
    print("\nratio graphbuild / bake (medians):")
    for scenario, target in TARGETS.items():
        gb = statistics.median(figures[scenario]["graphbuild"])
        bake = statistics.median(figures[scenario]["bake"])
        verdict = "met" if gb / bake <= target else "missed"
        print(f"  {scenario:8}: {gb:7.2f} s / {bake:7.2f} s = {gb / bake:.3f} "
              f"(target <= {target}: {verdict})")


def missing() -> str | None:
    why = have_buildkit()
    if why:
        return why
    absent = [str(p) for p in BUSYBOX.values() if not p.is_file()]
    return f"no static busybox at {', '.join(absent)}" if absent else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="generate the tree here and keep it")
    args = ap.parse_args()
    print(machine_line())
    why = missing()
    if why:
        print(f"left out: {why}")
        return
    print(graphbuild_where())
    with tempfile.TemporaryDirectory(prefix="gb-vs-bake-") as tmp:
        root = args.keep or Path(tmp) / "tree"
        generate(root, args.services)
        print(f"{args.services} services x {len(PLATFORMS)} platforms, {FILES} files of "
              f"{FILE_BYTES // 1024} KB each, in {root}")
        bk = BuildKit(Path(tmp), BUILDER, "127.0.0.1:1")
        try:
            summarize(measure(root, bk, args.reps))
        finally:
            bk.stop()
    print(machine_line())


if __name__ == "__main__":
    sys.exit(main())
