"""What an image's Dockerfile reaches is remembered across runs (rules/_private/image_facts.py),
valid while every path it came from keeps its stat stamp. These tests let the cache trust paths
changed just now (the `trust_fresh_paths` fixture), check that the memo is written and used, and
then that each kind of change is still seen through it."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile

from graphbuild.oci.store import Store


def _run(ws, *args):
    res = ws.run("run", "//...", "--output", "json", *args)
    assert res.code == 0, res
    return {e["node"]: e["status"] for e in res.events() if e["event"] == "action_finished"}


def _remembered(ws) -> list:
    with open(ws.path(".graphbuild/tree-cache.pickle"), "rb") as fh:
        return [k for k in pickle.load(fh) if k[0] == "image-facts"]


def _files(ws, node: str) -> dict[str, bytes]:
    s = Store(ws.root / ".graphbuild" / "oci")
    manifest = s.read_json(s.lookup(node)["digest"])
    out: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(s.read_bytes(layer["digest"])), mode="r:gz") as tar:
            for m in tar:
                if m.isfile():
                    out[m.name] = tar.extractfile(m).read()
    return out


AMD, ARM = "//img:img[linux/amd64]", "//img:img[linux/arm64]"
BASE = {
    "img/BUILD.yaml": """
        img:
          rule: image
          platforms: [linux/amd64, linux/arm64]
          build_args: {SRC: one.txt}
    """,
    "img/Dockerfile": "FROM scratch\nARG SRC\nCOPY $SRC /x\nCOPY app/ /app/\n",
    "img/one.txt": "1\n",
    "img/two.txt": "2\n",
    "img/app/a.txt": "a\n",
}


def _remembered_workspace(ws):
    ws.write(BASE)
    assert set(_run(ws).values()) == {"built"}
    assert set(_run(ws).values()) == {"cached"}
    assert len(_remembered(ws)) == 1  # written and trusted: what follows goes through it


def test_dockerfile_edit_is_seen(ws, trust_fresh_paths):
    _remembered_workspace(ws)
    ws.write({"img/Dockerfile": "FROM scratch\nARG SRC\nCOPY $SRC /y\nCOPY app/ /app/\n"})
    assert _run(ws)[AMD] == "built"
    assert set(_files(ws, ARM)) == {"y", "app/a.txt"}


def test_build_arg_change_reads_another_file(ws, trust_fresh_paths):
    _remembered_workspace(ws)
    ws.write({"img/BUILD.yaml": BASE["img/BUILD.yaml"].replace("one.txt", "two.txt")})
    assert _run(ws)[AMD] == "built"
    assert _files(ws, AMD)["x"] == b"2\n"
    assert _run(ws)[AMD] == "cached"
    ws.write({"img/two.txt": "22\n"})  # the file the new argument names is an input now
    assert _run(ws)[ARM] == "built"


def test_dockerignore_appearing_and_changing_is_seen(ws, trust_fresh_paths):
    _remembered_workspace(ws)
    ws.write({"img/.dockerignore": "app/a.txt\n"})
    assert _run(ws)[AMD] == "built"
    assert "app/a.txt" not in _files(ws, AMD)
    _run(ws)
    ws.write({"img/.dockerignore": "one.txt\n"})  # same directory, new content
    res = ws.run("run", "//img:img")
    assert res.code == 2 and "one.txt" in res.err, res  # the ARG's file is excluded now
    ws.write({"img/.dockerignore": "app/a.txt\n", "img/Dockerfile.dockerignore": "# none\n"})
    assert _run(ws)[AMD] == "built"  # the Dockerfile's own ignore file wins
    assert set(_files(ws, AMD)) == {"x", "app/a.txt"}


def test_new_file_in_a_copied_directory_is_seen(ws, trust_fresh_paths):
    _remembered_workspace(ws)
    ws.write({"img/app/deeper/b.txt": "b\n"})
    assert _run(ws)[AMD] == "built"
    assert set(_files(ws, AMD)) == {"x", "app/a.txt", "app/deeper/b.txt"}


def test_store_emptied_rebuilds_from_the_dockerfile_read_again(ws, trust_fresh_paths):
    _remembered_workspace(ws)
    os.rename(ws.path(".graphbuild/oci"), ws.path("old-store"))
    statuses = _run(ws)  # the facts are remembered; the plan is made again to build
    assert statuses[AMD] == statuses[ARM] == "built"
    assert _files(ws, ARM) == {"x": b"1\n", "app/a.txt": b"a\n"}


def test_dockerfile_removed_is_exit_2(ws, trust_fresh_paths):
    _remembered_workspace(ws)
    os.remove(ws.path("img/Dockerfile"))
    res = ws.run("run", "//img:img")
    assert res.code == 2, res
    assert "Dockerfile 'img/Dockerfile' not found" in res.err and "Traceback" not in res.err


def test_context_behind_a_symlink_follows_the_link(ws, tmp_path, trust_fresh_paths):
    ws.write({
        "img/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64]\n  context: ctx\n",
        "img/Dockerfile": "FROM scratch\nCOPY f /f\n",
        "img/a/f": "from a\n",
        "img/b/f": "from b\n",
    })
    os.symlink("a", ws.path("img/ctx"))
    assert _run(ws) == {AMD: "built"}
    os.remove(ws.path("img/ctx"))
    os.symlink("b", ws.path("img/ctx"))
    assert _run(ws) == {AMD: "built"}
    assert _files(ws, AMD)["f"] == b"from b\n"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_text("outside\n")
    os.remove(ws.path("img/ctx"))
    os.symlink(tmp_path / "out", ws.path("img/ctx"))
    res = ws.run("run", "//img:img")
    assert res.code == 2 and "leads outside the workspace" in res.err, res


def test_dockerfile_rewritten_during_the_build_fails_that_node(ws, trust_fresh_paths):
    """The plan is made again at build time from the Dockerfile analysis saw; a dependency that
    rewrites it mid-build makes the image fail with a clear reason rather than build from text
    the key did not describe."""
    ws.write({
        "gen/BUILD.yaml": """
            gen:
              rule: command
              srcs: [trigger]
              cmd: "if [ -f flag ]; then echo 'LABEL late=1' >> ../img/Dockerfile; fi; echo > $OUT/o"
        """,
        "gen/trigger": "1\n",
        "img/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64]\n  deps: [//gen]\n",
        "img/Dockerfile": "FROM scratch\nCOPY f /f\n",
        "img/f": "f\n",
    })
    assert set(_run(ws).values()) == {"built"}
    assert set(_run(ws).values()) == {"cached"}
    assert _remembered(ws)
    ws.write({"gen/flag": "", "gen/trigger": "2\n"})
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 1, res
    done = {e["node"]: e for e in res.events() if e["event"] == "action_finished"}
    assert done["//gen:gen"]["status"] == "built"
    assert done[AMD]["status"] == "failed"
    assert "img/Dockerfile changed while the build ran: run it again" in done[AMD]["reason"]
    os.remove(ws.path("gen/flag"))
    assert _run(ws)[AMD] == "built"  # the next run reads the new text


def test_named_directory_context_is_watched_too(ws, trust_fresh_paths):
    """COPY --from a named directory context: its walk is part of the remembered facts."""
    ws.write({
        "img/BUILD.yaml": """
            img:
              rule: image
              platforms: [linux/amd64]
              contexts: {shared: ../common}
        """,
        "img/Dockerfile": "FROM scratch\nCOPY --from=shared conf/ /conf/\n",
        "common/conf/a.conf": "a\n",
    })
    assert _run(ws) == {AMD: "built"}
    assert _run(ws) == {AMD: "cached"}
    assert _remembered(ws)
    ws.write({"common/conf/b.conf": "b\n"})  # a new file in the named context's directory
    assert _run(ws) == {AMD: "built"}
    assert set(_files(ws, AMD)) == {"conf/a.conf", "conf/b.conf"}
    ws.write({"common/conf/a.conf": "changed\n"})
    assert _run(ws) == {AMD: "built"}
    assert _files(ws, AMD)["conf/a.conf"] == b"changed\n"


def test_facts_the_first_build_remembers_survive_its_creating_the_cache_dir(ws,
                                                                          trust_fresh_paths):
    """The first build creates .graphbuild at the workspace root, which changes the root's
    times. The root is only on the way to img/ (stamped by identity, not its times), so the
    next no-op uses the facts that build remembered instead of reading the Dockerfile again."""
    ws.write(BASE)
    assert not ws.path(".graphbuild").exists()
    assert set(_run(ws).values()) == {"built"}
    first = _remembered_entries(ws)
    assert len(first) == 1
    assert set(_run(ws).values()) == {"cached"}
    assert _remembered_entries(ws) == first  # not computed and stamped again


def _remembered_entries(ws) -> dict:
    with open(ws.path(".graphbuild/tree-cache.pickle"), "rb") as fh:
        return {k: v for k, v in pickle.load(fh).items() if k[0] == "image-facts"}


def test_a_directory_on_the_way_replaced_is_seen(ws, tmp_path, trust_fresh_paths):
    """A directory leading to the Dockerfile and context, replaced by another, is seen through
    the remembered facts (and so is the first one put back)."""
    nested = {f"svc/{k}": v for k, v in BASE.items()}
    ws.write(nested)
    node = "//svc/img:img[linux/amd64]"
    assert set(_run(ws).values()) == {"built"}
    assert _run(ws)[node] == "cached" and _remembered(ws)
    os.rename(ws.path("svc"), tmp_path / "svc.old")
    ws.write({**nested, "svc/img/one.txt": "one, replaced\n"})
    assert _run(ws)[node] == "built"
    assert _files(ws, node)["x"] == b"one, replaced\n"
    shutil.rmtree(ws.path("svc"))
    os.rename(tmp_path / "svc.old", ws.path("svc"))
    assert _run(ws)[node] == "cached"
    assert _files(ws, node)["x"] == b"1\n"
