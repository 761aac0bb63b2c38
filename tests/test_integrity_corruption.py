"""Store and CAS corruption is noticed: sizes on a no-op, digests whenever bytes are read (export,
push, a build's inputs). What is damaged makes its node rebuild, and the run says why; `export`
of a damaged image is exit 1 and writes nothing; `cache verify [--repair]` checks everything."""

from __future__ import annotations

import hashlib
import json
import tarfile

import integrity_ws as iw
import pytest
import registry_fixtures as fx

registry = fx.registry

PARTS = ("manifest", "config", "layer0", "layer1")


def _one_warning(res, text: str) -> None:
    """The run said what it found damaged in one warning line (whatever the output mode)."""
    warnings = [line for line in res.err.splitlines() if "warning" in line]
    assert len(warnings) == 1, res.err
    assert warnings[0].startswith(f"graphbuild: warning: {text}"), res.err
    assert warnings[0].endswith("; rebuilding it"), res.err


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
@pytest.mark.parametrize("part", PARTS)
def test_damaged_image_is_never_exported_and_rebuilds(ws, tmp_path, part, how):
    ws.write(iw.files())
    iw.build(ws)
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}
    iw.damage(iw.blob_file(ws, iw.image_blobs(ws)[part]), how)
    out = tmp_path / "img.tar"
    res = ws.run("export", iw.IMG, "-o", str(out))
    assert res.code == 1 and "Traceback" not in res.err, res
    assert "corrupt" in res.err or "not in the store" in res.err or "missing" in res.err, res
    assert not out.exists()  # never a corrupt archive
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0, res
    assert iw.statuses(res) == {iw.GEN: "cached", iw.IMG: "built"}
    assert "cached image damaged" in iw.reasons(res)[iw.IMG]
    _one_warning(res, f"{iw.IMG}: cached image damaged: ")
    res = ws.run("export", iw.IMG, "-o", str(out))
    assert res.code == 0, res
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            if member.name.startswith("blobs/sha256/") and member.isfile():
                data = tar.extractfile(member).read()
                assert hashlib.sha256(data).hexdigest() == member.name.rsplit("/", 1)[1]
    assert iw.verify_json(ws)["ok"]


@pytest.mark.parametrize("how", ["truncate", "delete"])
def test_no_op_checks_sizes_and_rebuilds_what_is_damaged(ws, how):
    ws.write(iw.files())
    iw.build(ws)
    iw.damage(iw.blob_file(ws, iw.image_blobs(ws)["layer1"]), how)
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0 and iw.statuses(res)[iw.IMG] == "built", res
    assert "cached image damaged: blob sha256:" in iw.reasons(res)[iw.IMG]
    assert iw.file_in_image(ws, "big.bin") == bytes(range(256)) * 400
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}


@pytest.mark.parametrize("part", ["config", "manifest"])
def test_a_rebuild_does_not_keep_a_blob_damaged_in_place(ws, part):
    """A layer deleted makes the image rebuild; its config (or manifest) was also flipped in
    place, the same size, which no size check sees. The rebuild makes the same bytes: it must
    write them again, not record the new image over the damaged copy."""
    ws.write(iw.files())
    iw.build(ws)
    blobs = iw.image_blobs(ws)
    iw.damage(iw.blob_file(ws, blobs["layer1"]), "delete")
    iw.damage(iw.blob_file(ws, blobs[part]), "flip")
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0 and iw.statuses(res)[iw.IMG] == "built", res
    assert iw.image_blobs(ws) == blobs  # the same image again
    assert iw.verify_json(ws)["ok"]


def test_a_plain_run_says_in_one_line_what_it_found_damaged(ws):
    ws.write(iw.files())
    iw.build(ws)
    layer = iw.image_blobs(ws)["layer1"]
    iw.damage(iw.blob_file(ws, layer), "truncate")
    res = ws.run("run", "//...")
    assert res.code == 0 and f"built   {iw.IMG}" in res.err, res
    _one_warning(res, f"{iw.IMG}: cached image damaged: blob {layer}")
    res = ws.run("run", "//...")
    assert res.code == 0 and "warning" not in res.err, res


def test_an_image_read_as_a_build_input_is_hashed(ws):
    ws.write({**iw.files(), "top/BUILD.yaml": """
        top:
          rule: image
          platforms: [linux/amd64]
          contexts: {base: "//img"}
    """, "top/Dockerfile": "FROM scratch\nCOPY --from=base /big.bin /copied.bin\nCOPY x /x\n",
        "top/x": "1\n"})
    iw.build(ws)
    iw.build(ws)
    iw.damage(iw.blob_file(ws, iw.image_blobs(ws)["layer1"]), "flip")
    ws.write({"top/x": "2\n"})  # top rebuilds, reading img's layers
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0 and "Traceback" not in res.err, res
    # top's build hashed img's layer, found it corrupt and removed it (that node failed);
    # the run then built again: img rebuilt, then top
    finished = [e for e in res.events() if e["event"] == "action_finished"]
    failed = [e for e in finished if e["status"] == "failed"]
    assert [e["node"] for e in failed] == ["//top:top[linux/amd64]"]
    assert "is corrupt" in failed[0]["reason"], failed
    assert "found damaged" in res.err
    assert iw.statuses(res)[iw.IMG] == "built"
    assert iw.statuses(res)["//top:top[linux/amd64]"] == "built"
    assert iw.file_in_image(ws, "copied.bin", "//top:top[linux/amd64]") == bytes(range(256)) * 400


