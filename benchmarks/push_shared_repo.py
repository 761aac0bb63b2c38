"""Push reliability: the README's layout, where an image's per-platform tags and its manifest's
tag share one repository, pushed again and again into empty registries.

Run (from the repository root, with graphbuild and docker-registry installed):

    python benchmarks/push_shared_repo.py                 # 40 services, 50 pushes
    python benchmarks/push_shared_repo.py --services 10 --pushes 5

What it does:

* generates a workspace: `//base:base` (FROM scratch, one 1 MiB random layer) over linux/amd64
  and linux/arm64, and N packages `services/svc-NN`, each an `image` `FROM base` tagged
  `HOST/svc-NN:{arch}` and a `manifest` over it tagged `HOST/svc-NN:1.0`: the image's push node
  and the manifest's push node both put the same image manifests and blobs into `svc-NN`;
* builds it once (not timed), then --pushes times: starts a `docker-registry` with empty storage
  on the same port and runs `graphbuild run //... --push`;
* counts the pushes that failed (target: 0), with the registry's error codes
  (`MANIFEST_BLOB_UNKNOWN`, `DIGEST_INVALID`, ...) from graphbuild's stderr, and checks after each
  successful push that every tag is there. Prints the median push time.

There is no peer: this measures reliability, not speed (skopeo copies one image at a time and
never races with itself).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from _common import graphbuild_cmd, graphbuild_where, machine_line
from push import Registry

PLATFORMS = ("linux/amd64", "linux/arm64")
CODE_RE = re.compile(r"\b([A-Z]+(?:_[A-Z]+)+)\b")


def generate(root: Path, services: int, host: str) -> None:
    rng = random.Random(12)
    plats = ", ".join(PLATFORMS)
    files = {
        "WORKSPACE.yaml": "cache_dir: .graphbuild\n",
        "base/BUILD.yaml": f"base:\n  rule: image\n  platforms: [{plats}]\n",
        "base/Dockerfile": "FROM scratch\nCOPY base.bin /opt/base.bin\n",
    }
    for i in range(services):
        pkg = f"services/svc-{i:02d}"
        files[f"{pkg}/Dockerfile"] = "FROM base\nCOPY app.txt /app/\n"
        files[f"{pkg}/app.txt"] = f"service {i}\n"
        files[f"{pkg}/BUILD.yaml"] = (
            "image:\n  rule: image\n"
            f"  platforms: [{plats}]\n"
            "  contexts: {base: \"//base\"}\n"
            f"  tags: [\"{host}/svc-{i:02d}:{{arch}}\"]\n"
            f"svc-{i:02d}:\n  rule: manifest\n  images: [\":image\"]\n"
            f"  tags: [\"{host}/svc-{i:02d}:1.0\"]\n")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "base/base.bin").write_bytes(rng.randbytes(1024 * 1024))


def run_status(argv: list[str]) -> tuple[int, str]:
    """Exit code and stdout + stderr of a command."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def tags_present(host: str, services: int) -> bool:
    for i in range(services):
        for tag in ("1.0", "amd64", "arm64"):
            request = urllib.request.Request(
                f"http://{host}/v2/svc-{i:02d}/manifests/{tag}", method="HEAD",
                headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                                   "application/vnd.oci.image.manifest.v1+json"})
            try:
                with urllib.request.urlopen(request, timeout=10):
                    pass
            except OSError:
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=40)
    parser.add_argument("--pushes", type=int, default=50)
    args = parser.parse_args()
    print(machine_line())
    print(graphbuild_where())
    with tempfile.TemporaryDirectory(prefix="gb-shared-repo-") as tmp:
        reg = Registry(Path(tmp) / "registry").start()
        port = reg.port
        ws = Path(tmp) / "ws"
        generate(ws, args.services, reg.host)
        code, out = run_status([*graphbuild_cmd(), "-C", str(ws), "run", "//...",
                                "--output", "plain"])
        if code != 0:
            sys.exit(f"the build failed:\n{out}")
        failures: Counter = Counter()
        failed, times = 0, []
        try:
            for n in range(1, args.pushes + 1):
                reg.stop()
                reg.start(port)  # empty storage, same port (the tags name it)
                t0 = time.perf_counter()
                code, out = run_status([*graphbuild_cmd(), "-C", str(ws), "run", "//...",
                                        "--push", "--output", "plain"])
                times.append(time.perf_counter() - t0)
                ok = code == 0 and tags_present(reg.host, args.services)
                if not ok:
                    failed += 1
                    codes = sorted(set(CODE_RE.findall(out))) or ["(no registry code)"]
                    failures.update(codes)
                    print(f"  push {n}: FAILED (exit {code}): {', '.join(codes)}")
                    print("    " + "\n    ".join([line for line in out.splitlines() if "_" in line and "MANIFEST" in line or "DIGEST" in line][:3]))
                else:
                    print(f"  push {n}: ok, {times[-1]:.2f} s")
        finally:
            reg.stop()
    print(f"pushes: {args.pushes} of {args.services} services x {len(PLATFORMS)} platforms "
          f"(3 tags each) into empty registries; failed: {failed} (target 0)"
          + (f"; codes: {dict(failures)}" if failures else ""))
    print(f"median push time {statistics.median(times):.2f} s")
    print(machine_line())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
