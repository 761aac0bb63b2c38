"""Values: `vars:` in WORKSPACE.yaml, overridden by GRAPHBUILD_VAR_<NAME> and `--set NAME=VALUE`,
and the built-in git values, written as {NAME} in tags, build_args, labels and annotations."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

from graphbuild.oci.store import Store

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

WORKSPACE = """
    vars:
      REGISTRY: 127.0.0.1:5000
      VERSION: dev
"""
BUILD = textwrap.dedent("""
    img:
      rule: image
      platforms: [linux/amd64]
      build_args: {VERSION: "{VERSION}"}
      labels: {shell: "${HOME}", go: "{{.Name}}"}
      tags:
        - "{REGISTRY}/app:{VERSION}"
""")
FILES = {"p/Dockerfile": "FROM scratch\nARG VERSION\nCOPY a /a\n", "p/a": "a\n"}


@pytest.fixture
def vws(ws, monkeypatch):
    for name in list(os.environ):
        if name.startswith("GRAPHBUILD_VAR_"):
            monkeypatch.delenv(name)
    ws.write({"WORKSPACE.yaml": WORKSPACE, "p/BUILD.yaml": BUILD, **FILES})
    return ws


def tags(ws) -> list[str]:
    store = Store(ws.path(".graphbuild/oci"))
    return sorted(e["annotations"]["org.opencontainers.image.ref.name"] for e in store.entries()
                  if "org.opencontainers.image.ref.name" in e.get("annotations", {}))


def config(ws, tag: str) -> dict:
    store = Store(ws.path(".graphbuild/oci"))
    manifest = store.read_json(store.lookup(tag)["digest"])
    return store.read_json(manifest["config"]["digest"])["config"]


def statuses(res) -> dict[str, str]:
    assert res.code == 0, res
    return {e["node"]: e["status"] for e in res.events() if e["event"] == "action_finished"}


def test_defaults_environment_and_set(vws, monkeypatch):
    assert vws.run("run", "//p:img").code == 0
    assert tags(vws) == ["127.0.0.1:5000/app:dev"]
    monkeypatch.setenv("GRAPHBUILD_VAR_VERSION", "1.0")
    assert vws.run("run", "//p:img").code == 0
    assert tags(vws) == ["127.0.0.1:5000/app:1.0"]
    # --set beats the environment, before or after the command
    assert vws.run("--set", "VERSION=2.0", "run", "//p:img", "--set", "REGISTRY=localhost:5001"
                   ).code == 0
    assert tags(vws) == ["localhost:5001/app:2.0"]
    assert config(vws, "localhost:5001/app:2.0")["Labels"] == {"shell": "${HOME}",
                                                               "go": "{{.Name}}"}


def test_a_value_that_reaches_only_tags_rebuilds_nothing(vws):
    assert vws.run("run", "//p:img").code == 0
    res = vws.run("run", "//p:img", "--set", "REGISTRY=localhost:5001", "--output", "json")
    assert statuses(res) == {"//p:img[linux/amd64]": "cached"}
    assert tags(vws) == ["localhost:5001/app:dev"]


def test_a_value_that_reaches_build_args_is_an_input(vws):
    assert vws.run("run", "//p:img").code == 0
    res = vws.run("run", "//p:img", "--set", "VERSION=1.1", "--explain", "--output", "plain")
    assert res.code == 0, res
    assert "explain //p:img[linux/amd64]: attribute changed: build_args (VERSION)" in res.err, res
    assert "built   //p:img[linux/amd64]" in res.err


def test_unknown_value_is_exit_2_at_its_line_with_a_hint(vws):
    vws.write({"p/BUILD.yaml": BUILD + '    - "{REGISTRY}/app:{VERSON}"\n'})
    for command in (("run", "//p:img"), ("query", "//..."), ("graph", "//p:img")):
        res = vws.run(*command)
        assert res.code == 2 and "Traceback" not in res.err, res
        assert res.err.startswith("p/BUILD.yaml:8: //p:img: unknown value {VERSON} in 'tags'"), res
        assert "hint: did you mean 'VERSION'?" in res.err, res


def test_unknown_or_malformed_set_is_exit_2(vws):
    res = vws.run("run", "//p:img", "--set", "VERSON=1")
    assert res.code == 2 and "--set VERSON: no value of that name" in res.err, res
    assert "hint: did you mean 'VERSION'?" in res.err, res
    res = vws.run("cache", "stats", "--set", "VERSION")
    assert res.code == 2 and "expected NAME=VALUE" in res.err and "hint:" in res.err, res


def test_a_tag_that_expands_to_an_invalid_reference_is_exit_2_at_load(vws):
    for extra in ((), ("--push",), ("--dry-run",)):
        res = vws.run("run", "//p:img", "--set", "VERSION=1.0+build.7", *extra)
        assert res.code == 2 and "Traceback" not in res.err, res
        assert res.err.startswith("p/BUILD.yaml:7: //p:img: invalid tag "
                                  "'127.0.0.1:5000/app:1.0+build.7'"), res
        assert "{VERSION} is '1.0+build.7' (from --set)" in res.err, res
    assert not vws.path(".graphbuild/oci/index.json").exists()


@pytest.mark.parametrize("text, line, phrase", [
    ("vars: [A]\n", 1, "vars must map names to default values"),
    ("vars:\n  1X: a\n", 2, "'1X' is not a name"),
    ("vars:\n  git_sha: a\n", 2, "'git_sha' is built in"),
    ("vars:\n  A: [1]\n", 2, "'A' must be a string"),
])
def test_bad_vars_in_the_workspace(vws, text, line, phrase):
    vws.write({"WORKSPACE.yaml": text})
    res = vws.run("query", "//...")
    assert res.code == 2 and res.err.startswith(f"WORKSPACE.yaml:{line}: "), res
    assert phrase in res.err and "hint:" in res.err, res


def test_platform_templates_still_expand_per_platform(vws):
    vws.write({"p/BUILD.yaml": """
        img:
          rule: image
          platforms: [linux/amd64, linux/arm64]
          tags: ["{REGISTRY}/app:{VERSION}-{arch}"]
    """})
    assert vws.run("run", "//p:img").code == 0
    assert tags(vws) == ["127.0.0.1:5000/app:dev-amd64", "127.0.0.1:5000/app:dev-arm64"]


def test_manifest_annotations_and_tags(vws):
    vws.write({"p/BUILD.yaml": BUILD + textwrap.dedent("""
        m:
          rule: manifest
          images: [":img"]
          tags: ["{REGISTRY}/app:{VERSION}-index"]
          annotations: {org.opencontainers.image.version: "{VERSION}"}
    """)})
    assert vws.run("run", "//p:m", "--set", "VERSION=3.0").code == 0
    assert "127.0.0.1:5000/app:3.0-index" in tags(vws)
    res = vws.run("inspect", "//p:m")
    assert json.loads(res.out)["annotations"] == {"org.opencontainers.image.version": "3.0"}, res


# -- built-in git values -------------------------------------------------------------------------

GIT_BUILD = """
    img:
      rule: image
      platforms: [linux/amd64]
      labels:
        sha: "{git_sha}"
        branch: "{git_branch}"
        tag: "{git_tag}"
      tags: ["app:{git_short_sha}"]