def test_corrupt_command_output_in_cas_rebuilds_the_command(ws):
    ws.write(iw.files())
    iw.build(ws)
    iw.damage(iw.cas_blob_of(ws, "gen.txt"), "flip")
    out = ws.path(".graphbuild/out/gen")
    import shutil

    shutil.rmtree(out)  # to be restored from the CAS
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0, res
    assert iw.statuses(res)[iw.GEN] == "built"
    assert "cached output damaged" in iw.reasons(res)[iw.GEN]
    _one_warning(res, f"{iw.GEN}: cached output damaged: command output sha256:")
    assert (out / "gen@host/gen.txt").read_text() == "generated\n"


def test_modified_output_directory_is_not_built_into_an_image(ws):
    ws.write(iw.files())
    iw.build(ws)
    ws.path(".graphbuild/out/gen/gen@host/gen.txt").write_text("tampered\n")
    ws.write({"img/big.bin": b"other content"})  # the image rebuilds and reads gen's output
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0, res
    assert iw.statuses(res) == {iw.GEN: "cached", iw.IMG: "built"}
    assert "restored the output of //gen:gen" in iw.reasons(res)[iw.IMG]
    assert iw.file_in_image(ws, "gen.txt") == b"generated\n"
    assert ws.path(".graphbuild/out/gen/gen@host/gen.txt").read_text() == "generated\n"


def test_cache_verify_finds_everything_and_repair_makes_the_next_run_rebuild(ws, tmp_path):
    ws.write(iw.files())
    iw.build(ws)
    report = iw.verify_json(ws)
    assert report["ok"] and report["checked"]["oci blobs"] >= 4, report
    layer = iw.blob_file(ws, iw.image_blobs(ws)["layer1"])
    iw.damage(layer, "flip")
    iw.damage(iw.cas_blob_of(ws, "gen.txt"), "flip")
    ws.path(".graphbuild/out/gen/gen@host/gen.txt").write_text("tampered\n")
    res = ws.run("cache", "verify")
    assert res.code == 1 and "Traceback" not in res.err, res
    assert "oci: blob sha256:" in res.out and "cas: blob sha256:" in res.out, res
    assert "out: out/gen/gen@host was modified" in res.out, res
    assert "cache verify --repair" in res.err
    assert layer.exists()  # only looked
    res = ws.run("cache", "verify", "--repair")
    assert res.code == 0, res
    assert iw.verify_json(ws)["ok"]
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0 and iw.statuses(res) == {iw.GEN: "built", iw.IMG: "built"}, res
    assert iw.file_in_image(ws, "gen.txt") == b"generated\n"
    assert iw.verify_json(ws)["ok"]
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}


def test_cache_verify_plain_and_bad_flags(ws):
    ws.write(iw.files())
    iw.build(ws)
    res = ws.run("cache", "verify")
    assert res.code == 0 and "cache verify: ok" in res.err, res
    res = ws.run("cache", "gc", "--repair")
    assert res.code == 2 and "--repair goes with `cache verify`" in res.err, res
    assert json.loads(ws.run("cache", "verify", "--output", "json").out)["problems"] == []


def test_a_corrupt_layer_is_never_pushed(ws, registry):
    """A layer flipped in place keeps its size (the no-op check passes); the push reads it,
    hashing it, finds it corrupt, and the run rebuilds the image and pushes good bytes."""
    repo = fx.unique_repo("corrupt")
    ref = f"{registry.host}/{repo}:1"
    ws.write({**iw.files(), "img/BUILD.yaml": f"""
        img:
          rule: image
          platforms: [linux/amd64]
          contexts: {{gen: "//gen"}}
          tags: ["{ref}"]
    """})
    iw.build(ws)
    layer = iw.image_blobs(ws)["layer1"]
    iw.damage(iw.blob_file(ws, layer), "flip")
    res = ws.run("run", "//...", "--push", "--output", "json")
    assert res.code == 0 and "Traceback" not in res.err, res
    assert "found damaged" in res.err, res.err
    assert iw.statuses(res)[iw.IMG] == "built", res
    assert iw.image_blobs(ws)["layer1"] == layer  # rebuilt alike: the same digest
    pushed = [e["ref"] for e in res.events() if e["event"] == "pushed"]
    assert pushed == [ref], res
    for part, digest in iw.image_blobs(ws).items():  # what the registry holds is intact
        kind = "manifests" if part == "manifest" else "blobs"
        body = _get(f"{registry.url}/v2/{repo}/{kind}/{digest}")
        assert hashlib.sha256(body).hexdigest() == digest.split(":", 1)[1]
    assert iw.verify_json(ws)["ok"]


def _get(url: str) -> bytes:
    import urllib.request

    accept = "application/vnd.oci.image.manifest.v1+json"
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read()
