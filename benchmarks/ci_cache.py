"""CI with the registry as a shared cache: a fresh runner (empty local cache, warm remote cache)
against the same repository's warm local no-op, one changed file, and `docker buildx bake` with
`--cache-from/--cache-to type=registry` on a fresh BuildKit.

Run (from the repository root, with graphbuild and docker-registry installed; the bake part
needs buildkitd, buildctl, runc and docker-buildx on PATH, else it is left out and says so):

    python benchmarks/ci_cache.py                    # 200 images x 2 platforms
    python benchmarks/ci_cache.py --images 20 --no-bake

What it does:

* generates a workspace: N `image` targets FROM scratch, each with ~100 KB of context (a random
  file), over linux/amd64 and linux/arm64, each tagged into a local `docker-registry`, and
  `remote_cache: oci://HOST/cache`;
* runner A (the "main" job): `run //... --push` (not timed: it fills the remote cache), then
  `run //...` again: the warm local no-op (best of 3);
* runner B, a fresh copy of the sources with an empty cache: `run //...`. Reports the nodes built
  (target 0), the layer blobs downloaded from the registry (target 0) and its wall time / A's
  (target <= 3);
* runner C, another fresh copy with one file changed: the nodes built (target: the two Image
  nodes of that target, and its index) and the bytes uploaded (only their new blobs);
* bake: the same images as a docker-bake.hcl (one target per image, both platforms,
  `cache-to type=registry,mode=max` and `cache-from` per target, output `type=cacheonly`), on
  buildkitd X (fills the registry cache), then timed on a fresh buildkitd Y: graphbuild's
  fresh-runner time / bake's (target <= 0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BuildKitd, graphbuild_cmd, graphbuild_where, machine_line, run
from push import Registry

PLATFORMS = ("linux/amd64", "linux/arm64")
CONTEXT_BYTES = 100 * 1024


def generate(root: Path, images: int, host: str) -> None:
    rng = random.Random(7)
    plats = ", ".join(PLATFORMS)
    (root / "WORKSPACE.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "WORKSPACE.yaml").write_text(
        f"default_platforms: [{plats}]\nremote_cache: oci://{host}/cache\n")
    for i in range(images):
        pkg = root / "services" / f"svc-{i:03d}"
        pkg.mkdir(parents=True)
        (pkg / "BUILD.yaml").write_text(
            f"image:\n  rule: image\n  tags: ['{host}/svc-{i:03d}:{{arch}}']\n")
        (pkg / "Dockerfile").write_text("FROM scratch\nCOPY data.bin app.txt /app/\n")
        (pkg / "data.bin").write_bytes(rng.randbytes(CONTEXT_BYTES))
        (pkg / "app.txt").write_text(f"service {i}\n")


def copy_sources(src: Path, dest: Path) -> None:
    """A fresh clone: the sources, no .graphbuild. Written out to the disk before the timed
    run starts, so the run is not charged the copy's writeback (20 MB here)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".graphbuild"))
    os.sync()


