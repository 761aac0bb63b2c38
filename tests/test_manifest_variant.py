"""platform_annotations may set a variant alone (as `docker manifest annotate --variant` does):
it is checked against the entry's own platform, not against a guessed amd64."""

from __future__ import annotations

import json

BUILD = """
    arm: {rule: image, platforms: [linux/arm64]}
    armv7: {rule: image, platforms: [linux/arm/v7]}
    amd: {rule: image, platforms: [linux/amd64]}
    m:
      rule: manifest
      images: [":arm", ":armv7"]
      platform_annotations:
        ":arm": {variant: v8}
        ":armv7": {variant: v6}
"""
FILES = {"p/Dockerfile": "FROM scratch\nCOPY a.txt /a\n", "p/a.txt": "A\n"}


def index_platforms(ws) -> list[dict]:
    res = ws.run("inspect", "//p:m")
    assert res.code == 0, res
    return [m["platform"] for m in json.loads(res.out)["manifests"]]


def test_a_variant_alone_is_checked_against_the_entry_platform(ws):
    ws.write({**FILES, "p/BUILD.yaml": BUILD})
    res = ws.run("run", "//p:m")
    assert res.code == 0, res
    plats = index_platforms(ws)
    assert {"architecture": "arm64", "os": "linux", "variant": "v8"} in plats, plats
    assert {"architecture": "arm", "os": "linux", "variant": "v6"} in plats, plats


def test_a_variant_the_entry_platform_does_not_have_is_exit_2_at_its_line(ws):
    bad = BUILD.replace('images: [":arm", ":armv7"]', 'images: [":arm", ":amd"]').replace(
        '":armv7": {variant: v6}', '":amd": {variant: v8}')
    ws.write({**FILES, "p/BUILD.yaml": bad})
    for command in (("run", "//p:m"), ("query", "//p:m")):
        res = ws.run(*command)
        assert res.code == 2 and "Traceback" not in res.err, res
        assert res.err.startswith("p/BUILD.yaml:9: //p:m: unknown variant 'v8' for amd64"), res
        assert "hint: variants of amd64 are v1" in res.err, res
