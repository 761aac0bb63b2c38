"""Workspace discovery, labels and command-line patterns, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def cmd(name: str, deps: list[str] | None = None) -> str:
    text = f"{name}:\n  rule: command\n  cmd: mkdir -p $OUT && echo {name} > $OUT/f\n"
    if deps:
        text += "  deps: [" + ", ".join(f'"{d}"' for d in deps) + "]\n"
    return text


@pytest.fixture
def tree(ws):
    ws.write({
        "BUILD.yaml": cmd("top"),
        "a/BUILD.yaml": cmd("x") + cmd("y", [":x"]),
        "a/b/BUILD.yaml": cmd("b") + cmd("c", ["//a:y"]),
        "a/b/deep/BUILD.yaml": cmd("d"),
        "ab/BUILD.yaml": cmd("sibling"),
        "a/nopkg/file.txt": "not a package",
        ".hidden/BUILD.yaml": cmd("hidden"),
    })
    return ws


def query(ws, *args: str) -> list[str]:
    res = ws.run("query", *args)
    assert res.code == 0, res
    return res.out.split()


ALL = ["//:top", "//a:x", "//a:y", "//a/b:b", "//a/b:c", "//a/b/deep:d", "//ab:sibling"]


@pytest.mark.parametrize("pattern, expected", [
    ("//a/b:c", ["//a/b:c"]),
    ("//a/b", ["//a/b:b"]),
    ("//a:all", ["//a:x", "//a:y"]),
    ("//a/...", ["//a:x", "//a:y", "//a/b:b", "//a/b:c", "//a/b/deep:d"]),
    ("//a/b/...", ["//a/b:b", "//a/b:c", "//a/b/deep:d"]),
    ("//...", ALL),
    ("//:all", ["//:top"]),
    ("//:top", ["//:top"]),
])
def test_patterns(tree, pattern, expected):
    assert query(tree, pattern) == expected


def test_several_patterns_union_without_duplicates(tree):
    assert query(tree, "//a:all", "//a:x", "//ab:all") == ["//a:x", "//a:y", "//ab:sibling"]


def test_relative_label_resolves_in_its_package(tree):
    # //a:y depends on ":x" (//a:x); //a/b:c on //a:y
    assert query(tree, "//a/b:c", "--deps") == ["//a:x", "//a:y", "//a/b:c"]
    res = tree.run("query", "//a:y", "--output", "json")
    assert json.loads(res.out)["deps"] == ["//a:x"]


def test_run_pattern_builds_what_it_names(tree):
    res = tree.run("run", "//a/...", "--output", "json")
    assert res.code == 0, res
    labels = [e["label"] for e in res.events() if e["event"] == "action_finished"]
    assert sorted(labels) == sorted(["//a:x", "//a:y", "//a/b:b", "//a/b:c", "//a/b/deep:d"])
    started = next(e for e in res.events() if e["event"] == "build_started")
    assert sorted(started["targets"]) == sorted(labels)


def test_pattern_with_no_packages(tree):
    res = tree.run("query", "//nothing/...")
    assert res.code == 2 and "//nothing/..." in res.err and "Traceback" not in res.err, res
    res = tree.run("query", "//a/nopkg:all")
    assert res.code == 2 and "//a/nopkg" in res.err, res


def run_cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphbuild", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_workspace_found_from_a_subdirectory(tree):
    sub = tree.path("a/b/deep")
    proc = run_cli(["query", "//a:all"], sub)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["//a:x", "//a:y"]
    proc = run_cli(["run", "//a/b/deep:d", "--output", "plain"], sub)
    assert proc.returncode == 0, proc.stderr
    # the cache lives under the root, not under the directory the command ran in
    assert tree.path(".graphbuild/out/a/b/deep/d@host/f").read_text() == "d\n"
    assert not (sub / ".graphbuild").exists()


def test_workspace_chosen_with_C(tree, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for flag in ("-C", "--workspace"):
        proc = run_cli([flag, str(tree.root), "query", "//ab:all"], elsewhere)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["//ab:sibling"]
    # relative to the current directory, and after the subcommand
    proc = run_cli(["query", "-C", os.path.relpath(tree.root, elsewhere), "//ab:all"], elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["//ab:sibling"]


def test_nearest_workspace_wins(tmp_path):
    outer = tmp_path / "outer"
    inner = outer / "inner"
    (inner / "pkg").mkdir(parents=True)
    (outer / "WORKSPACE.yaml").write_text("")
    (outer / "BUILD.yaml").write_text(cmd("outer_target"))
    (inner / "WORKSPACE.yaml").write_text("")
    (inner / "pkg" / "BUILD.yaml").write_text(cmd("t"))
    proc = run_cli(["query", "//..."], inner / "pkg")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["//pkg:t"]


def test_workspace_settings_are_read(ws):
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/arm64]\njobs: 1\ncache_dir: build-cache\n",
        "p/BUILD.yaml": """
            t:
              rule: command
              cmd: mkdir -p $OUT && echo $TARGETPLATFORM > $OUT/p
              platforms: [linux/arm64, linux/riscv64]
        """,
    })
    res = ws.run("run", "//p:t", "--output", "json")
    assert res.code == 0, res
    started = next(e for e in res.events() if e["event"] == "build_started")
    assert started["jobs"] == 1
    plats = sorted(e["platform"] for e in res.events() if e["event"] == "action_finished")
    assert plats == ["linux/arm64", "linux/riscv64"]
    assert ws.path("build-cache/out/p/t@linux-riscv64/p").read_text() == "linux/riscv64\n"
    assert not ws.path(".graphbuild").exists()


def test_node_names_print_with_platform(ws):
    ws.write({"p/BUILD.yaml": """
        t:
          rule: command
          cmd: "true"
          platforms: [linux/arm64/v8, linux/arm/v7]
    """})
    res = ws.run("graph", "//p:t", "--format", "json")
    assert res.code == 0, res
    ids = sorted(n["id"] for n in json.loads(res.out)["nodes"])
    assert ids == ["//p:t[linux/arm/v7]", "//p:t[linux/arm64]"]