def gb(ws: Path, *args: str, home: Path | None = None) -> tuple[float, list[dict]]:
    """A run in ``ws``; ``home``: a HOME of its own (a fresh runner has no user cache)."""
    env = ["env", f"HOME={home}"] if home else []
    elapsed, _, out = run([*env, *graphbuild_cmd(), "-C", str(ws), "run", *args,
                           "--output", "json"])
    return elapsed, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def built(events: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        if e["event"] == "action_finished" and e["status"] == "built":
            out[e["mnemonic"]] = out.get(e["mnemonic"], 0) + 1
    return out


def layer_digests(ws: Path) -> set[str]:
    out = set()
    for blob in (ws / ".graphbuild" / "oci" / "blobs" / "sha256").iterdir():
        try:
            doc = json.loads(blob.read_bytes())
        except ValueError:
            continue
        if isinstance(doc, dict) and "layers" in doc:
            out.update(layer["digest"] for layer in doc["layers"])
    return out


def blob_gets(registry: Registry, since: int) -> list[str]:
    return [path.split("/blobs/")[1] for verb, path, status in registry.requests()[since:]
            if verb == "GET" and "/blobs/sha256:" in path]


def remote_stats(ws: Path) -> dict:
    return json.loads((ws / ".graphbuild" / "remote-cache-stats.json").read_text())


# -- bake ------------------------------------------------------------------------------------

def bake_file(root: Path, images: int, host: str) -> Path:
    targets = []
    for i in range(images):
        name = f"svc-{i:03d}"
        ref = f"{host}/bakecache:{name}"
        targets.append(
            f'target "{name}" {{\n  context = "services/{name}"\n'
            f'  platforms = ["{PLATFORMS[0]}", "{PLATFORMS[1]}"]\n'
            f'  cache-from = ["type=registry,ref={ref}"]\n'
            f'  cache-to = ["type=registry,ref={ref},mode=max"]\n'
            f'  output = ["type=cacheonly"]\n}}\n')
    names = ", ".join(f'"svc-{i:03d}"' for i in range(images))
    path = root / "docker-bake.hcl"
    path.write_text(f'group "default" {{\n  targets = [{names}]\n}}\n' + "".join(targets))
    return path


class BuildKit(BuildKitd):
    """A buildkitd that reaches the local registry over plain HTTP, and bake on it."""

    def __init__(self, workdir: Path, name: str, host: str) -> None:
        super().__init__(workdir / name, name,
                         f'[worker.oci]\n  gc = false\n[registry."{host}"]\n  http = true\n')
        self.start()

    def bake(self, root: Path) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run([shutil.which("docker-buildx"), "bake", "--builder", self.builder,
                               "-f", "docker-bake.hcl", "--progress", "plain"], cwd=root,
                              env=self.env(), capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"bake failed:\n{proc.stderr[-3000:]}")
        return elapsed


def have_buildkit() -> str | None:
    missing = [t for t in ("buildkitd", "buildctl", "runc", "docker-buildx") if not shutil.which(t)]
    return f"missing {', '.join(missing)}" if missing else None


# -- main ------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--no-bake", action="store_true")
    args = ap.parse_args()
    print(machine_line())
    print(graphbuild_where())
    with tempfile.TemporaryDirectory(prefix="gb-ci-cache-") as tmp:
        base = Path(tmp)
        registry = Registry(base / "registry").start()
        try:
            figures = measure(base, registry, args.images)
            if not args.no_bake:
                why = have_buildkit()
                if why:
                    print(f"bake: left out ({why})")
                else:
                    figures["bake"] = measure_bake(base, registry, args.images)
                    print(f"ratio graphbuild fresh runner / bake fresh BuildKit: "
                          f"{figures['fresh'] / figures['bake']:.3f} (target <= 0.1)")
        finally:
            registry.stop()
    print(machine_line())


def measure(base: Path, registry: Registry, images: int) -> dict:
    a = base / "runner-a"
    generate(a, images, registry.host)
    t, events = gb(a, "//...", "--push")
    print(f"runner A, first build and push ({images} images x 2 platforms): {t:.2f} s, built "
          f"{built(events)}")
    noops = sorted(gb(a, "//...")[0] for _ in range(3))
    noop = noops[0]
    print(f"runner A, warm local no-op (best of 3): {noop:.3f} s (median {noops[1]:.3f} s)")

    times = []
    layers = layer_digests(a)
    for n in range(3):  # three fresh runners, each with its own clone and HOME: the median
        b = base / f"runner-b{n}"
        copy_sources(a, b)
        since = len(registry.requests())
        t, events = gb(b, "//...", home=base / f"home-b{n}")
        times.append(t)
        got = [d for d in blob_gets(registry, since) if d in layers]
        stats = remote_stats(b)
        print(f"runner B{n}, fresh clone and HOME, warm remote cache: {t:.3f} s, built "
              f"{built(events) or 0}, {stats.get('hits', 0)} hits "
              f"({stats.get('pack_hits', 0)} from the pack), layer blobs downloaded: {len(got)}, "
              f"bytes downloaded (pack, manifests, configs): {stats.get('bytes_downloaded', 0)}")
    fresh = sorted(times)[1]
    print(f"ratio fresh runner (median) / warm local no-op: {fresh / noop:.2f} (target <= 3); "
          f"best / best {min(times) / noop:.2f}, median / median {fresh / noops[1]:.2f}")

    c = base / "runner-c"
    copy_sources(a, c)
    (c / "services" / "svc-007" / "app.txt").write_text("service 7, changed\n")
    t, events = gb(c, "//...", home=base / "home-c")
    stats = remote_stats(c)
    print(f"runner C, one file changed: {t:.3f} s, built {built(events)}, uploaded "
          f"{stats.get('bytes_uploaded', 0)} bytes in {stats.get('entries_written', 0)} entries, "
          f"and its scope's pack ({stats.get('pack_bytes_uploaded', 0)} bytes)")
    return {"fresh": fresh, "noop": noop}


def measure_bake(base: Path, registry: Registry, images: int) -> float:
    root = base / "runner-a"
    bake_file(root, images, registry.host)
    warm = BuildKit(base, "bk-warm", registry.host)
    try:
        t = warm.bake(root)
        print(f"bake, first build on BuildKit X (fills the registry cache): {t:.2f} s")
    finally:
        warm.stop()
    fresh = BuildKit(base, "bk-fresh", registry.host)
    try:
        t = fresh.bake(root)
        print(f"bake, no change, fresh BuildKit Y with --cache-from type=registry: {t:.2f} s")
    finally:
        fresh.stop()
    return t


if __name__ == "__main__":
    main()
