"""`graphbuild affected --since GITREF` against a real git repository made in a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

WS = {
    "lib/BUILD.yaml": """
        lib:
          rule: command
          cmd: cat src/*.c > /dev/null
          srcs: ["src/**/*.c"]
          platforms: [linux/amd64, linux/arm64]
        docs:
          rule: command
          cmd: "true"
          srcs: ["*.md"]
    """,
    "lib/src/a.c": "a\n",
    "lib/src/b.c": "b\n",
    "lib/README.md": "docs\n",
    "lib/CHANGES.md": "changes\n",
    "app/BUILD.yaml": """
        app:
          rule: command
          cmd: cat main.c
          srcs: [main.c]
          deps: ["//lib"]
        other:
          rule: command
          cmd: echo other
        all_apps:
          rule: group
          targets: [":app", ":other"]
    """,
    "app/main.c": "main\n",
    "unrelated/notes.txt": "x\n",
    ".gitignore": ".graphbuild/\n",
}


def git(root, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def repo(ws):
    if shutil.which("git") is None:
        pytest.fail("git is required")
    ws.write(WS)
    git(ws.root, "init", "-q", "-b", "main")
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-q", "-m", "initial")
    return ws


def commit(ws, files: dict[str, str] | None = None, remove: list[str] | None = None) -> None:
    if files:
        ws.write(files)
    for rel in remove or []:
        ws.path(rel).unlink()
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-q", "-m", "change")


def affected(ws, *args: str) -> list[str]:
    res = ws.run("affected", *args)
    assert res.code == 0, res
    return res.out.split()


def test_nothing_changed(repo):
    assert affected(repo, "--since", "HEAD") == []
    repo.write({"unrelated/notes.txt": "changed\n"})
    assert affected(repo, "--since", "HEAD") == []


def test_changed_src_affects_target_and_dependents(repo):
    commit(repo, {"lib/src/a.c": "a2\n"})
    assert affected(repo, "--since", "HEAD~1") == ["//app:all_apps", "//app:app", "//lib:lib"]
    # and nothing since the latest commit
    assert affected(repo, "--since", "HEAD") == []


def test_glob_with_double_star_and_working_tree_changes(repo):
    repo.write({"lib/src/deep/er/c.c": "c\n"})  # untracked, matched by src/**/*.c
    assert affected(repo, "--since", "HEAD") == ["//app:all_apps", "//app:app", "//lib:lib"]


def test_file_names_with_special_characters(repo):
    commit(repo, {"lib/src/\u00e9t\u00e9 x.c": "summer\n"})
    assert affected(repo, "--since", "HEAD~1") == ["//app:all_apps", "//app:app", "//lib:lib"]
    repo.write({"lib/src/\u00e9t\u00e9 x.c": "winter\n"})
    assert affected(repo, "--since", "HEAD") == ["//app:all_apps", "//app:app", "//lib:lib"]


def test_untracked_file_outside_any_glob(repo):
    repo.write({"lib/src/notes.txt": "n\n", "app/new.c": "n\n"})
    assert affected(repo, "--since", "HEAD") == []


def test_deleted_src_counts(repo):
    commit(repo, remove=["lib/src/b.c"])
    assert affected(repo, "--since", "HEAD~1") == ["//app:all_apps", "//app:app", "//lib:lib"]
    repo.path("lib/README.md").unlink()  # not committed: the working tree counts
    assert affected(repo, "--since", "HEAD") == ["//lib:docs"]


def test_build_file_edit_affects_only_that_target(repo):
    text = repo.path("app/BUILD.yaml").read_text()
    commit(repo, {"app/BUILD.yaml": text.replace("echo other", "echo changed")})
    assert affected(repo, "--since", "HEAD~1") == ["//app:all_apps", "//app:other"]
    # a comment or reordering changes no target
    commit(repo, {"app/BUILD.yaml": "# comment\n" + repo.path("app/BUILD.yaml").read_text()})
    assert affected(repo, "--since", "HEAD~1") == []
    # a new target is affected, and so is what now depends on it
    commit(repo, {"lib/BUILD.yaml": repo.path("lib/BUILD.yaml").read_text()
                  + "extra:\n  rule: command\n  cmd: 'true'\n"})
    assert affected(repo, "--since", "HEAD~1") == ["//lib:extra"]
    lib_text = repo.path("lib/BUILD.yaml").read_text()
    old = "cmd: cat src/*.c > /dev/null"
    commit(repo, {"lib/BUILD.yaml": lib_text.replace(old, old + "\n  deps: [':extra']")})
    assert affected(repo, "--since", "HEAD~1") == ["//app:all_apps", "//app:app", "//lib:lib"]
    assert affected(repo, "--since", "HEAD~4") == [
        "//app:all_apps", "//app:app", "//app:other", "//lib:extra", "//lib:lib"]


def test_pattern_limits_the_answer(repo):
    commit(repo, {"lib/src/a.c": "a2\n"})
    assert affected(repo, "--since", "HEAD~1", "//app:all") == [
        "//app:all_apps", "//app:app"]
    assert affected(repo, "--since", "HEAD~1", "//lib/...") == ["//lib:lib"]


def test_cache_dir_is_not_an_input(ws):
    ws.write({**WS, ".gitignore": "", "BUILD.yaml": "everything:\n  rule: command\n"
              "  cmd: 'true'\n  srcs: ['**/*']\n"})
    git(ws.root, "init", "-q", "-b", "main")
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-q", "-m", "initial")
    assert ws.run("run", "//...").code == 0  # fills the (untracked) cache dir
    assert ws.path(".graphbuild/out").is_dir()
    assert affected(ws, "--since", "HEAD") == []
    ws.write({"unrelated/notes.txt": "changed\n"})
    assert affected(ws, "--since", "HEAD") == ["//:everything"]


def test_new_package_is_affected(repo):
    repo.write({"svc/BUILD.yaml": "s:\n  rule: command\n  cmd: 'true'\n"})
    assert affected(repo, "--since", "HEAD") == ["//svc:s"]


def test_workspace_below_the_repository_root(tmp_path):
    from conftest import WorkspaceFixture

    ws = WorkspaceFixture(tmp_path / "repo" / "build" / "ws")
    ws.write(WS)
    top = tmp_path / "repo"
    (top / "other.txt").write_text("x\n")
    git(top, "init", "-q", "-b", "main")
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "initial")
    ws.write({"app/main.c": "main2\n", "../../other.txt": "y\n"})
    assert affected(ws, "--since", "HEAD") == ["//app:all_apps", "//app:app"]


@pytest.mark.parametrize("ref", ["no-such-branch", "HEAD~5"])
def test_bad_ref_is_exit_2(repo, ref):
    res = repo.run("affected", "--since", ref)
    assert res.code == 2 and "Traceback" not in res.err, res
    assert ref in res.err and "hint:" in res.err, res


def test_not_a_git_repository(ws):
    ws.write(WS)
    res = ws.run("affected", "--since", "HEAD")
    assert res.code == 2 and "Traceback" not in res.err, res
    assert "hint:" in res.err
