"""`graphbuild query`: every target a pattern names is listed, whatever else depends on it and
whatever the order of the patterns; and the top-level usage (--version, usage hints)."""

from __future__ import annotations

import shutil

from conftest import REPO, WorkspaceFixture

WS = {
    "base/BUILD.yaml": """
        base:
          rule: image
          platforms: [linux/amd64]
    """,
    "base/Dockerfile": "FROM scratch\n",
    "app/BUILD.yaml": """
        group:
          rule: group
          targets: [":api", ":web"]
        api:
          rule: image
          platforms: [linux/amd64]
          contexts: {base: "//base"}
        web:
          rule: image
          platforms: [linux/amd64]
        tool:
          rule: command
          cmd: "true"
    """,
    "app/Dockerfile": "FROM scratch\n",
}
ALL = ["//app:api", "//app:group", "//app:tool", "//app:web", "//base:base"]


def labels(res) -> list[str]:
    assert res.code == 0, res
    return res.out.split()


def test_query_lists_targets_that_an_earlier_target_depends_on(ws):
    ws.write(WS)
    assert labels(ws.run("query", "//...")) == ALL
    # //app:group is loaded first and pulls in :api, :web and //base: they are still named
    assert labels(ws.run("query", "//app:group", "//app:api")) == ["//app:api", "//app:group"]


def test_query_kind_image_lists_every_image(ws):
    ws.write(WS)
    assert labels(ws.run("query", "//...", "--kind", "image")) == [
        "//app:api", "//app:web", "//base:base"]


def test_query_does_not_depend_on_the_order_of_patterns(ws):
    ws.write(WS)
    a = labels(ws.run("query", "//app:group", "//base", "//app:web"))
    b = labels(ws.run("query", "//app:web", "//base", "//app:group"))
    assert a == b == ["//app:group", "//app:web", "//base:base"]
    assert labels(ws.run("query", "//app:group", "//app:group")) == ["//app:group"]


def test_query_on_the_example_monorepo_lists_every_target(tmp_path):
    root = tmp_path / "monorepo"
    shutil.copytree(REPO / "examples" / "monorepo", root,
                    ignore=shutil.ignore_patterns(".graphbuild"))
    got = labels(WorkspaceFixture(root).run("query", "//..."))
    assert {"//services/api:image", "//services/web:web", "//platforms:armv7"} <= set(got), got
    images = labels(WorkspaceFixture(root).run("query", "//...", "--kind", "image"))
    assert "//services/api:image" in images and "//base:base" in images, images


def test_version(ws):
    from graphbuild import __version__

    res = ws.run("--version")
    assert res.code == 0 and res.out.strip() == f"graphbuild {__version__}", res


def test_top_level_usage_error_hints_the_real_help_command(ws):
    res = ws.run("biuld")
    assert res.code == 2, res
    assert "hint: graphbuild --help" in res.err and "graphbuild graphbuild" not in res.err, res
    res = ws.run("run")  # a subcommand's usage error names that subcommand
    assert res.code == 2 and "hint: graphbuild run --help" in res.err, res
