"""graphbuild's buildx backend against `docker buildx bake`, on one BuildKit daemon: a cold build,
a warm no-op and one edited source file, for N services x linux/amd64 + linux/arm64.

Run (from the repository root, with graphbuild installed; needs buildkitd, buildctl, runc and
docker-buildx on PATH, a QEMU binfmt handler for arm64 and the static arm64 busybox that
`.ci/test-tools` puts in tests/.tools; without them it prints "left out: missing ..." and exits 0):

    export PATH=/path/to/buildkit-tools:$PATH       # buildkitd, buildctl, docker-buildx
    python benchmarks/vs_bake.py                    # 40 services x 2 platforms, 3 repetitions
    python benchmarks/vs_bake.py --services 2 --reps 1 --keep /tmp/vs-bake

What it does:

* generates one tree that is both a graphbuild workspace and a bake project:
  - `base`: `FROM scratch`, a static busybox for the target architecture (`busybox-${TARGETARCH}`,
    the host's for amd64, Debian's for arm64) and `RUN ["/bin/busybox", "--install", "-s",
    "/bin"]`;
  - N services `services/svc-NNN`: `FROM base`, `COPY src/ /app/src/` (20 files, ~200 KB of
    deterministic pseudo-random text per service) and `RUN cat /app/src/* | md5sum > /app/sum &&
    uname -m > /app/arch`; arm64 RUNs execute under QEMU on this amd64 machine;
* the shared base is built by each tool in the same run as the services, from the same
  Dockerfile on the same daemon: in graphbuild an image target `//base` given to the services as
  the named context `base` (`contexts: {base: //base}`), in bake a target `base` given as
  `contexts = { base = "target:base" }`. That is the way each tool is meant to share a base it
  builds, so each side pays what it costs in that tool (graphbuild imports the base into its
  store and hands it to each service build as an `oci-layout://` context; bake links it into the
  services' solves); a prebuilt OCI layout both read would leave the base out of the cold
  build, and graphbuild would copy it into its store while bake would not;
* graphbuild (the `graphbuild` script beside the Python running this, as an activated venv would
  find it, else graphbuild_cmd()'s): every image `backend: buildx`, both platforms routed to the
  benchmark's builder (WORKSPACE.yaml `builders`), `attest: false`; it runs one `buildx build`
  per image for both of its platforms (the plugin file alone, as graphbuild runs it), at most
  `-j` (default: the CPU count) at a time, and imports each result into its store, an OCI
  layout (`.graphbuild/oci`);
* bake: `docker-bake.hcl` with a target per image (the base included, so both sides export the
  same N+1 images), both platforms, BuildKit's attestations off, and
  `output = ["type=oci,dest=OUT/NAME.tar,tar=true,rewrite-timestamp=true"]`: the exporter
  settings graphbuild gives buildx (which also passes `--provenance=false --sbom=false`), with
  SOURCE_DATE_EPOCH=0 on both sides. The outputs go outside the tree, so graphbuild's walk of the
  workspace does not see them;
* one buildkitd (OCI worker, native snapshotter, no GC, every build's history record kept, its
  own root) behind one `remote`-driver buildx builder in a private DOCKER_CONFIG serves both.
  Both clients are the same buildx binary: bake runs as `docker buildx bake` when a `docker` CLI
  is on PATH, else `docker-buildx bake`; graphbuild runs the plugin file in the private
  DOCKER_CONFIG alone;
* each repetition runs one side's three scenarios in a row, then the other's (graphbuild first on
  odd repetitions, bake first on even ones), so each side's warm runs meet only the BuildKit
  state its own cold run left:
  1. cold: `buildctl prune --all` and, for graphbuild, its cache directory (`.graphbuild`) and
     its per-user cache (a private XDG_CACHE_HOME) removed; for bake, its archives removed;
     target: graphbuild / bake <= 1.0;
  2. warm no-op: nothing changed; target <= 0.05;
  3. one edit: one source file of svc-000 rewritten with content not seen before (one per side
     and repetition); target <= 0.5. The file is put back afterwards, so every cold run builds
     the same tree.

Prints, per run, the wall time, the client's CPU seconds (user + sys of the graphbuild process
or the bake process, with the processes it waited for, from os.wait4: graphbuild's includes its
`docker buildx build` children), buildkitd's CPU seconds (with its runc/QEMU children, from
/proc), BuildKit's builds during the run and their cached/total steps (`buildctl debug
histories`); then the medians, the graphbuild/bake ratio of the medians against each target.
From the first repetition's cold runs it checks that graphbuild built every image node through
BuildKit, that bake exported the same images, and compares the two sides' image configs (layer
diff_ids) and the arm64 RUN's `uname -m`.

Options: --services N (40), --reps R (3), --keep DIR (work in DIR, a new or empty directory, and
leave the tree, bake's archives and the daemon's root and log there).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _common import BuildKitd, events, graphbuild_cmd, graphbuild_where, machine_line

REPO = Path(__file__).resolve().parent.parent
PLATFORMS = ("linux/amd64", "linux/arm64")
BUSYBOX = {"amd64": Path("/usr/bin/busybox"),
           "arm64": REPO / "tests" / ".tools" / "arm64" / "bin" / "busybox"}
FILES, FILE_BYTES = 20, 10 * 1024
BUILDER = "vsbake"
SCENARIOS = {"cold": 1.0, "no-op": 0.05, "one edit": 0.5}  # target ratios graphbuild / bake
SIDES = ("graphbuild", "bake")

BASE_DOCKERFILE = """FROM scratch
ARG TARGETARCH
COPY --chmod=755 busybox-${TARGETARCH} /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""
SERVICE_DOCKERFILE = """FROM base
COPY src/ /app/src/
RUN cat /app/src/* | md5sum > /app/sum && uname -m > /app/arch
"""


