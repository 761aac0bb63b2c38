"""Push benchmark: `graphbuild run --push` vs a loop of `skopeo copy --all`, to real registries.

Run (from the repository root, with graphbuild, skopeo and docker-registry installed):

    python benchmarks/push.py            # 60 images x 2 platforms, 20 MB base, 5 rounds
    python benchmarks/push.py --quick    # 10 images, 5 MB base, 1 round

What it does (issue 4, "Performance"):

* starts two fresh Debian `docker-registry` servers on free 127.0.0.1 ports (filesystem storage
  in a temp dir, access log on; the minimal config of tests/registry_fixtures.py): A for
  graphbuild, B for skopeo;
* generates a workspace: `//base:base`, an `image` FROM scratch COPYing one seeded random file of
  --base-mb MB, over linux/amd64 + linux/arm64; N packages `apps/app-NN`, each an `image`
  `FROM base` (through `contexts: {base: "//base"}`) COPYing two small files (its app layer),
  over the same two platforms, and a `manifest` `m` over it tagged `127.0.0.1:PORT_A/app-NN:v1`;
* builds it (`graphbuild run //...`, not timed in the comparison), then, in each of --rounds
  rounds, with both registries emptied first, times `graphbuild run //... --push` against
  registry A and a loop over the same N indexes of `skopeo copy --all --dest-tls-verify=false
  oci:<store>:<tag> docker://127.0.0.1:PORT_B/app-NN:v1` (the store's ref name is the
  manifest's tag; the destination repository is the same name on B). The order alternates from
  round to round: this machine's disk slows down over a minute of steady writes, and whichever
  side always ran second would pay for it. The verdict is on the median of the rounds' ratios;
* for information, pushes the same indexes with graphbuild's own `publish()` given one plan over
  all of them (in-process) into a third fresh registry: the push without the CLI, the graph and
  the per-node overhead (the push nodes of a run share a blob ledger, so they upload as one plan
  would);
* prints both wall times and the ratio graphbuild/skopeo (target <= 0.33), the CPU time of each
  side and of its registry (both compete for the same cores), and, from each registry's access
  log, how often the shared base layer was uploaded (a completed `PUT
  .../blobs/uploads/...?digest=<base>`), mounted (`POST ...?mount=<base>`, 201) and HEADed;
  the target is exactly one upload for graphbuild. Also the time of a no-op `graphbuild run //...`
  without --push (the build-side share of the push run) and of a second `--push` (nothing to do).

Options: --images N, --base-mb M, --rounds R, --jobs J, --profile FILE (the timed push runs under
cProfile instead, stats to FILE; the ratio then includes profiling overhead), --registry-dir DIR,
--keep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from _common import CPU, graphbuild_cmd, graphbuild_where, machine_line, run

PLATFORMS = ("linux/amd64", "linux/arm64")
SEED = 4242
_ACCESS_RE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) ')


class Registry:
    """A `docker-registry serve` process with a minimal config (no auth) and an access log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True)
        self.log_path = workdir / "registry.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> Registry:
        """Start on ``port`` (0: a free one), with empty storage and an empty access log."""
        binary = shutil.which("docker-registry") or sys.exit("docker-registry is not installed")
        shutil.rmtree(self.workdir / "data", ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
        for _ in range(3):
            self.port = port
            if not port:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    self.port = sock.getsockname()[1]
            config = self.workdir / "config.yml"
            config.write_text(json.dumps({  # JSON is YAML
                "version": 0.1,
                "log": {"level": "info", "accesslog": {"disabled": False}},
                "storage": {"filesystem": {"rootdirectory": str(self.workdir / "data")},
                            "delete": {"enabled": True},
                            "maintenance": {"uploadpurging": {"enabled": False}}},
                "http": {"addr": self.host, "secret": os.urandom(16).hex()},
            }))
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
            time.sleep(0.5)  # a port just given up may still be held for a moment
        sys.exit(f"docker-registry did not start:\n{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def requests(self) -> list[tuple[str, str, int]]:
        time.sleep(0.3)  # the registry logs a request just after answering it
        text = self.log_path.read_text(errors="replace")
        return [(m.group(1), m.group(2), int(m.group(3))) for m in _ACCESS_RE.finditer(text)]

    def blob_stats(self, digest: str) -> dict[str, int]:
        c: Counter = Counter()
        for verb, path, status in self.requests():
            if verb == "PUT" and "/blobs/uploads/" in path and f"digest={digest}" in \
                    path.replace("%3A", ":") and status // 100 == 2:
                c["uploads"] += 1
            elif verb == "POST" and f"mount={digest}" in path.replace("%3A", ":"):
                c["mounts" if status == 201 else "mount attempts refused"] += 1
            elif verb == "HEAD" and path.endswith(f"/blobs/{digest}"):
                c["HEADs"] += 1
            elif verb == "PATCH" and "/blobs/uploads/" in path:
                c["PATCH (any blob)"] += 1
        return dict(c)

    def request_count(self) -> int:
        return len(self.requests())

    def request_kinds(self) -> str:
        """Requests by method and kind (blob, upload, manifest by digest, tag), most first."""
        c: Counter = Counter()
        for verb, path, _ in self.requests():
            kind = ("upload" if "/blobs/uploads/" in path else "blob" if "/blobs/" in path
                    else "manifest" if "/manifests/sha256:" in path
                    else "tag" if "/manifests/" in path else "other")
            c[f"{verb} {kind}"] += 1
        return ", ".join(f"{n} {k}" for k, n in c.most_common())

    def cpu_seconds(self) -> float:
        """User + system CPU time of the registry process so far."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def generate(root: Path, images: int, base_bytes: int, host: str) -> None:
    rng = random.Random(SEED)
    root.mkdir(parents=True)
    (root / "WORKSPACE.yaml").write_text("cache_dir: .graphbuild\n")
    plats = ", ".join(PLATFORMS)
    base = root / "base"
    base.mkdir(parents=True)
    (base / "base.bin").write_bytes(rng.randbytes(base_bytes))
    (base / "Dockerfile").write_text("FROM scratch\nCOPY base.bin /opt/base.bin\n")
    (base / "BUILD.yaml").write_text(f"base:\n  rule: image\n  platforms: [{plats}]\n")
    for i in range(images):
        pkg = root / "apps" / f"app-{i:02d}"
        pkg.mkdir(parents=True)
        (pkg / "app.txt").write_text(f"app {i}\n" + "payload line\n" * (50 + i))
        (pkg / "app.bin").write_bytes(rng.randbytes(8192))
        (pkg / "Dockerfile").write_text(
            "FROM base\nCOPY app.txt app.bin /app/\nCMD [\"/app/app.bin\"]\n")
        (pkg / "BUILD.yaml").write_text(
            "img:\n"
            "  rule: image\n"
            f"  platforms: [{plats}]\n"
            "  contexts: {base: \"//base\"}\n"
            "m:\n"
            "  rule: manifest\n"
            "  images: [\":img\"]\n"
            f"  tags: [\"{host}/app-{i:02d}:v1\"]\n")


def base_layer_digest(store: Path) -> str:
    """The one layer every app image shares: the first layer of app-00's amd64 image."""
    def blob(d: str) -> dict:
        return json.loads((store / "blobs" / d.replace(":", "/")).read_text())

    for entry in json.loads((store / "index.json").read_text())["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name", "") \
                .endswith("/app-00:v1"):
            index = blob(entry["digest"])
            return blob(index["manifests"][0]["digest"])["layers"][0]["digest"]
    sys.exit("app-00:v1 is not in the store's index.json")


def one_plan_publish(store: Path, src_host: str, dest_host: str) -> tuple[float, int]:
    """Push every `<src_host>/app-NN:v1` index of the store to `dest_host` with one PushPlan."""
    from graphbuild.oci.store import Store
    from graphbuild.registry.client import RegistryClient
    from graphbuild.registry.transfer import PushPlan, PushTarget, publish

    targets = []
    for entry in json.loads((store / "index.json").read_text())["manifests"]:
        name = entry.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
        if name.startswith(f"{src_host}/app-"):
            repo, tag = name.split("/", 1)[1].rsplit(":", 1)
            desc = {k: entry[k] for k in ("mediaType", "digest", "size")}
            targets.append(PushTarget(dest_host, repo, (desc,), {tag: desc["digest"]}))
    t0 = time.perf_counter()
    with RegistryClient(dest_host) as client:
        publish(PushPlan(tuple(targets)), Store(store), {dest_host: client})
    return time.perf_counter() - t0, len(targets)


def push_graphbuild(push_cmd: list[str], ws: Path, reg: Registry) -> tuple[float, str]:
    """Time `graphbuild run --push` into ``reg``; also its CPU and the registry's."""
    cpu0, reg0 = CPU["child"], reg.cpu_seconds()
    t, rss, _ = run(push_cmd, ws)
    return t, (f"peak RSS {rss / 1024:.0f} MB; CPU {CPU['child'] - cpu0:.2f} s, registry CPU "
               f"{reg.cpu_seconds() - reg0:.2f} s")


def push_skopeo(store: Path, src_host: str, reg: Registry, images: int) -> tuple[float, str]:
    """Time the loop of `skopeo copy --all` over the same indexes into ``reg``."""
    cpu0, reg0 = CPU["child"], reg.cpu_seconds()
    t0 = time.perf_counter()
    for i in range(images):
        run(["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false",
             f"oci:{store}:{src_host}/app-{i:02d}:v1", f"docker://{reg.host}/app-{i:02d}:v1"])
    t = time.perf_counter() - t0
    return t, (f"{t / images:.2f} s per index; CPU {CPU['child'] - cpu0:.2f} s, registry CPU "
               f"{reg.cpu_seconds() - reg0:.2f} s")


def one_round(n: int, push_cmd: list[str], ws: Path, store: Path, base: str,
              reg_a: Registry, reg_b: Registry, images: int) -> tuple[float, bool]:
    """Both pushes into empty registries, in alternating order (the disk of a shared machine
    drifts over a minute: neither side always gets the later, or earlier, share of it).
    Returns the ratio and whether graphbuild uploaded the shared base layer exactly once."""
    sides = [("graphbuild run --push", lambda: push_graphbuild(push_cmd, ws, reg_a)),
             ("skopeo copy --all loop", lambda: push_skopeo(store, reg_a.host, reg_b, images))]
    times = {}
    for name, push in sides if n % 2 else sides[::-1]:
        times[name], detail = push()
        print(f"  round {n}: {name}: {times[name]:.2f} s ({detail})")
    ratio = times["graphbuild run --push"] / times["skopeo copy --all loop"]
    sa = reg_a.blob_stats(base)
    once = sa.get("uploads", 0) == 1
    print(f"  round {n}: ratio {ratio:.3f}; shared base layer in registry A (graphbuild): {sa}, "
          f"{reg_a.request_count()} requests in all; in registry B (skopeo): "
          f"{reg_b.blob_stats(base)}, {reg_b.request_count()} requests")
    return ratio, once


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 images, 5 MB base, 1 round")
    ap.add_argument("--images", type=int)
    ap.add_argument("--base-mb", type=float)
    ap.add_argument("--rounds", type=int, help="rounds of both pushes, each into empty "
                    "registries; the verdict is on the median ratio (default 5, --quick 1)")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--profile", help="run the timed push under cProfile, stats to FILE")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--registry-dir", metavar="DIR",
                    help="where the registries keep their data (default: the benchmark's temp "
                         "directory); e.g. /dev/shm to take this machine's disk out of the run")
    args = ap.parse_args()
    images = args.images or (10 if args.quick else 60)
    base_bytes = int((args.base_mb or (5 if args.quick else 20)) * 1e6)
    rounds = args.rounds or (1 if args.quick else 5)
    if rounds < 1:
        ap.error("--rounds must be at least 1")
    for tool in ("skopeo", "docker-registry"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")

    print(machine_line())
    print(graphbuild_where())
    version = subprocess.run(["skopeo", "--version"], capture_output=True, text=True, check=False)
    print(version.stdout.strip())
    top = Path(tempfile.mkdtemp(prefix="gb-bench-push-"))
    reg_top = top
    regs: list[Registry] = []
    ok = True
    try:
        reg_top = Path(tempfile.mkdtemp(prefix="gb-bench-push-reg-", dir=args.registry_dir)) \
            if args.registry_dir else top
        print(f"registries keep their data under {reg_top}")
        reg_a = Registry(reg_top / "registry-graphbuild").start()
        reg_b = Registry(reg_top / "registry-skopeo")
        regs += [reg_a, reg_b]
        ws = top / "ws"
        generate(ws, images, base_bytes, reg_a.host)
        jobs = ["-j", str(args.jobs)] if args.jobs else []
        gb = [*graphbuild_cmd(), "run", "//...", *jobs, "--output", "plain"]
        print(f"workspace: //base:base ({base_bytes / 1e6:.0f} MB random file) + {images} app "
              f"images x {len(PLATFORMS)} platforms + {images} manifests tagged "
              f"{reg_a.host}/app-NN:v1")

        t, rss, _ = run(gb, ws)
        print(f"build (not part of the comparison): {t:.2f} s, peak RSS {rss / 1024:.0f} MB")
        t_noop, _, _ = run(gb, ws)
        print(f"no-op build without --push: {t_noop:.2f} s")
        store = ws / ".graphbuild" / "oci"
        base = base_layer_digest(store)
        size = (store / "blobs" / base.replace(":", "/")).stat().st_size
        print(f"shared base layer: {base} ({size / 1e6:.1f} MB compressed)")

        push_cmd = [*gb, "--push"]
        print(f"commands:\n  (cd {ws} && {' '.join(push_cmd)})")
        print(f"  for N in 00..{images - 1:02d}: skopeo copy --all --dest-tls-verify=false "
              f"oci:{store}:{reg_a.host}/app-NN:v1 docker://<registry B>/app-NN:v1")
        if args.profile:
            prof = str(Path(args.profile).resolve())
            push_cmd = [sys.executable, "-m", "cProfile", "-o", prof, "-m", "graphbuild",
                        *push_cmd[len(graphbuild_cmd()):]]
        # Each round: both registries empty. A keeps its port (the tags name it); B gets a
        # fresh one: skopeo keeps a blob-info cache (where it has seen which blob; it mounts
        # from there), so only what this round's loop learns can help it. graphbuild keeps
        # nothing of the kind between runs.
        ratios, once = [], True
        for n in range(1, rounds + 1):
            if n > 1:
                reg_a.stop()
                reg_a.start(reg_a.port)
            reg_b.stop()
            reg_b.start()
            ratio, uploaded_once = one_round(n, push_cmd, ws, store, base, reg_a, reg_b, images)
            ratios.append(ratio)
            once &= uploaded_once
        median = statistics.median(ratios)
        met = median <= 0.33
        ok &= met
        print(f"wall-time ratio graphbuild/skopeo over {rounds} round(s): median {median:.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f}; target <= 0.33): "
              f"{'MET' if met else 'NOT MET'}")
        print(f"requests of the last round: registry A (graphbuild): {reg_a.request_kinds()}; "
              f"registry B (skopeo): {reg_b.request_kinds()}")
        ok &= once
        print(f"graphbuild uploaded the shared base layer exactly once in every round: "
              f"{'MET' if once else 'NOT MET'}")

        # Informational: graphbuild's own publish() given ONE plan over all N indexes (what
        # `--push` does per push node, with one plan per node), into a third fresh registry.
        reg_c = Registry(reg_top / "registry-oneplan").start()
        regs.append(reg_c)
        t_one, n_one = one_plan_publish(store, reg_a.host, reg_c.host)
        print(f"informational: graphbuild.registry.transfer.publish() with one PushPlan over the "
              f"{n_one} indexes (in-process, after imports): {t_one:.2f} s; base layer in "
              f"registry C: {reg_c.blob_stats(base)}; {reg_c.request_count()} requests in all")

        # Informational: a second push has nothing to upload.
        before = reg_a.request_count()
        t2, _, _ = run([*gb, "--push"], ws)
        print(f"second graphbuild run --push (nothing new): {t2:.2f} s, "
              f"{reg_a.request_count() - before} requests")
        tags_ok = all(
            subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                            f"docker://{reg.host}/app-{i:02d}:v1"],
                           capture_output=True, check=False)
            .returncode == 0 for reg in (reg_a, reg_b) for i in (0, images - 1))
        print(f"skopeo inspect of app-00 and app-{images - 1:02d} in both registries: "
              f"{'ok' if tags_ok else 'FAILED'}")
        ok &= tags_ok
    finally:
        for reg in regs:
            reg.stop()
        if args.keep:
            print(f"kept: {top}" + (f" and {reg_top}" if reg_top != top else ""))
        else:
            shutil.rmtree(top, ignore_errors=True)
            shutil.rmtree(reg_top, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
