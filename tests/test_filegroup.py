"""`command` inputs that cannot go stale silently (issue 13, item 6): every `srcs` pattern must
match a file (exit 2 otherwise, as Bazel's allow_empty = False), and a file outside the package
(a shared tools/build.sh) is declared by a `filegroup` and listed in `deps`, so editing it reruns
the commands using it and `affected` names them."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

SHARED = {
    "tools/BUILD.yaml": "scripts: {rule: filegroup, srcs: [build.sh, 'lib/*.sh']}\n",
    "tools/build.sh": "echo v1\n",
    "tools/lib/common.sh": "echo common\n",
    "tools/unused.txt": "not in the filegroup\n",
    "app/BUILD.yaml": """
        app:
          rule: command
          cmd: sh ../tools/build.sh > $OUT/app
          srcs: [main.c]
          outs: [app]
          deps: [//tools:scripts]
        bystander:
          rule: command
          cmd: "true"
          srcs: [main.c]
    """,
    "app/main.c": "int main;\n",
    ".gitignore": ".graphbuild/\n",
}


def statuses(ws, *patterns: str) -> dict[str, dict]:
    res = ws.run("run", *patterns, "--output", "json")
    assert res.code == 0, res
    return {e["label"]: e for e in res.events() if e["event"] == "action_finished"}


def refused(ws, where: str, *phrases: str) -> str:
    res = ws.run("run", "//...")
    assert res.code == 2, res
    assert "Traceback" not in res.out + res.err, res
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert lines[0].startswith(where + ": "), res
    for phrase in phrases:
        assert phrase in lines[0], res
    assert any(line.strip().startswith("hint:") for line in lines[1:]), res
    return res.err


def test_a_srcs_pattern_matching_nothing_is_exit_2(ws):
    ws.write({
        "c/BUILD.yaml": """
            lib:
              rule: command
              cmd: "true"
              srcs: [main.c, "docs/*.md"]
        """,
        "c/main.c": "x\n",
    })
    err = refused(ws, "c/BUILD.yaml:4", "//c:lib", "'docs/*.md' matches no files")
    assert "filegroup" in err  # the hint says how to name a file elsewhere
    ws.write({"c/docs/a.md": "doc\n"})
    assert statuses(ws, "//c:lib")["//c:lib"]["status"] == "built"


def test_a_literal_srcs_name_that_does_not_exist_is_exit_2(ws):
    ws.write({
        "c/BUILD.yaml": "lib: {rule: command, cmd: 'true', srcs: [main.c, mian.c]}\n",
        "c/main.c": "x\n",
    })
    refused(ws, "c/BUILD.yaml:1", "'mian.c' matches no files")


def test_a_filegroup_pattern_matching_nothing_is_exit_2(ws):
    ws.write({**SHARED, "tools/BUILD.yaml": "scripts: {rule: filegroup, srcs: [biuld.sh]}\n"})
    refused(ws, "tools/BUILD.yaml:1", "//tools:scripts", "'biuld.sh' matches no files")


def test_editing_a_filegroup_file_reruns_its_users_only(ws):
    ws.write(SHARED)
    first = statuses(ws, "//app:all")
    assert first["//app:app"]["status"] == "built"
    assert ws.path(".graphbuild/out/app/app@host/app").read_text() == "v1\n"
    assert statuses(ws, "//app:all")["//app:app"]["status"] == "cached"
    ws.write({"tools/unused.txt": "edited, but no input\n"})
    assert statuses(ws, "//app:all")["//app:app"]["status"] == "cached"
    ws.write({"tools/build.sh": "echo v2\n"})
    after = statuses(ws, "//app:all")
    assert after["//app:app"]["status"] == "built", after
    assert "tools/build.sh" in after["//app:app"]["reason"]
    assert ws.path(".graphbuild/out/app/app@host/app").read_text() == "v2\n"
    assert after["//app:bystander"]["status"] == "cached"
    ws.write({"tools/lib/added.sh": "echo new\n"})  # a new file the glob matches
    after = statuses(ws, "//app:all")
    assert after["//app:app"]["status"] == "built", after
    assert "tools/lib/added.sh" in after["//app:app"]["reason"]


def test_a_filegroup_through_a_group_and_of_filegroups(ws):
    ws.write({
        **SHARED,
        "tools/BUILD.yaml": """
            sh: {rule: filegroup, srcs: [build.sh]}
            scripts: {rule: filegroup, srcs: ['lib/*.sh'], deps: [':sh']}
            both: {rule: group, targets: [':scripts']}
        """,
        "app/BUILD.yaml": """
            app:
              rule: command
              cmd: sh ../tools/build.sh > $OUT/app
              srcs: [main.c]
              deps: [//tools:both]
        """,
    })
    assert statuses(ws, "//app:app")["//app:app"]["status"] == "built"
    ws.write({"tools/build.sh": "echo v2\n"})
    assert statuses(ws, "//app:app")["//app:app"]["status"] == "built"


def test_affected_names_the_users_of_a_changed_filegroup_file(ws):
    if shutil.which("git") is None:
        pytest.fail("git is required")
    ws.write(SHARED)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=ws.root, env={**os.environ, **GIT_ENV}, check=True,
                       capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "initial")
    ws.write({"tools/build.sh": "echo v2\n"})
    git("commit", "-q", "-am", "edit the shared script")
    res = ws.run("affected", "--since", "HEAD~1")
    assert res.code == 0, res
    assert "//app:app" in res.out.split() and "//app:bystander" not in res.out.split(), res


def test_a_srcs_symlink_brings_its_target_as_an_input(ws):
    """An input symlink is hashed as its text (never followed); a command reading through one
    lists the workspace file it leads to as well, so editing that file reruns it."""
    ws.write({
        "c/BUILD.yaml": "lib: {rule: command, cmd: 'cat link.txt > $OUT/o', srcs: ['*.txt']}\n",
        "common/real.txt": "one\n",
    })
    os.symlink("../common/real.txt", ws.path("c/link.txt"))
    assert statuses(ws, "//c:lib")["//c:lib"]["status"] == "built"
    assert statuses(ws, "//c:lib")["//c:lib"]["status"] == "cached"
    ws.write({"common/real.txt": "two\n"})
    ev = statuses(ws, "//c:lib")["//c:lib"]
    assert ev["status"] == "built" and "common/real.txt" in ev["reason"], ev
