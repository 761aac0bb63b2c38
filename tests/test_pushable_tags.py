"""A tag that no registry would take (an upper-case repository, a '+' in the tag) is exit 2 at
load for every command, not only at the end of a `run --push`."""

from __future__ import annotations

import pytest

COMMANDS = [("run", "//p:all"), ("run", "//p:all", "--dry-run"), ("query", "//p:all"),
            ("graph", "//p:all")]


def workspace(ws, rule_tags: str, rule: str = "image") -> None:
    build = "img: {rule: image, platforms: [linux/amd64, linux/arm64]}\n"
    if rule == "image":
        build = f"img:\n  rule: image\n  platforms: [linux/amd64, linux/arm64]\n  tags: {rule_tags}\n"
    else:
        build += f"m:\n  rule: manifest\n  images: [':img']\n  tags: {rule_tags}\n"
    ws.write({"p/BUILD.yaml": build, "p/Dockerfile": "FROM scratch\nCOPY a /a\n", "p/a": "a\n"})


@pytest.mark.parametrize("rule, tags, line, fixed", [
    ("image", '["127.0.0.1:5111/ACME/Gateway:1"]', 4, "'127.0.0.1:5111/acme/gateway:1'"),
    ("image", '["web:v3.1.1+build.7"]', 4, "'web:v3.1.1-build.7'"),
    ("image", '["Web:{arch}"]', 4, "'web:arm'"),
    ("manifest", '["127.0.0.1:5111/ACME/Gateway:1"]', 5, "'127.0.0.1:5111/acme/gateway:1'"),
    ("manifest", '["web:v3.1.1+build.7"]', 5, "'web:v3.1.1-build.7'"),
])
def test_unpushable_tag_is_exit_2_at_load_for_every_command(ws, rule, tags, line, fixed):
    workspace(ws, tags, rule)
    label = "//p:img" if rule == "image" else "//p:m"
    for command in COMMANDS:
        res = ws.run(*command)
        assert res.code == 2 and "Traceback" not in res.err, (command, res)
        assert res.err.startswith(f"p/BUILD.yaml:{line}: {label}: invalid tag "), (command, res)
        assert f"hint: registries refuse it: write {fixed}" in res.err, (command, res)
    assert not ws.path(".graphbuild/oci/index.json").exists()  # nothing was built


def test_pushable_tags_are_accepted(ws):
    workspace(ws, '["127.0.0.1:5111/acme/gateway:1", "localhost/a_b/c-d:v3.1.1-build.7"]')
    res = ws.run("run", "//p:all")
    assert res.code == 0, res
