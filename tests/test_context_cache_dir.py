"""The cache directory is never part of a build context: an image whose context is the
workspace root neither copies `.graphbuild/` nor rebuilds because the cache changed (it was
rebuilt on every run, with a new digest each time), with native and with buildah."""

from __future__ import annotations

import json
import tarfile

import pytest
from conftest import need_tool


def _root_context(ws, backend: str) -> None:
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "BUILD.yaml": f"app:\n  rule: image\n  backend: {backend}\n",
        "Dockerfile": "FROM scratch\nCOPY . /src/\n",
        "hello.txt": "hello\n",
    })


def _names_in_image(ws, tmp_path) -> set[str]:
    out = tmp_path / "app.tar"
    res = ws.run("export", "//:app", "-o", str(out), "--format", "docker")
    assert res.code == 0, res
    names = set()
    with tarfile.open(out) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                names.update(m.name for m in inner.getmembers())
    return names


@pytest.mark.parametrize("backend", ["native", "buildah"])
def test_a_root_context_leaves_out_the_cache_directory(ws, tmp_path, backend):
    if backend == "buildah":
        need_tool("buildah")
    _root_context(ws, backend)
    first = ws.run("run", "//...", "--output", "json")
    assert first.code == 0, first
    second = ws.run("run", "//...", "--output", "json")
    statuses = {e["node"]: e["status"] for e in second.events() if e["event"] == "action_finished"}
    assert set(statuses.values()) == {"cached"}, second.events()
    names = _names_in_image(ws, tmp_path)
    assert any(n.endswith("hello.txt") for n in names), names
    assert not [n for n in names if ".graphbuild" in n], sorted(names)[:20]


def test_a_dockerignore_exception_does_not_bring_the_cache_back(ws, tmp_path):
    _root_context(ws, "native")
    ws.write({".dockerignore": "*\n!hello.txt\n!Dockerfile\n!.graphbuild\n"})
    assert ws.run("run", "//...").code == 0
    names = _names_in_image(ws, tmp_path)
    assert any(n.endswith("hello.txt") for n in names)
    assert not [n for n in names if ".graphbuild" in n]

