"""`run --affected-since GITREF PATTERN` builds what `affected` finds and what it needs; with
nothing affected it says so and succeeds. `affected` itself prints nothing and exits 0 then, so
`graphbuild affected --since REF | xargs -r graphbuild run` is a working idiom."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from test_engine_affected import commit, repo  # noqa: F401 - repo is a fixture


def built(res) -> list[str]:
    assert res.code == 0, res
    return sorted(e["node"] for e in res.events()
                  if e["event"] == "action_finished" and e["status"] == "built")


def test_builds_what_changed_and_its_dependents_only(repo):  # noqa: F811
    commit(repo, {"lib/src/a.c": "a2\n"})
    res = repo.run("run", "--affected-since", "HEAD~1", "//app:app", "//lib/...",
                   "--output", "json")
    assert built(res) == ["//app:app", "//lib:lib[linux/amd64]", "//lib:lib[linux/arm64]"]
    # //lib:docs did not change; the patterns keep //app:other out
    res = repo.run("run", "--affected-since", "HEAD~1", "//lib/...", "--output", "json")
    assert built(res) == []  # built already: cached


def test_builds_what_an_affected_target_needs(repo):  # noqa: F811
    commit(repo, {"app/main.c": "main2\n"})
    res = repo.run("run", "--affected-since", "HEAD~1", "//...", "--output", "json")
    # //app:app changed; it needs //lib:lib, built too though //lib did not change
    assert built(res) == ["//app:app", "//app:other", "//lib:lib[linux/amd64]",
                          "//lib:lib[linux/arm64]"]  # the group //app:all_apps holds :other


def test_nothing_affected_says_so_and_succeeds(repo):  # noqa: F811
    res = repo.run("run", "--affected-since", "HEAD", "//...")
    assert res.code == 0, res
    assert "nothing affected since HEAD in //...: nothing to build" in res.err, res
    assert not repo.path(".graphbuild/out").exists()


def test_bad_input(repo):  # noqa: F811
    res = repo.run("run", "--affected-since", "no-such-branch", "//...")
    assert res.code == 2 and "no-such-branch" in res.err and "hint:" in res.err, res
    res = repo.run("run", "--affected-since", "HEAD", "//lib:lib[linux/arm64]")
    assert res.code == 2 and "--affected-since takes target patterns" in res.err, res
    assert "hint: --platform linux/arm64" in res.err, res


@pytest.mark.parametrize("change, expect_built", [(False, False), (True, True)])
def test_affected_output_feeds_run(repo, change, expect_built):  # noqa: F811
    if change:
        repo.write({"lib/README.md": "new docs\n"})
    graphbuild = f"{shlex.quote(sys.executable)} -m graphbuild -C {shlex.quote(str(repo.root))}"
    proc = subprocess.run(["sh", "-c", f"{graphbuild} affected --since HEAD"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc
    assert proc.stdout == ("//lib:docs\n" if change else "")
    proc = subprocess.run(
        ["sh", "-c", f"{graphbuild} affected --since HEAD | xargs -r {graphbuild} run"],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc
    assert ("built   //lib:docs" in proc.stderr) == expect_built, proc
