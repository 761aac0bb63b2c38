"""What SBOM and provenance add to a cold native build (issue: <= 5%) and to a no-op (nothing).

Run (from the repository root, with graphbuild installed):

    python benchmarks/attest_overhead.py            # ~100 MB context x 2 platforms, 5 rounds
    python benchmarks/attest_overhead.py --quick    # ~10 MB, 1 round

The workload is cold_build.py's: a COPY-only Dockerfile over a generated context of ~100 MB,
built for linux/amd64 and linux/arm64 by the native backend from a fresh cache. Each round
builds it twice, in alternating order: once with `attest: false` in WORKSPACE.yaml and once
with the default (SBOM and provenance on). It prints the medians and their ratio (target
<= 1.05), then the no-op of each, and — for information — what making the SBOMs costs when
they are first needed (`graphbuild sbom` for both platforms: it reads every layer again).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _common import graphbuild_cmd, graphbuild_where, machine_line, run
from cold_build import PLATFORMS, dockerfile, generate


def workspace(root: Path, ctx_source: Path, attest: bool) -> Path:
    ws = root / ("on" if attest else "off")
    shutil.copytree(ctx_source, ws / "app")
    (ws / "app" / "Dockerfile").write_text(dockerfile())
    plats = ", ".join(PLATFORMS)
    (ws / "WORKSPACE.yaml").write_text(f"default_platforms: [{plats}]\n"
                                       + ("" if attest else "attest: false\n"))
    (ws / "app" / "BUILD.yaml").write_text("img:\n  rule: image\n  tags: ['bench/attest:v1']\n")
    return ws


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    args = ap.parse_args()
    files, size_mb = (40, 10) if args.quick else (400, 100)
    rounds = args.rounds or (1 if args.quick else 5)
    if rounds < 1:
        ap.error("--rounds must be at least 1")
    print(machine_line())
    print(graphbuild_where())
    gb = graphbuild_cmd()
    times: dict[bool, list[float]] = {True: [], False: []}
    noop: dict[bool, list[float]] = {True: [], False: []}
    first_use: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gb-attest-") as tmp:
        source = Path(tmp) / "ctx"
        total = generate(source, files, size_mb << 20)
        print(f"context: {files} files, {total / 1e6:.1f} MB; platforms {', '.join(PLATFORMS)}")
        for r in range(rounds):
            for attest in ((False, True) if r % 2 == 0 else (True, False)):
                root = Path(tmp) / f"r{r}"
                ws = workspace(root, source, attest)
                wall, _, _ = run([*gb, "-C", str(ws), "run", "//app:img", "--output", "plain"])
                times[attest].append(wall)
                wall, _, _ = run([*gb, "-C", str(ws), "run", "//app:img", "--output", "plain"])
                noop[attest].append(wall)
                if attest:
                    t = 0.0
                    for plat in PLATFORMS:
                        w, _, _ = run([*gb, "-C", str(ws), "sbom", "//app:img", "--platform",
                                       plat])
                        t += w
                    first_use.append(t)
            shutil.rmtree(Path(tmp) / f"r{r}")
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"cold build, attest off: {off:.3f} s (median of {rounds}: "
          f"{', '.join(f'{t:.3f}' for t in times[False])})")
    print(f"cold build, attest on:  {on:.3f} s ({', '.join(f'{t:.3f}' for t in times[True])})")
    print(f"ratio on/off: {on / off:.3f} (target <= 1.05)")
    print(f"no-op: off {statistics.median(noop[False]):.3f} s, on "
          f"{statistics.median(noop[True]):.3f} s")
    print(f"SBOMs made on first use (both platforms, `graphbuild sbom`): "
          f"{statistics.median(first_use):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
