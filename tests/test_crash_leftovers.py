"""What a crash or a full disk leaves in the cache directory never gives a traceback: an
unreadable index.json is set aside with a warning and written again; a store that lost its
layout files is repaired by the next run, a no-op included."""

from __future__ import annotations

import json

import pytest

from graphbuild.oci.store import Store

BROKEN = ["", "[]", '{"manifests": 5}', '{"manif', '{"manifests": [1]}',
          '{"manifests": [{"digest": 3}]}']


def _build(ws):
    ws.write({
        "app/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64]}\n",
        "app/Dockerfile": "FROM scratch\nCOPY f /f\n",
        "app/f": "x\n",
    })
    res = ws.run("run", "//app:img")
    assert res.code == 0, res
    return ws.root / ".graphbuild" / "oci"


@pytest.mark.parametrize("content", BROKEN)
def test_an_unreadable_index_is_set_aside_and_written_again(ws, content: str) -> None:
    oci = _build(ws)
    (oci / "index.json").write_text(content)
    res = ws.run("run", "//app:img")
    assert res.code == 0, res
    assert "index.json was unreadable; set aside as index.json.broken-" in res.err
    assert "Traceback" not in res.err
    assert [p.name for p in oci.glob("index.json.broken-*")]
    assert Store(oci).lookup("//app:img[linux/amd64]") is not None
    assert ws.run("inspect", "//app:img").code == 0
    json.loads((oci / "index.json").read_text())


@pytest.mark.parametrize("lost", ["oci-layout", "index.json"])
def test_a_no_op_repairs_a_store_without_its_layout_files(ws, lost: str) -> None:
    oci = _build(ws)
    (oci / lost).unlink()
    res = ws.run("run", "//app:img")
    assert res.code == 0, res
    assert json.loads((oci / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert Store(oci).lookup("//app:img[linux/amd64]") is not None
