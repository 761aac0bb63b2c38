"""The action cache through the CLI: no-op builds, exact rebuilds, relocation, --no-cache, the
`cache` subcommand, and outputs restored from the content store."""

from __future__ import annotations

import json
import os
import shutil

WS = {
    "lib/BUILD.yaml": """
        lib:
          rule: command
          cmd: mkdir -p $OUT && cat src/*.c > $OUT/lib.a
          srcs: ["src/*.c"]
          outs: [lib.a]
          platforms: [linux/amd64, linux/arm64]
    """,
    "lib/src/a.c": "int a;\n",
    "lib/src/b.c": "int b;\n",
    "app/BUILD.yaml": """
        app:
          rule: command
          cmd: mkdir -p $OUT && cat $DEPS/lib/lib/lib.a main.c > $OUT/app
          srcs: [main.c]
          outs: [app]
          platforms: [linux/amd64, linux/arm64]
          deps: ["//lib"]
        other:
          rule: command
          cmd: mkdir -p $OUT && cat other.c > $OUT/other
          srcs: [other.c]
          outs: [other]
    """,
    "app/main.c": "int main;\n",
    "app/other.c": "int other;\n",
    "README.txt": "unrelated\n",
}

ALL_NODES = {"//lib:lib[linux/amd64]", "//lib:lib[linux/arm64]", "//app:app[linux/amd64]",
             "//app:app[linux/arm64]", "//app:other"}


def statuses(ws, *extra: str) -> dict[str, str]:
    res = ws.run("run", "//...", "--output", "json", *extra)
    assert res.code == 0, res
    return {e["node"]: e["status"] for e in res.events() if e["event"] == "action_finished"}


def built(st: dict[str, str]) -> set[str]:
    return {n for n, s in st.items() if s == "built"}


def test_no_op_build_is_all_cached(ws):
    ws.write(WS)
    assert built(statuses(ws)) == ALL_NODES
    assert statuses(ws) == dict.fromkeys(ALL_NODES, "cached")
    # touching without changing content is not a change (content hashes, not mtimes)
    os.utime(ws.path("lib/src/a.c"), (1, 1))
    assert built(statuses(ws)) == set()


def test_change_with_restored_mtime_is_seen(ws):
    """Same size, same mtime (as tar or rsync -t leave it): still a change."""
    ws.write(WS)
    statuses(ws)

    def rewrite(rel: str, old: str, new: str) -> None:
        path = ws.path(rel)
        st = path.stat()
        text = path.read_text()
        assert len(old) == len(new) and old in text
        path.write_text(text.replace(old, new))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    rewrite("app/other.c", "other", "OTHER")
    assert built(statuses(ws)) == {"//app:other"}
    rewrite("app/BUILD.yaml", "$OUT && cat other.c", "$OUT ;  cat other.c")
    res = ws.run("run", "//app:other", "--output", "json")
    ev = [e for e in res.events() if e["event"] == "action_finished"]
    assert [(e["status"], e["reason"]) for e in ev] == [("built", "attribute changed: cmd")]


def test_changed_src_rebuilds_exactly_its_dependents(ws):
    ws.write(WS)
    statuses(ws)
    ws.write({"lib/src/a.c": "int a = 2;\n"})
    assert built(statuses(ws)) == {"//lib:lib[linux/amd64]", "//lib:lib[linux/arm64]",
                                   "//app:app[linux/amd64]", "//app:app[linux/arm64]"}
    ws.write({"app/main.c": "int main = 2;\n"})
    assert built(statuses(ws)) == {"//app:app[linux/amd64]", "//app:app[linux/arm64]"}
    ws.write({"app/other.c": "int other = 2;\n"})
    assert built(statuses(ws)) == {"//app:other"}


def test_unrelated_edits_rebuild_nothing(ws):
    ws.write(WS)
    statuses(ws)
    ws.write({
        "README.txt": "changed\n",
        "lib/notes.md": "new file next to the sources\n",
        # a new target and a comment in a BUILD.yaml do not touch the existing targets' keys
        "app/BUILD.yaml": "# a comment\n" + ws.path("app/BUILD.yaml").read_text() + """
new:
  rule: command
  cmd: "true"
""",
    })
    st = statuses(ws)
    assert built(st) == {"//app:new"}


def test_attribute_edit_rebuilds_that_target(ws):
    ws.write(WS)
    statuses(ws)
    text = ws.path("app/BUILD.yaml").read_text()
    ws.write({"app/BUILD.yaml": text.replace("cat other.c", "cat other.c other.c")})
    assert built(statuses(ws)) == {"//app:other"}
    ws.write({"app/BUILD.yaml": text.replace("outs: [other]", "outs: [other]\n  env: {X: '1'}")})
    assert built(statuses(ws)) == {"//app:other"}


def test_identical_output_does_not_rebuild_dependents(ws):
    ws.write(WS)
    statuses(ws)
    text = ws.path("lib/BUILD.yaml").read_text()
    # a different command that produces the same bytes: the dependents' inputs are unchanged
    ws.write({"lib/BUILD.yaml": text.replace("cat src/*.c >", "cat src/a.c src/b.c >")})
    assert built(statuses(ws)) == {"//lib:lib[linux/amd64]", "//lib:lib[linux/arm64]"}


