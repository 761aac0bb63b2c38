"""A FROM or COPY --from name one edit away from a stage or context name is exit 2 at its
Dockerfile line with `did you mean`, before anything runs (it used to be pulled from docker.io,
costing seconds of retries and naming no line)."""

from __future__ import annotations

import time

import pytest

from graphbuild.backends.plan import one_edit_apart


@pytest.mark.parametrize("dockerfile,line,hint", [
    ("FROM scratch AS build\nCOPY a.txt /a\nFROM scratch\nCOPY --from=biuld /a /a\n", 4,
     "did you mean stage 'build'?"),
    ("FROM scratch AS build\nCOPY a.txt /a\nFROM buidl\n", 3, "did you mean stage 'build'?"),
    ("FROM bse\nCOPY a.txt /a\n", 1, "did you mean context 'base'?"),
])
def test_a_name_one_edit_from_a_stage_is_exit_2_at_its_line(ws, dockerfile, line, hint):
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "base/BUILD.yaml": "base:\n  rule: image\n",
        "base/Dockerfile": "FROM scratch\nCOPY b.txt /b\n",
        "base/b.txt": "b\n",
        "app/BUILD.yaml": "app:\n  rule: image\n  contexts: {base: '//base'}\n",
        "app/Dockerfile": dockerfile,
        "app/a.txt": "a\n",
    })
    t0 = time.monotonic()
    res = ws.run("run", "//app")
    assert res.code == 2, res
    assert time.monotonic() - t0 < 3  # no registry was asked
    assert f"app/Dockerfile:{line}: //app:app: " in res.err and hint in res.err, res.err
    assert "Traceback" not in res.err


def test_one_edit_apart():
    assert one_edit_apart("biuld", "build")  # neighbours swapped
    assert one_edit_apart("buld", "build") and one_edit_apart("builds", "build")
    assert one_edit_apart("bwild", "build")
    assert not one_edit_apart("build", "build") and not one_edit_apart("bilud", "build")
    assert not one_edit_apart("alpine", "build")


def test_a_stage_defined_further_down_is_exit_2_as_in_buildkit(ws):
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": "app:\n  rule: image\n",
        "app/Dockerfile": "FROM scratch AS app\nCOPY --from=tools /t /t\n"
                          "FROM scratch AS tools\nCOPY a.txt /t\nFROM app\n",
        "app/a.txt": "a\n",
    })
    t0 = time.monotonic()
    res = ws.run("run", "//app")
    assert res.code == 2 and time.monotonic() - t0 < 3, res
    assert "app/Dockerfile:2: //app:app: cannot copy from stage \"tools\"" in res.err, res.err
    assert "move `FROM … AS tools` above" in res.err
