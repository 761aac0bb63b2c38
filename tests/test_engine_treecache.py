"""Package discovery, `srcs` globs and WORKSPACE.yaml are remembered while the paths they came
from keep their stat stamps. These tests let the cache trust paths changed just now (the
`trust_fresh_paths` fixture) and check that changes are still seen; the last one checks the
two-second racy window itself."""

from __future__ import annotations

import os
import pickle


def _built(ws, pattern="//..."):
    res = ws.run("run", pattern, "--output", "json")
    assert res.code == 0, res
    return {e["node"]: e["status"] for e in res.events() if e["event"] == "action_finished"}


def test_new_source_file_and_new_package_are_seen_through_the_cache(ws, trust_fresh_paths):
    ws.write({
        "a/BUILD.yaml": """
            t:
              rule: command
              cmd: cat src/*.txt > $OUT/all
              srcs: ["src/*.txt", "deep/**/*.txt"]
        """,
        "a/src/one.txt": "1\n",
        "a/deep/x/two.txt": "2\n",
    })
    assert _built(ws) == {"//a:t": "built"}
    assert _built(ws) == {"//a:t": "cached"}  # the cache is trusted now
    assert _built(ws) == {"//a:t": "cached"}
    ws.write({"a/src/three.txt": "3\n"})  # changes a/src's mtime
    assert _built(ws) == {"//a:t": "built"}
    ws.write({"a/deep/x/y/four.txt": "4\n"})  # a new directory deep below
    assert _built(ws) == {"//a:t": "built"}
    _built(ws)
    ws.write({"b/BUILD.yaml": "u:\n  rule: command\n  cmd: 'true'\n"})  # a new package
    assert _built(ws)["//b:u"] == "built"
    os.remove(ws.path("a/src/one.txt"))
    res = ws.run("run", "//a:t", "--explain", "--output", "plain")
    assert "input removed: a/src/one.txt" in res.err


def test_copy_inputs_are_remembered_but_changes_are_seen(ws, trust_fresh_paths):
    ws.write({
        "img/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64, linux/arm64]\n",
        "img/Dockerfile": "FROM scratch\nCOPY app/ /app/\nCOPY one.txt /one.txt\n",
        "img/app/a.txt": "a\n",
        "img/one.txt": "1\n",
        "img/.dockerignore": "**/*.tmp\n",
    })
    assert set(_built(ws).values()) == {"built"}
    assert set(_built(ws).values()) == {"cached"}
    ws.write({"img/app/sub/b.txt": "b\n"})  # a new directory under a COPY'd one
    assert _built(ws)["//img:img[linux/amd64]"] == "built"
    ws.write({"img/app/sub/skip.tmp": "x\n"})  # .dockerignore'd: reaches no image
    assert _built(ws)["//img:img[linux/amd64]"] == "cached"
    os.remove(ws.path("img/one.txt"))  # a named source vanishing is bad input, not a crash
    res = ws.run("run", "//img:img")
    assert res.code == 2, res
    assert res.err.startswith("img/Dockerfile:3: //img:img:")


def test_workspace_file_is_remembered_but_edits_are_seen(ws, trust_fresh_paths):
    from graphbuild.engine.treecache import user_cache

    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "img/BUILD.yaml": "img:\n  rule: image\n",
        "img/Dockerfile": "FROM scratch\nLABEL a=b\n",
    })
    assert _built(ws) == {"//img:img[linux/amd64]": "built"}
    assert ("workspace-file", str(ws.path("WORKSPACE.yaml"))) in user_cache().data
    assert _built(ws) == {"//img:img[linux/amd64]": "cached"}
    ws.write({"WORKSPACE.yaml": "default_platforms: [linux/arm64]\n"})
    assert _built(ws) == {"//img:img[linux/arm64]": "built"}
    ws.write({"WORKSPACE.yaml": "default_platforms: linux/arm64\n"})
    res = ws.run("run", "//...")
    assert res.code == 2 and res.err.startswith("WORKSPACE.yaml:1:"), res


def _remembered_kinds(ws) -> set[str]:
    path = ws.path(".graphbuild/tree-cache.pickle")
    if not path.exists():  # nothing was worth writing
        return set()
    with open(path, "rb") as fh:
        return {key[0] for key in pickle.load(fh)}


def test_paths_changed_in_the_last_two_seconds_are_not_trusted(ws):
    """A path's last change (mtime or ctime) must be older than any file system's clock tick:
    a change within the same tick could leave its stamp as it was (git's racy entries)."""
    ws.write({
        "img/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64]\n",
        "img/Dockerfile": "FROM scratch\nCOPY f /f\n",
        "img/f": "f\n",
    })
    assert _built(ws) == {"//img:img[linux/amd64]": "built"}
    assert not _remembered_kinds(ws) & {"packages", "image-facts"}
    past = 1_000_000_000  # an mtime set back leaves ctime at now: still not trusted
    for path in ("img", "img/Dockerfile", "img/f", "."):
        os.utime(ws.path(path), (past, past))
    assert _built(ws) == {"//img:img[linux/amd64]": "cached"}
    assert not _remembered_kinds(ws) & {"packages", "image-facts"}


def test_a_path_on_the_way_is_stamped_by_identity(tmp_path, trust_fresh_paths):
    """An Identity path keeps a result valid while entries are added beside it, and not once
    it is replaced by another directory or by a symlink (even to the same directory, whose
    files keep their stamps); a full stamp changes with any entry."""
    from graphbuild.engine.treecache import Identity, TreeCache

    way, leaf = tmp_path / "way", tmp_path / "way" / "leaf"
    leaf.mkdir(parents=True)
    cache = TreeCache(tmp_path / "cache.pickle")
    on_the_way = [Identity(str(tmp_path)), Identity(str(way)), str(leaf)]
    cache.put("k", on_the_way, "result")
    cache.put("full", [str(tmp_path)], "result")
    (tmp_path / "beside").mkdir()  # new entries in the directories on the way
    (way / "other").write_text("x")
    assert cache.get("k") == "result" and cache.get("full") is None
    os.rename(way, tmp_path / "real")
    os.symlink(tmp_path / "real", way)  # the same directory, through a symlink
    assert cache.get("k") is None
    os.remove(way)
    way.mkdir()
    cache.put("k", on_the_way[:2], "result")  # named before the directory was replaced
    assert cache.get("k") is None
    cache.put("k", [Identity(str(tmp_path)), Identity(str(way))], "result")  # named anew
    assert cache.get("k") == "result"
    (tmp_path / "another").mkdir()
    os.rename(way, tmp_path / "old")
    os.rename(tmp_path / "another", way)  # another directory in its place
    assert cache.get("k") is None
