"""`cache gc`, `cache clean` and builds exclude each other through `<cache_dir>/.lock`: gc and
clean wait (and say so) while a build runs, a build waits while they run, and what killed builds
left behind is reclaimed by the next build or gc."""

from __future__ import annotations

import integrity_ws as iw

from graphbuild.engine.run_lock import RunLock


def _every_blob_intact(ws) -> None:
    s = iw.store(ws)
    for entry in s.entries():
        for desc in s.walk(entry):
            assert s.verify_blob(desc["digest"]), desc


def test_gc_waits_for_a_live_build_and_loses_nothing(ws, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    ws.write(iw.files(gate))
    run = iw.cli(ws, "run", "//...")
    iw.wait_for(gate / "started", run)
    gc = iw.cli(ws, "cache", "gc")
    iw.read_line_with(gc, "cache gc: waiting for running builds to finish")
    assert gc.poll() is None  # still waiting: nothing deleted under the build
    (gate / "go").touch()
    _out, err = run.communicate(timeout=300)
    assert run.returncode == 0 and "Traceback" not in err, err
    _gout, gerr = gc.communicate(timeout=300)
    assert gc.returncode == 0 and "Traceback" not in gerr, gerr
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}
    assert (ws.path(".graphbuild/out/gen/gen@host/late.bin")).stat().st_size == 100000
    _every_blob_intact(ws)


def test_clean_during_a_build_waits_and_leaves_a_sound_store(ws, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    ws.write(iw.files(gate))
    run = iw.cli(ws, "run", "//...")
    iw.wait_for(gate / "started", run)
    clean = iw.cli(ws, "cache", "clean")
    iw.read_line_with(clean, "cache clean: waiting for running builds to finish")
    (gate / "go").touch()
    _out, err = run.communicate(timeout=300)
    assert run.returncode == 0 and "Traceback" not in err, err
    _cout, cerr = clean.communicate(timeout=300)
    assert clean.returncode == 0 and "Traceback" not in cerr, cerr
    assert not ws.path(".graphbuild").exists()
    assert iw.build(ws) == {iw.GEN: "built", iw.IMG: "built"}
    _every_blob_intact(ws)


def test_a_build_waits_while_gc_holds_the_lock(ws):
    ws.write(iw.files())
    iw.build(ws)
    lock = RunLock(ws.path(".graphbuild")).acquire(True)  # as `cache gc` holds it
    try:
        run = iw.cli(ws, "run", "//...")
        iw.read_line_with(run, "waiting for `graphbuild cache`")
        assert run.poll() is None
    finally:
        lock.release()
    _out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err


def _plant_leftovers(ws) -> list:
    cache = ws.path(".graphbuild")
    planted = [cache / "tmp/action-killed/out/partial.bin", cache / "cas/tmp/tmpk1ll3d",
               cache / "oci/.tmp/.layer-k1ll3d.tmp", cache / "oci/.tmp/blob-k1ll3d"]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half written" * 1000)
    return planted


def test_leftovers_of_a_killed_build_are_reclaimed_by_the_next_build(ws):
    ws.write(iw.files())
    iw.build(ws)
    planted = _plant_leftovers(ws)
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}  # a no-op reclaims them too
    assert not [p for p in planted if p.exists()]
    assert not ws.path(".graphbuild/tmp/action-killed").exists()


def test_leftovers_are_reclaimed_by_gc(ws):
    ws.write(iw.files())
    iw.build(ws)
    planted = _plant_leftovers(ws)
    res = ws.run("cache", "gc")
    assert res.code == 0, res
    assert not [p for p in planted if p.exists()]
    assert iw.build(ws) == {iw.GEN: "cached", iw.IMG: "cached"}


def test_a_live_builds_scratch_is_not_reclaimed_by_another_build(ws, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    ws.write({**iw.files(gate), "other/BUILD.yaml": """
        other:
          rule: command
          cmd: mkdir -p $OUT && echo other > $OUT/other.txt
          outs: [other.txt]
    """})
    run = iw.cli(ws, "run", "//gen")
    iw.wait_for(gate / "started", run)
    live = list(ws.path(".graphbuild/tmp").iterdir())
    assert live
    second = ws.run("run", "//other")  # alongside the first: takes the lock shared
    assert second.code == 0, second
    assert all(p.exists() for p in live)
    (gate / "go").touch()
    _out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