# -- the tree ---------------------------------------------------------------------------------

def svc(i: int) -> str:
    return f"svc-{i:03d}"


def source_text(rng: random.Random) -> bytes:
    """FILE_BYTES of printable pseudo-random text in lines, like a source file."""
    raw = base64.b64encode(rng.randbytes(FILE_BYTES * 3 // 4))[:FILE_BYTES]
    return b"\n".join(raw[i:i + 79] for i in range(0, len(raw), 79)) + b"\n"


def generate(tree: Path, services: int, out: Path) -> None:
    rng = random.Random(20240917)
    plats = ", ".join(PLATFORMS)
    builders = ", ".join(f"{p}: {BUILDER}" for p in PLATFORMS)
    write(tree / "WORKSPACE.yaml",
          f"default_platforms: [{plats}]\nbuilders: {{{builders}}}\nattest: false\n")
    write(tree / "base" / "BUILD.yaml", "base:\n  rule: image\n  backend: buildx\n")
    write(tree / "base" / "Dockerfile", BASE_DOCKERFILE)
    for arch, path in BUSYBOX.items():
        shutil.copyfile(path, tree / "base" / f"busybox-{arch}")
    for i in range(services):
        pkg = tree / "services" / svc(i)
        write(pkg / "BUILD.yaml",
              "svc:\n  rule: image\n  backend: buildx\n  contexts: {base: //base}\n")
        write(pkg / "Dockerfile", SERVICE_DOCKERFILE)
        (pkg / "src").mkdir()
        for f in range(FILES):
            (pkg / "src" / f"f{f:02d}.txt").write_bytes(source_text(rng))
    write(tree / "docker-bake.hcl", bake_hcl(services, out))


def bake_hcl(services: int, out: Path) -> str:
    plats = ", ".join(f'"{p}"' for p in PLATFORMS)
    names = ", ".join(['"base"'] + [f'"{svc(i)}"' for i in range(services)])

    def target(name: str, context: str, extra: str = "") -> str:
        return (f'target "{name}" {{\n  inherits = ["_common"]\n  context = "{context}"\n{extra}'
                f'  output = ["type=oci,dest={out / name}.tar,tar=true,rewrite-timestamp=true"]\n'
                "}\n")

    common = (f'target "_common" {{\n  platforms = [{plats}]\n'
              '  attest = ["type=provenance,disabled=true", "type=sbom,disabled=true"]\n}\n')
    parts = [f'group "default" {{\n  targets = [{names}]\n}}\n', common, target("base", "base")]
    parts += [target(svc(i), f"services/{svc(i)}", '  contexts = { base = "target:base" }\n')
              for i in range(services)]
    return "".join(parts)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def edit(tree: Path, rep: int, side: str) -> None:
    """New content (never seen before in this run) for one source file of svc-000."""
    rng = random.Random(f"edit-{rep}-{side}")
    (tree / "services" / svc(0) / "src" / "f00.txt").write_bytes(source_text(rng))


# -- processes --------------------------------------------------------------------------------

def buildx_cmd() -> list[str]:
    """What graphbuild runs: `docker buildx` with a Docker CLI, else the plugin alone."""
    docker = shutil.which("docker")
    return [docker, "buildx"] if docker else [shutil.which("docker-buildx")]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, client CPU s from os.wait4, stdout); exits with the output's tail on failure.
    The child is stopped, not left behind, when this process is interrupted."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            stop_child(proc)
            raise
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code in (130, -signal.SIGINT):
        sys.exit(f"{argv[0]} was interrupted")
    if code != 0:
        sys.exit(f"{' '.join(argv)} failed (exit {code}):\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, stdout


def stop_child(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # graphbuild and buildx both cancel their builds on it
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class BuildKit(BuildKitd):
    """The benchmark's buildkitd (no GC; every build's history record kept, to count them)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, BUILDER,
                         "[worker.oci]\n  gc = false\n[history]\n  maxEntries = 100000\n")

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(SOURCE_DATE_EPOCH="0", **extra)

    def prune(self) -> None:
        self.buildctl("prune", "--all")

    def histories(self) -> dict[str, dict]:
        """BuildKit's build records by ref (FrontendAttrs, NumCachedSteps, NumTotalSteps…)."""
        out = self.buildctl("debug", "histories", "--format", "json").stdout
        records = [json.loads(line)["record"] for line in out.splitlines()
                   if line.startswith("{")]
        return {r["Ref"]: r for r in records}


# -- the two sides ----------------------------------------------------------------------------

class Bench:
    def __init__(self, work: Path, services: int) -> None:
        self.services = services
        self.tree, self.out = work / "tree", work / "bake-out"
        self.xdg = work / "graphbuild-user-cache"
        self.bk = BuildKit(work / "buildkit")
        self.times: dict[str, dict[str, list[float]]] = {s: {d: [] for d in SIDES}
                                                         for s in SCENARIOS}
        self.cpu: dict[str, dict[str, list[float]]] = {s: {d: [] for d in SIDES}
                                                       for s in SCENARIOS}
        self.daemon_cpu: dict[str, dict[str, list[float]]] = {s: {d: [] for d in SIDES}
                                                              for s in SCENARIOS}
        self.last_events: list[dict] = []
        self.seen: dict[str, dict] = {}  # side: what its first cold run made
        self.edited = self.tree / "services" / svc(0) / "src" / "f00.txt"
        self.original = b""

    def cold(self, side: str) -> None:
        if side == "graphbuild":
            shutil.rmtree(self.tree / ".graphbuild", ignore_errors=True)
            shutil.rmtree(self.xdg, ignore_errors=True)
        else:
            shutil.rmtree(self.out, ignore_errors=True)
        self.bk.prune()

    def run(self, side: str) -> tuple[float, float, str]:
        if side == "graphbuild":
            env = self.bk.env(XDG_CACHE_HOME=str(self.xdg))
            wall, cpu, stdout = timed([*graphbuild_cmd(), "-C", str(self.tree), "run", "//...",
                                       "--output", "json"], self.tree, env)
            self.last_events = events(stdout)
            return wall, cpu, self.graphbuild_counts()
        self.out.mkdir(exist_ok=True)
        wall, cpu, _ = timed([*buildx_cmd(), "bake", "--builder", BUILDER, "-f",
                              "docker-bake.hcl", "--progress", "plain",
                              f"--allow=fs.write={self.out}"], self.tree, self.bk.env())
        return wall, cpu, ""

    def graphbuild_counts(self) -> str:
        done = [e for e in self.last_events if e["event"] == "action_finished"]
        built = sum(e["status"] == "built" for e in done)
        return f"; graphbuild nodes built {built}, cached {len(done) - built}"

    def measure(self, scenario: str, side: str, rep: int) -> list[dict]:
        """One timed run; returns BuildKit's records of the builds it made."""
        before, daemon0 = self.bk.histories(), self.bk.cpu()
        wall, cpu, counts = self.run(side)
        daemon = self.bk.cpu() - daemon0
        new = [r for ref, r in self.bk.histories().items() if ref not in before]
        cached = sum(r.get("numCachedSteps", r.get("NumCachedSteps", 0)) for r in new)
        total = sum(r.get("numTotalSteps", r.get("NumTotalSteps", 0)) for r in new)
        self.times[scenario][side].append(wall)
        self.cpu[scenario][side].append(cpu)
        self.daemon_cpu[scenario][side].append(daemon)
        print(f"  rep {rep + 1} {scenario:8} {side:10} {wall:8.2f} s wall, client CPU "
              f"{cpu:6.2f} s, buildkitd CPU {daemon:6.2f} s; BuildKit builds {len(new)} "
              f"(steps cached {cached} of {total}){counts}", flush=True)
        return new

    def repetition(self, rep: int) -> None:
        """Each side's three scenarios in a row, so its warm runs meet only the BuildKit state
        its own cold run left (the other side's cold run prunes it, after)."""
        for side in SIDES if rep % 2 == 0 else SIDES[::-1]:
            self.cold(side)
            records = self.measure("cold", side, rep)
            if rep == 0:
                self.seen[side] = self.images(side, records)
            self.measure("no-op", side, rep)
            edit(self.tree, rep, side)
            self.measure("one edit", side, rep)
            self.edited.write_bytes(self.original)  # both cold runs build the same tree
        if rep == 0:
            self.check()

    # -- is it the same work? -----------------------------------------------------------------

    def images(self, side: str, records: list[dict]) -> dict:
        """What a cold run made: {(name, platform): config}, the arm64 RUN's `uname -m`, the
        BuildKit builds per --platform, and the counts to check."""
        found, extra = {}, {}
        if side == "graphbuild":
            nodes = [e for e in self.last_events
                     if e["event"] == "action_finished" and e["mnemonic"] == "Image"]
            extra["nodes"] = (sum(e["status"] == "built" for e in nodes), len(nodes))
            store = StoreBlobs(self.tree / ".graphbuild" / "oci")
            for e in nodes:
                name = e["label"].split(":")[0].rsplit("/", 1)[-1]  # //services/svc-000:svc
                found[name, e["platform"]] = image_at(store, e["digest"])
        else:
            tars = sorted(self.out.glob("*.tar"))
            extra["archives"], extra["attestations"] = len(tars), 0
            for path in tars:
                archive = TarBlobs(path)
                for desc in archive.platform_manifests():
                    plat = desc.get("platform", {})
                    key = f"{plat.get('os')}/{plat.get('architecture')}"
                    if key in PLATFORMS:
                        found[path.stem, key] = image_at(archive, desc["digest"])
                    else:
                        extra["attestations"] += 1
        plats: dict[str, int] = {}
        for r in records:
            plat = (r.get("FrontendAttrs") or {}).get("platform", "?")
            plats[plat] = plats.get(plat, 0) + 1
        return {"configs": {k: v[0] for k, v in found.items()}, "builds": plats,
                "arch": run_output(found.get((svc(0), "linux/arm64"))), **extra}

    def check(self) -> None:
        """graphbuild built each image node through BuildKit; bake exported the same images;
        their configs (so diff_ids, the layers' contents) and the arm64 RUN's output compared."""
        images = self.services + 1
        gb, bake = self.seen["graphbuild"], self.seen["bake"]
        built, nodes = gb["nodes"]
        print(f"check: graphbuild built {built} of {nodes} Image nodes (expected {2 * images}); "
              f"BuildKit builds by --platform in the cold runs: graphbuild {gb['builds']}, "
              f"bake {bake['builds']}")
        both = [k for k in gb["configs"] if k in bake["configs"]]
        layers = sum(gb["configs"][k]["rootfs"]["diff_ids"]
                     == bake["configs"][k]["rootfs"]["diff_ids"] for k in both)
        configs = sum(gb["configs"][k] == bake["configs"][k] for k in both)
        print(f"check: bake wrote {bake['archives']} archives holding {len(bake['configs'])} "
              f"platform images (expected {images} and {2 * images}) and "
              f"{bake['attestations']} attestation manifests; of {len(gb['configs'])} graphbuild "
              f"images, {len(both)} are in bake's, {layers} with the same layers (diff_ids), "
              f"{configs} with the same config")
        print(f"check: {svc(0)} linux/arm64 /app/arch (uname -m in its RUN): graphbuild "
              f"{gb['arch']!r}, bake {bake['arch']!r}")

    # -- the summary --------------------------------------------------------------------------

    def summary(self) -> None:
        print("\nmedians (graphbuild / bake):")
        for scenario, target in SCENARIOS.items():
            t = {d: statistics.median(self.times[scenario][d]) for d in SIDES}
            c = {d: statistics.median(self.cpu[scenario][d]) for d in SIDES}
            k = {d: statistics.median(self.daemon_cpu[scenario][d]) for d in SIDES}
            ratio = t["graphbuild"] / t["bake"]
            print(f"  {scenario:8}: wall {t['graphbuild']:7.2f} s / {t['bake']:7.2f} s = "
                  f"{ratio:6.3f} (target <= {target}: {'met' if ratio <= target else 'missed'});"
                  f" client CPU {c['graphbuild']:6.2f} s / {c['bake']:6.2f} s; buildkitd CPU "
                  f"{k['graphbuild']:6.2f} s / {k['bake']:6.2f} s")


class StoreBlobs:
    """The blobs of an OCI layout directory (graphbuild's store)."""

    def __init__(self, layout: Path) -> None:
        self.layout = layout

    def blob(self, digest: str) -> bytes:
        return (self.layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


class TarBlobs(StoreBlobs):
    """The blobs of an OCI layout archive (bake's `type=oci,tar=true`)."""

    def blob(self, digest: str) -> bytes:
        with tarfile.open(self.layout) as tf:
            member = tf.extractfile(f"blobs/sha256/{digest.split(':')[1]}")
            assert member is not None
            return member.read()

    def platform_manifests(self) -> list[dict]:
        """The descriptors of the archive's image manifests, from its index(es)."""
        with tarfile.open(self.layout) as tf:
            member = tf.extractfile("index.json")
            assert member is not None
            top = json.loads(member.read())
        out = []
        for desc in top["manifests"]:
            out += json.loads(self.blob(desc["digest"])).get("manifests", [desc])
        return out


def image_at(blobs: StoreBlobs, digest: str) -> tuple[dict, list[dict], StoreBlobs]:
    """(config, layer descriptors, where the blobs are) of the image manifest ``digest``."""
    manifest = json.loads(blobs.blob(digest))
    return json.loads(blobs.blob(manifest["config"]["digest"])), manifest["layers"], blobs


def run_output(image: tuple | None) -> str:
    """/app/arch from the image's last layer (what its RUN wrote), or '?'."""
    if image is None:
        return "?"
    _, layers, blobs = image
    data = blobs.blob(layers[-1]["digest"])
    if layers[-1]["mediaType"].endswith("gzip"):
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for member in tf.getmembers():
            if member.name.lstrip("./") == "app/arch":
                return tf.extractfile(member).read().decode().strip()
    return "?"


# -- main -------------------------------------------------------------------------------------

def missing() -> str | None:
    tools = [t for t in ("buildkitd", "buildctl", "docker-buildx", "runc") if not shutil.which(t)]
    if tools:
        return ", ".join(tools)
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        return "a QEMU binfmt handler for arm64 (/proc/sys/fs/binfmt_misc/qemu-aarch64)"
    absent = [str(p) for p in BUSYBOX.values() if not p.is_file()]
    if absent:
        return f"a static busybox at {', '.join(absent)} (.ci/test-tools fetches it)"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="work in DIR (new or empty) and leave everything there")
    args = ap.parse_args()
    print(machine_line(), flush=True)
    why = missing()
    if why:
        print(f"left out: missing {why}")
        return 0
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        sys.exit(f"--keep {args.keep}: not empty")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: buildkitd is stopped
    here = Path(sys.executable).parent
    if (here / "graphbuild").is_file():  # this interpreter's graphbuild (a venv's), not a shim
        os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"
    print(graphbuild_where())
    tmp = None
    if args.keep:
        work = args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="gb-vs-bake-")
        work = Path(tmp.name)
    bench = Bench(work, args.services)
    try:
        generate(bench.tree, args.services, bench.out)
        bench.original = bench.edited.read_bytes()
        bench.bk.start()
        version = subprocess.run([*buildx_cmd(), "version"], env=bench.bk.env(),
                                 capture_output=True, text=True, check=False).stdout.strip()
        print(f"{args.services} services + base x {len(PLATFORMS)} platforms, {FILES} files of "
              f"{FILE_BYTES // 1024} KB per service; {args.reps} repetitions; buildx: "
              f"{' '.join(buildx_cmd())} ({version}); work: {work}", flush=True)
        for rep in range(args.reps):
            bench.repetition(rep)
        bench.summary()
    finally:
        bench.bk.stop()
        if tmp is not None:
            tmp.cleanup()
    print(machine_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
