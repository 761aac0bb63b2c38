"""Package discovery and `srcs` globs are cached by directory mtimes; these tests make the
directories look old (so the cache is trusted) and check that changes are still seen."""

from __future__ import annotations

import os
import time


def _age(root) -> None:
    """Set every directory's mtime an hour back, as if nothing changed recently."""
    past = time.time() - 3600
    for dirpath, _dirs, _files in os.walk(root):
        os.utime(dirpath, (past, past))


def _built(ws, pattern="//..."):
    res = ws.run("run", pattern, "--output", "json")
    assert res.code == 0, res
    return {e["node"]: e["status"] for e in res.events() if e["event"] == "action_finished"}


def test_new_source_file_and_new_package_are_seen_through_the_cache(ws):
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
    _age(ws.root)
    assert _built(ws) == {"//a:t": "built"}
    _age(ws.root)
    assert _built(ws) == {"//a:t": "cached"}  # the cache is trusted now
    assert _built(ws) == {"//a:t": "cached"}
    ws.write({"a/src/three.txt": "3\n"})  # changes a/src's mtime
    assert _built(ws) == {"//a:t": "built"}
    _age(ws.root)
    ws.write({"a/deep/x/y/four.txt": "4\n"})  # a new directory deep below
    assert _built(ws) == {"//a:t": "built"}
    _age(ws.root)
    _built(ws)
    ws.write({"b/BUILD.yaml": "u:\n  rule: command\n  cmd: 'true'\n"})  # a new package
    assert _built(ws)["//b:u"] == "built"
    _age(ws.root)
    os.remove(ws.path("a/src/one.txt"))
    res = ws.run("run", "//a:t", "--explain", "--output", "plain")
    assert "input removed: a/src/one.txt" in res.err


def test_copy_inputs_are_remembered_but_changes_are_seen(ws):
    ws.write({
        "img/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64, linux/arm64]\n",
        "img/Dockerfile": "FROM scratch\nCOPY app/ /app/\nCOPY one.txt /one.txt\n",
        "img/app/a.txt": "a\n",
        "img/one.txt": "1\n",
        "img/.dockerignore": "**/*.tmp\n",
    })
    _age(ws.root)
    assert set(_built(ws).values()) == {"built"}
    _age(ws.root)
    assert set(_built(ws).values()) == {"cached"}
    ws.write({"img/app/sub/b.txt": "b\n"})  # a new directory under a COPY'd one
    assert _built(ws)["//img:img[linux/amd64]"] == "built"
    _age(ws.root)
    ws.write({"img/app/sub/skip.tmp": "x\n"})  # .dockerignore'd: reaches no image
    assert _built(ws)["//img:img[linux/amd64]"] == "cached"
    _age(ws.root)
    os.remove(ws.path("img/one.txt"))  # a named source vanishing is bad input, not a crash
    res = ws.run("run", "//img:img")
    assert res.code == 2, res
    assert res.err.startswith("img/Dockerfile:3: //img:img:")


def test_workspace_file_is_remembered_but_edits_are_seen(ws):
    from graphbuild.treecache import user_cache

    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "img/BUILD.yaml": "img:\n  rule: image\n",
        "img/Dockerfile": "FROM scratch\nLABEL a=b\n",
    })
    _age(ws.root)
    os.utime(ws.path("WORKSPACE.yaml"), (time.time() - 3600,) * 2)
    assert _built(ws) == {"//img:img[linux/amd64]": "built"}
    assert ("workspace-file", str(ws.path("WORKSPACE.yaml"))) in user_cache().data
    assert _built(ws) == {"//img:img[linux/amd64]": "cached"}
    ws.write({"WORKSPACE.yaml": "default_platforms: [linux/arm64]\n"})
    assert _built(ws) == {"//img:img[linux/arm64]": "built"}
    ws.write({"WORKSPACE.yaml": "default_platforms: linux/arm64\n"})
    res = ws.run("run", "//...")
    assert res.code == 2 and res.err.startswith("WORKSPACE.yaml:1:"), res
