"""What graphbuild prints: each --explain reason once, failures repeated after the summary, the
image named after a build, running nodes at 80 columns, the action_started event, export's
platform choice and inspect's index annotations."""

from __future__ import annotations

import io
import json

from graphbuild import platforms

IMAGES = {
    "p/BUILD.yaml": """
        base:
          rule: image
          platforms: [linux/amd64, linux/arm64]
          dockerfile: Dockerfile.base
          tags: ["base:1"]
        app:
          rule: image
          platforms: [linux/amd64, linux/arm64]
          contexts: {base: ":base"}
        m:
          rule: manifest
          images: [":app"]
          annotations: {org.opencontainers.image.version: "1.0"}
        bad:
          rule: command
          cmd: "echo broken >&2; exit 3"
        bad2:
          rule: command
          cmd: "exit 4"
        ok:
          rule: command
          cmd: "true"
    """,
    "p/Dockerfile.base": "FROM scratch\nCOPY a /a\n",
    "p/Dockerfile": "FROM base\nCOPY b /b\n",
    "p/a": "a\n",
    "p/b": "b\n",
}


def test_explain_in_plain_output_says_each_reason_once(ws):
    ws.write(IMAGES)
    res = ws.run("run", "//p:ok", "//p:base", "--explain", "--output", "plain")
    assert res.code == 0, res
    assert res.err.count("no previous build") == 4, res  # ok, base x 2 platforms, base's index
    assert "explain //p:ok: no previous build" in res.err


def test_keep_going_repeats_the_failures_after_the_summary(ws):
    ws.write(IMAGES)
    res = ws.run("run", "//p:bad", "//p:bad2", "//p:ok", "--keep-going", "--output", "plain")
    assert res.code == 1, res
    tail = res.err[res.err.index("\ntotal "):].splitlines()
    assert tail[2] == "failed (2):", res
    assert sorted(tail[3:5]) == ["  //p:bad2: command exited with status 4",
                                 "  //p:bad: command exited with status 3"], res
    assert tail[5].startswith("FAILED in "), res


def test_images_hint_names_what_was_asked_for(ws):
    ws.write(IMAGES)
    res = ws.run("run", "//p:app", "--output", "plain")
    assert res.code == 0, res
    # //p:app's index, not the tagged base image it depends on
    assert res.err.rstrip().endswith(" inspect '//p:app'"), res
    assert "skopeo inspect" not in res.err  # //p:app has no tag
    res = ws.run("run", "//p:app", "//p:base[linux/arm64]", "--output", "plain")
    assert res.err.rstrip().endswith(" inspect '//p:app'"), res  # the index first
    res = ws.run("run", "//p:base", "//p:app", "--output", "plain")
    assert res.err.rstrip().endswith("/oci:base:1"), res  # a tagged one first
    assert " inspect '//p:base'" in res.err, res
    res = ws.run("run", "//p:base[linux/arm64]", "//p:app[linux/amd64]", "--output", "plain")
    assert res.err.rstrip().endswith(" inspect '//p:app[linux/amd64]'"), res  # then by name


def test_images_hint_after_a_failed_build_names_no_stand_in(ws):
    build = IMAGES["p/BUILD.yaml"].replace("contexts: {base: \":base\"}",
                                           "contexts: {base: \":base\"}\n          deps: [\":bad\"]")
    ws.write({**IMAGES, "p/BUILD.yaml": build})
    res = ws.run("run", "//p:app", "--output", "plain")
    assert res.code == 1, res
    # //p:base built, but it is not what was asked for
    last = res.err.rstrip().splitlines()[-1]
    assert last.startswith("images: ") and last.endswith(" (an OCI image layout)"), res


def test_action_started_events(ws):
    ws.write(IMAGES)
    res = ws.run("run", "//p:app", "--output", "json")
    assert res.code == 0, res
    events = res.events()
    started = [e for e in events if e["event"] == "action_started"]
    finished = [e["node"] for e in events if e["event"] == "action_finished"]
    assert sorted(e["node"] for e in started) == sorted(finished)
    for e in started:
        assert set(e) == {"event", "label", "platform", "rule", "mnemonic", "node", "reason"}
        assert e["reason"] == "no previous build"
        # a node starts before it finishes, and after what it needs finished
        assert finished.index(e["node"]) >= 0
        assert events.index(e) < next(i for i, f in enumerate(events)
                                      if f["event"] == "action_finished" and f["node"] == e["node"])
    arm = next(e for e in started if e["node"] == "//p:app[linux/arm64]")
    assert (arm["label"], arm["platform"], arm["rule"], arm["mnemonic"]) == (
        "//p:app", "linux/arm64", "image", "Image")
    res = ws.run("run", "//p:app", "--output", "json")  # cached nodes do not start
    assert not [e for e in res.events() if e["event"] == "action_started"]


def test_running_nodes_at_80_columns_never_look_the_same():
    from rich.console import Console

    from graphbuild.progress import RichReporter

    console = Console(file=io.StringIO(), width=80, force_terminal=False)
    reporter = RichReporter(False, {}, console=console)
    long = "//services/backend/payments/a-rather-long-gateway-name:image"
    nodes = [f"{long}[linux/amd64]", f"{long}[linux/arm64]",
             long.replace("payments", "payments-v2") + "[linux/amd64]", "//x:y"]
    for node in nodes:
        reporter.on_start(node, "no previous build")
    console.print(reporter._render())
    lines = console.file.getvalue().splitlines()[1:]
    assert len(lines) == 4 and all(len(line) <= 80 for line in lines), lines
    shown = [line.split()[0] for line in lines]
    assert len(set(shown)) == 4, shown
    assert "//x:y" in shown
    assert all(s.endswith(("[linux/amd64]", "[linux/arm64]")) for s in shown if s != "//x:y")


def test_export_docker_of_a_multi_platform_image(ws, tmp_path, monkeypatch):
    ws.write(IMAGES)
    assert ws.run("run", "//p:m").code == 0
    out = tmp_path / "a.tar"
    monkeypatch.setattr(platforms, "host", lambda: platforms.Platform("linux", "arm64"))
    res = ws.run("export", "//p:m", "-o", str(out), "--format", "docker")
    assert res.code == 0, res
    assert "note: //p:m has 2 platforms (linux/amd64, linux/arm64); a docker archive holds " \
           "one: linux/arm64, the host's (--platform picks another)" in res.err, res
    assert "(docker, linux/arm64)" in res.out
    res = ws.run("export", "//p:m", "-o", str(out), "--format", "docker", "--platform",
                 "linux/amd64")
    assert res.code == 0 and "note:" not in res.err and "(docker, linux/amd64)" in res.out, res
    monkeypatch.setattr(platforms, "host", lambda: platforms.Platform("linux", "s390x"))
    res = ws.run("export", "//p:m", "-o", str(tmp_path / "b.tar"), "--format", "docker")
    assert res.code == 2 and "Traceback" not in res.err, res
    assert "hint: pass --platform with one of: linux/amd64, linux/arm64" in res.err, res
    assert not (tmp_path / "b.tar").exists()


def test_inspect_shows_index_annotations(ws):
    ws.write(IMAGES)
    assert ws.run("run", "//p:m").code == 0
    res = ws.run("inspect", "//p:m")
    assert res.code == 0, res
    doc = json.loads(res.out)
    assert doc["annotations"] == {"org.opencontainers.image.version": "1.0"}
    assert list(doc) == ["schemaVersion", "mediaType", "manifests", "annotations"]