"""


def git(root, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, check=True)
    return proc.stdout.strip()


def test_git_values(vws):
    vws.write({"p/BUILD.yaml": GIT_BUILD, ".gitignore": ".graphbuild/\n"})
    git(vws.root, "init", "-q", "-b", "main")
    git(vws.root, "add", "-A")
    git(vws.root, "commit", "-q", "-m", "one")
    sha, short = git(vws.root, "rev-parse", "HEAD"), git(vws.root, "rev-parse", "--short", "HEAD")
    assert vws.run("run", "//p:img").code == 0
    assert tags(vws) == [f"app:{short}"]
    assert config(vws, f"app:{short}")["Labels"] == {"sha": sha, "branch": "main", "tag": ""}
    git(vws.root, "tag", "v1.0")
    git(vws.root, "checkout", "-q", "--detach")
    assert vws.run("run", "//p:img").code == 0
    assert config(vws, f"app:{short}")["Labels"] == {"sha": sha, "branch": "", "tag": "v1.0"}


def test_git_values_outside_a_checkout(vws):
    vws.write({"p/BUILD.yaml": GIT_BUILD})
    res = vws.run("run", "//p:img")
    assert res.code == 2 and "Traceback" not in res.err, res
    assert res.err.startswith("p/BUILD.yaml:5: //p:img: {git_sha} has no value"), res
    assert "not in a git checkout" in res.err and "hint:" in res.err and "--set git_sha=" in res.err
    sets = ["--set", "git_sha=abc", "--set", "git_branch=main", "--set", "git_tag=v2"]
    res = vws.run("run", "//p:img", *sets, "--set", "git_short_sha=abc")
    assert res.code == 0, res
    assert tags(vws) == ["app:abc"]
