"""The fault campaign of the data-integrity issue, re-run: counts of trials and failures.

Run (from the repository root, with graphbuild and docker-registry installed):

    python benchmarks/fault_campaign.py                       # 30 of each
    python benchmarks/fault_campaign.py --trials 5

Each trial uses a small workspace: a command whose output an image copies, a second image FROM
the first with a 256 KiB file, and a manifest over it (linux/amd64 and linux/arm64), tagged into
a local `docker-registry`.

* kill: `run` is sent SIGKILL at a random moment of a cold build; then `run` must succeed and
  `cache verify` must find nothing broken.
* push-kill: `run --push` is sent SIGKILL at a random moment; every tag the registry holds must
  name a complete index (every manifest and blob it reaches is there); then `run --push` must
  succeed.
* gc: `cache gc` and `cache clean` are started at a random moment of a cold build; both must
  finish, then `run` must succeed, and `cache verify` must pass.
* corrupt: one blob of the store (manifest, config or layer) or one CAS file is flipped,
  truncated or deleted after a build; `run` must succeed (rebuilding what it needs), `export`
  must write an archive whose blobs all match their digests or refuse (a flipped byte keeps the
  size a no-op checks: the export hashes the blob, refuses and removes it, and the next `run`
  rebuilds it, after which the export must succeed). A blob nothing read (a cached command's
  CAS file, an attestation's blob) is found by `cache verify`; then `cache verify --repair`
  must drop it, and `run` and `cache verify` must pass (counted apart).

There is no peer: this counts failures (target: 0 of each).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import graphbuild_cmd, graphbuild_where, machine_line
from push import Registry

PLATFORMS = "[linux/amd64, linux/arm64]"


def write_workspace(root: Path, host: str, seed: int) -> None:
    rng = random.Random(seed)
    files = {
        "WORKSPACE.yaml": f"default_platforms: {PLATFORMS}\n",
        "gen/BUILD.yaml": "gen:\n  rule: command\n  cmd: head -c 200000 /dev/urandom > $OUT/r.bin "
                          "&& echo ok > $OUT/gen.txt\n  outs: [gen.txt, r.bin]\n",
        "base/BUILD.yaml": "base:\n  rule: image\n  contexts: {gen: '//gen'}\n",
        "base/Dockerfile": "FROM scratch\nCOPY --from=gen gen.txt r.bin /gen/\n",
        "app/BUILD.yaml": (f"app:\n  rule: image\n  contexts: {{base: '//base'}}\n"
                           f"  tags: ['{host}/app-{seed}:{{arch}}']\n"
                           f"m:\n  rule: manifest\n  images: [':app']\n"
                           f"  tags: ['{host}/app-{seed}:1.0']\n"),
        "app/Dockerfile": "FROM base\nCOPY big.bin /big.bin\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "app" / "big.bin").write_bytes(rng.randbytes(256 * 1024))


def gb(ws: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*graphbuild_cmd(), "-C", str(ws), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def killed_run(ws: Path, args: list[str], rng: random.Random, most: float) -> None:
    proc = subprocess.Popen([*graphbuild_cmd(), "-C", str(ws), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.05, most))
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def verify_ok(ws: Path) -> str | None:
    res = gb(ws, "cache", "verify")
    return None if res.returncode == 0 else f"cache verify: {res.stdout[-500:]}{res.stderr[-500:]}"


def run_ok(ws: Path, *extra: str) -> str | None:
    res = gb(ws, "run", "//...", *extra)
    if res.returncode != 0 or "Traceback" in res.stderr:
        return f"run {' '.join(extra)}: exit {res.returncode}: {res.stderr[-800:]}"
    return None


def export_ok(ws: Path, out: Path) -> str | None:
    res = gb(ws, "export", "//app:m", "-o", str(out))
    if res.returncode != 0:
        return f"export: exit {res.returncode}: {res.stderr[-500:]}"
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("blobs/sha256/"):
                data = tar.extractfile(member).read()
                if hashlib.sha256(data).hexdigest() != member.name.rsplit("/", 1)[1]:
                    return f"export wrote a corrupt blob {member.name}"
    return None


def tags_complete(host: str, repo: str) -> str | None:
    """Every tag names a manifest whose whole closure the registry has."""
    def get(path: str, accept: str = "") -> bytes:
        req = urllib.request.Request(f"http://{host}/v2/{repo}/{path}",
                                     headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    accept = ("application/vnd.oci.image.index.v1+json,"
              "application/vnd.oci.image.manifest.v1+json")
    try:
        tags = json.loads(get("tags/list")).get("tags") or []
    except OSError:
        return None  # no repository yet: nothing tagged
    for tag in tags:
        try:
            stack = [json.loads(get(f"manifests/{tag}", accept))]
            while stack:
                doc = stack.pop()
                for child in doc.get("manifests", []):
                    stack.append(json.loads(get(f"manifests/{child['digest']}", accept)))
                for blob in [doc.get("config"), *doc.get("layers", [])]:
                    if blob:
                        req = urllib.request.Request(
                            f"http://{host}/v2/{repo}/blobs/{blob['digest']}", method="HEAD")
                        urllib.request.urlopen(req, timeout=10).close()
        except OSError as exc:
            return f"tag {tag} names an incomplete image: {exc}"
    return None


def damage(path: Path, how: str) -> None:
    os.chmod(path, 0o644)
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: max(0, path.stat().st_size // 2)])
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


def trial(kind: str, n: int, base: Path, registry: Registry, rng: random.Random) -> str | None:
    ws = base / f"{kind}-{n}"
    write_workspace(ws, registry.host, n)
    if kind == "kill":
        killed_run(ws, ["run", "//..."], rng, 2.5)
        return run_ok(ws) or verify_ok(ws)
    if kind == "push-kill":
        assert run_ok(ws) is None
        killed_run(ws, ["run", "//...", "--push"], rng, 1.5)
        return tags_complete(registry.host, f"app-{n}") or run_ok(ws, "--push") or \
            tags_complete(registry.host, f"app-{n}")
    if kind == "gc":
        build = subprocess.Popen([*graphbuild_cmd(), "-C", str(ws), "run", "//..."],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.05, 1.5))
        for action in ("gc", "clean"):
            res = gb(ws, "cache", action)
            if res.returncode != 0 or "Traceback" in res.stderr:
                return f"cache {action}: {res.stderr[-500:]}"
        _, err = build.communicate(timeout=300)
        if "Traceback" in err:
            return f"the build raced by gc: {err[-800:]}"
        return run_ok(ws) or verify_ok(ws)
    # corrupt
    if run_ok(ws) is not None:
        return "the first build failed"
    cache = ws / ".graphbuild"
    victims = sorted((cache / "oci" / "blobs" / "sha256").iterdir()) + \
        sorted(p for p in (cache / "cas" / "blobs").rglob("*") if p.is_file())
    damage(rng.choice(victims), rng.choice(["flip", "truncate", "delete"]))
    problem = run_ok(ws) or export_ok(ws, ws / "out.tar")
    if problem and "is corrupt" in problem and "removed" in problem:
        # a flipped byte keeps the size a no-op checks: the export hashes it, refuses, and
        # removes it; the next run rebuilds it
        problem = run_ok(ws) or export_ok(ws, ws / "out.tar")
    if problem or verify_ok(ws) is None:
        return problem
    # a flipped byte in a blob nothing read (a CAS file of a cached command, an attestation's
    # blob): only `cache verify` reads it; --repair drops it and the next run rebuilds it
    REPAIRED.append(ws.name)
    repair = gb(ws, "cache", "verify", "--repair")
    if repair.returncode != 0:
        return f"cache verify --repair: {repair.stdout[-300:]}{repair.stderr[-300:]}"
    return run_ok(ws) or verify_ok(ws)


REPAIRED: list[str] = []  # corrupt trials where only `cache verify` found the damage


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--kinds", default="kill,push-kill,gc,corrupt")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(machine_line())
    print(graphbuild_where())
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="gb-faults-") as tmp:
        base = Path(tmp)
        registry = Registry(base / "registry").start()
        failures = 0
        try:
            for kind in args.kinds.split(","):
                failed = []
                t0 = time.monotonic()
                for n in range(args.trials):
                    problem = trial(kind, n, base, registry, rng)
                    if problem:
                        failed.append((n, problem))
                    shutil.rmtree(base / f"{kind}-{n}", ignore_errors=True)
                found = f", {len(REPAIRED)} found only by cache verify (then repaired)" \
                    if kind == "corrupt" else ""
                print(f"{kind}: {args.trials} trials, {len(failed)} failed{found} "
                      f"({time.monotonic() - t0:.0f} s)")
                for n, problem in failed[:5]:
                    print(f"  trial {n}: {problem}")
                failures += len(failed)
        finally:
            registry.stop()
    print(machine_line())
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
