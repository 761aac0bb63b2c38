"""`cache gc` keeps what the latest run used and reclaims buildah's leftovers: build state A,
edit to B and build, revert to A (all cached), gc: the next run is still a no-op (gc dropped
A's records, which only the last-built B kept). An interrupted buildah build's working
container and imported base images go with gc, and `cache stats` counts buildah's storage."""

from __future__ import annotations

import json
import subprocess

from conftest import need_tool


def _statuses(res) -> dict[str, str]:
    return {e["node"]: e["status"] for e in res.events() if e["event"] == "action_finished"}


def test_gc_after_a_revert_keeps_the_state_in_use(ws):
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "gen/BUILD.yaml": "gen:\n  rule: command\n  cmd: cat in.txt > $OUT/out.txt\n"
                          "  srcs: [in.txt]\n  outs: [out.txt]\n",
        "gen/in.txt": "A\n",
        "img/BUILD.yaml": "img:\n  rule: image\n  contexts: {gen: '//gen'}\n",
        "img/Dockerfile": "FROM scratch\nCOPY --from=gen out.txt /out.txt\n",
    })
    assert ws.run("run", "//...").code == 0
    ws.write({"gen/in.txt": "B\n"})
    assert ws.run("run", "//...").code == 0
    ws.write({"gen/in.txt": "A\n"})
    res = ws.run("run", "//...", "--output", "json")
    assert set(_statuses(res).values()) == {"cached"}, res
    assert ws.run("cache", "gc").code == 0
    res = ws.run("run", "//...", "--output", "json")
    assert set(_statuses(res).values()) == {"cached"}, _statuses(res)


def test_gc_reclaims_buildah_leftovers_and_stats_counts_them(ws):
    exe = need_tool("buildah")
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "base/BUILD.yaml": "base:\n  rule: image\n",
        "base/Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n",
        "base/a.txt": "a\n",
        "app/BUILD.yaml": "app:\n  rule: image\n  backend: buildah\n  contexts: {base: '//base'}\n",
        "app/Dockerfile": "FROM base\nCOPY b.txt /b.txt\n",
        "app/b.txt": "b\n",
    })
    assert ws.run("run", "//...").code == 0
    state = ws.path(".graphbuild/buildah")
    root = ["--root", str(state / "root-default"), "--runroot", str(state / "run-default")]
    # what a build killed midway leaves: a working container
    subprocess.run([exe, *root, "from", "--name", "leftover", "scratch"], check=True,
                   capture_output=True)
    stats = json.loads(ws.run("cache", "stats", "--output", "json").out)
    assert stats["bytes"]["buildah"] > 0
    res = ws.run("cache", "gc")
    assert res.code == 0 and "Traceback" not in res.err, res
    listed = subprocess.run([exe, *root, "containers", "--quiet"], capture_output=True,
                            text=True, check=True).stdout
    images = subprocess.run([exe, *root, "images", "--quiet"], capture_output=True,
                            text=True, check=True).stdout
    assert listed.strip() == "" and images.strip() == "", (listed, images)
    res = ws.run("run", "//...", "--output", "json")  # the store still has every output
    assert res.code == 0 and set(_statuses(res).values()) == {"cached"}, res