def test_copied_workspace_gets_cache_hits(make_ws):
    first = make_ws("first")
    first.write(WS)
    assert built(statuses(first)) == ALL_NODES
    copy = make_ws("elsewhere/second")
    shutil.rmtree(copy.root)
    shutil.copytree(first.root, copy.root, symlinks=True)
    shutil.rmtree(first.root)  # nothing may still point into the original
    assert statuses(copy) == dict.fromkeys(ALL_NODES, "cached")
    assert copy.path(".graphbuild/out/app/app@linux-arm64/app").read_text() == \
        "int a;\nint b;\nint main;\n"


def test_no_cache_rebuilds_everything(ws):
    ws.write(WS)
    statuses(ws)
    res = ws.run("run", "//app:other", "--no-cache", "--output", "json")
    assert res.code == 0, res
    ev = [e for e in res.events() if e["event"] == "action_finished"]
    assert [(e["status"], e["reason"]) for e in ev] == [("built", "--no-cache")]
    assert statuses(ws, "--no-cache") == dict.fromkeys(ALL_NODES, "built")
    assert built(statuses(ws)) == set()


def test_deleted_output_is_restored_from_the_store(ws):
    ws.write(WS)
    statuses(ws)
    out = ws.path(".graphbuild/out/lib/lib@linux-arm64")
    shutil.rmtree(out)
    shutil.rmtree(ws.path(".graphbuild/out/app"))
    assert statuses(ws) == dict.fromkeys(ALL_NODES, "cached")
    assert (out / "lib.a").read_text() == "int a;\nint b;\n"
    assert ws.path(".graphbuild/out/app/other@host/other").read_text() == "int other;\n"
    shutil.rmtree(ws.path(".graphbuild/cas"))
    shutil.rmtree(out)
    res = ws.run("run", "//lib", "--output", "json")
    ev = {e["node"]: e for e in res.events() if e["event"] == "action_finished"}
    # nothing to restore from: run it again, and say why
    assert ev["//lib:lib[linux/arm64]"]["status"] == "built"
    assert ev["//lib:lib[linux/arm64]"]["reason"] == "outputs missing from the cache"
    assert (out / "lib.a").read_text() == "int a;\nint b;\n"


def test_unreadable_cache_files_are_rebuilt_not_fatal(ws):
    ws.write(WS)
    statuses(ws)
    cache_dir = ws.path(".graphbuild")
    pickles = sorted(cache_dir.glob("*.pickle"))
    assert pickles  # the parse, stat and timing caches
    for path in pickles:
        path.write_bytes(b"\x80\x09not a pickle")
    assert statuses(ws) == dict.fromkeys(ALL_NODES, "cached")
    for part in cache_dir.glob("actions/cache.db*"):  # the database and its write-ahead log
        part.write_bytes(b"not a database " * 100)
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0 and "Traceback" not in res.err, res
    assert "action cache" in res.err and "unreadable" in res.err
    assert {e["status"] for e in res.events() if e["event"] == "action_finished"} == {"built"}
    assert statuses(ws) == dict.fromkeys(ALL_NODES, "cached")


def cache(ws, *args: str):
    res = ws.run("cache", *args)
    assert res.code == 0, res
    return res


def test_cache_stats_clean_gc(ws):
    ws.write(WS)
    ws.write({"app/BUILD.yaml": ws.path("app/BUILD.yaml").read_text().replace(
        "cat other.c > $OUT/other", "head -c 300000 /dev/urandom > $OUT/other")})
    statuses(ws)
    stats = json.loads(cache(ws, "stats", "--output", "json").out)
    assert stats["entries"] == 5 and stats["actions"] == {"Command": 5}
    assert stats["bytes"]["cas"] >= 300000
    plain = cache(ws, "stats").out
    assert "action entries: 5" in plain and "Command" in plain

    # replace the big output: gc frees the one nothing refers to any more
    ws.write({"app/BUILD.yaml": ws.path("app/BUILD.yaml").read_text().replace(
        "head -c 300000 /dev/urandom", "echo small")})
    assert built(statuses(ws)) == {"//app:other"}
    before = json.loads(cache(ws, "stats", "--output", "json").out)["bytes"]["cas"]
    assert before >= 300000
    gc = cache(ws, "gc").out
    assert "removed" in gc
    after = json.loads(cache(ws, "stats", "--output", "json").out)["bytes"]["cas"]
    assert after < before - 250000, (before, after)
    # what is still current stays cached after gc
    assert statuses(ws) == dict.fromkeys(ALL_NODES, "cached")

    cache(ws, "clean")
    assert not ws.path(".graphbuild").exists()
    assert json.loads(cache(ws, "stats", "--output", "json").out)["entries"] == 0
    assert statuses(ws) == dict.fromkeys(ALL_NODES, "built")


def test_a_build_remembers_what_the_next_no_op_checks(ws):
    """A built image's closure (everything its manifest or index reaches) is remembered by the
    build, so the first no-op after it checks sizes and reads no manifest back."""
    import pickle

    ws.write({"img/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64, linux/arm64]\n",
              "img/Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n", "img/a.txt": "a\n"})
    assert ws.run("run", "//img").code == 0
    oci = ws.path(".graphbuild/oci")
    built = {e["annotations"]["dev.graphbuild.label"]: e["digest"]
             for e in json.loads((oci / "index.json").read_text())["manifests"]}
    remembered = pickle.loads((oci / ".closures.pickle").read_bytes())
    for label in ("//img:img", "//img:img[linux/amd64]", "//img:img[linux/arm64]"):
        assert built[label] in remembered, label
