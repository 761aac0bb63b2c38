"""What graphbuild prints and writes: JSON events (docs/events.md), --events, --profile, --explain,
--dry-run, the plain summary, `query` and `graph`."""

from __future__ import annotations

import json
import re

DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")

WS = {
    "lib/BUILD.yaml": """
        lib:
          rule: command
          cmd: mkdir -p $OUT && cat a.c > $OUT/lib.a
          srcs: [a.c]
          outs: [lib.a]
          platforms: [linux/amd64, linux/arm64]
        tools:
          rule: group
          targets: [":lib", "//gen"]
    """,
    "lib/a.c": "int a;\n",
    "gen/BUILD.yaml": """
        gen:
          rule: command
          cmd: mkdir -p $OUT && echo gen > $OUT/g && touch ../gen-ran
    """,
    "app/BUILD.yaml": """
        app:
          rule: command
          cmd: mkdir -p $OUT && cat $DEPS/lib/lib/lib.a $DEPS/gen/gen/g > $OUT/app
          outs: [app]
          platforms: [linux/amd64, linux/arm64]
          deps: ["//lib", "//gen"]
        fails:
          rule: command
          cmd: exit 4
    """,
}


def run_json(ws, *args: str):
    res = ws.run("run", *args, "--output", "json")
    return res, res.events()


def finished(events) -> dict[str, dict]:
    return {e["node"]: e for e in events if e["event"] == "action_finished"}


def check_action_event(e: dict) -> None:
    assert {"event", "label", "platform", "rule", "status", "digest", "duration_s",
            "reason"} <= set(e), e
    assert re.match(r"//[^:]*:[^:\[]+\Z", e["label"]), e
    assert e["platform"] is None or re.match(r"[a-z0-9]+/[a-z0-9]+(/v[0-9.]+)?\Z", e["platform"])
    assert e["status"] in ("built", "cached", "failed", "skipped")
    assert isinstance(e["duration_s"], (int, float)) and e["duration_s"] >= 0
    assert isinstance(e["reason"], str) and e["reason"], e
    if e["status"] in ("built", "cached"):
        assert DIGEST.match(e["digest"]), e
    else:
        assert e["digest"] is None, e


def test_json_events_follow_the_spec(ws):
    ws.write(WS)
    res, events = run_json(ws, "//app:app", "-j", "3")
    assert res.code == 0, res
    # stdout holds nothing but JSON Lines
    lines = res.out.splitlines()
    assert lines and all(json.loads(line)["event"] for line in lines)
    assert events[0] == {"event": "build_started", "targets": ["//app:app"], "jobs": 3}
    assert events[-1]["event"] == "build_finished"
    fin = events[-1]
    assert set(fin) >= {"event", "status", "counts", "duration_s"}
    assert fin["status"] == "success"
    assert fin["counts"] == {"built": 5, "cached": 0, "failed": 0, "skipped": 0}
    assert isinstance(fin["duration_s"], (int, float))
    actions = finished(events)
    assert len(actions) == len([e for e in events if e["event"] == "action_finished"]) == 5
    for e in actions.values():
        check_action_event(e)
        assert e["rule"] == "command" and e["status"] == "built"
        assert e["reason"] == "no previous build"
    arm = actions["//app:app[linux/arm64]"]
    assert arm["label"] == "//app:app" and arm["platform"] == "linux/arm64"
    assert actions["//gen:gen"]["platform"] is None

    res, events = run_json(ws, "//app:app")
    assert {e["status"] for e in finished(events).values()} == {"cached"}
    for e in finished(events).values():
        check_action_event(e)
        assert e["digest"] == actions[e["node"]]["digest"]
    assert events[-1]["counts"] == {"built": 0, "cached": 5, "failed": 0, "skipped": 0}


def test_json_events_for_failure(ws):
    app = WS["app/BUILD.yaml"].replace('"//gen"]', '"//gen", ":fails"]')
    ws.write({**WS, "app/BUILD.yaml": app})
    res, events = run_json(ws, "//app:app", "--keep-going")
    assert res.code == 1, res
    actions = finished(events)
    for e in actions.values():
        check_action_event(e)
    assert actions["//app:fails"]["status"] == "failed"
    assert "4" in actions["//app:fails"]["reason"]
    assert actions["//app:app[linux/amd64]"]["status"] == "skipped"
    assert "//app:fails" in actions["//app:app[linux/amd64]"]["reason"]
    assert events[-1]["status"] == "failure"
    assert events[-1]["counts"] == {"built": 3, "cached": 0, "failed": 1, "skipped": 2}


def test_events_file_matches_json_output(ws, tmp_path):
    ws.write(WS)
    path = tmp_path / "events.jsonl"
    res = ws.run("run", "//app:app", "--output", "plain", "--events", str(path))
    assert res.code == 0, res
    assert "{" not in res.out  # plain mode keeps JSON off stdout
    events = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert [k for k in kinds if k != "action_started"] == ["build_started"] + [
        "action_finished"] * 5 + ["build_finished"]
    assert kinds.count("action_started") == 5  # every node ran (tests/test_output_nits.py)
    for e in events[1:-1]:
        if e["event"] == "action_finished":
            check_action_event(e)
    # and the same stream alongside --output json
    path2 = tmp_path / "events2.jsonl"
    res = ws.run("run", "//app:app", "--output", "json", "--events", str(path2))
    in_file = [json.loads(line) for line in path2.read_text().splitlines()]
    assert [(e["event"], e.get("node"), e.get("status")) for e in in_file] == [
        (e["event"], e.get("node"), e.get("status")) for e in res.events()]


def test_profile_is_a_chrome_trace(ws, tmp_path):
    ws.write(WS)
    path = tmp_path / "trace.json"
    res = ws.run("run", "//app:app", "--profile", str(path), "--output", "plain")
    assert res.code == 0, res
    trace = json.loads(path.read_text())
    assert isinstance(trace["traceEvents"], list)
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["name"] for e in complete} == {"//lib:lib[linux/amd64]", "//lib:lib[linux/arm64]",
                                             "//gen:gen", "//app:app[linux/amd64]",
                                             "//app:app[linux/arm64]"}
    for e in trace["traceEvents"]:
        assert {"name", "ph", "pid", "tid"} <= set(e), e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
    for e in complete:
        assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float))
        assert e["ts"] >= 0 and e["dur"] >= 0
    by_name = {e["name"]: e for e in complete}
    lib, app = by_name["//lib:lib[linux/arm64]"], by_name["//app:app[linux/arm64]"]
    assert app["ts"] >= lib["ts"] + lib["dur"]  # a dependent starts after its dependency ends


def test_profile_to_an_unwritable_place(ws, tmp_path):
    ws.write(WS)
    res = ws.run("run", "//gen", "--profile", str(tmp_path / "no" / "such" / "dir" / "t.json"))
    assert res.code == 2 and "Traceback" not in res.err, res
    assert "--profile" in res.err and "hint:" in res.err, res


def explain_lines(res) -> dict[str, str]:
    out = {}
    for line in res.err.splitlines():
        m = re.match(r"explain (\S+): (.*)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_explain_names_what_changed(ws):
    ws.write(WS)
    res = ws.run("run", "//app:app", "--explain", "--output", "plain")
    assert res.code == 0, res
    ex = explain_lines(res)
    assert set(ex) == {"//lib:lib[linux/amd64]", "//lib:lib[linux/arm64]", "//gen:gen",
                       "//app:app[linux/amd64]", "//app:app[linux/arm64]"}
    assert set(ex.values()) == {"no previous build"}

    ws.write({"lib/a.c": "int a = 1;\n"})
    ex = explain_lines(ws.run("run", "//app:app", "--explain", "--output", "plain"))
    assert ex["//lib:lib[linux/arm64]"] == "input changed: lib/a.c"
    assert "dependency changed: //lib:lib[linux/arm64]" in ex["//app:app[linux/arm64]"]
    assert "//gen:gen" not in ex  # cached nodes are not explained

    ws.write({"gen/BUILD.yaml": WS["gen/BUILD.yaml"].replace("echo gen", "echo gen2")})
    ex = explain_lines(ws.run("run", "//app:app", "--explain", "--output", "plain"))
    assert ex["//gen:gen"] == "attribute changed: cmd"
    assert ex["//app:app[linux/amd64]"] == "dependency changed: //gen:gen"
    assert "//lib:lib[linux/amd64]" not in ex

    # the same reasons are in the events
    ws.write({"lib/a.c": "int a = 2;\n"})
    res, events = run_json(ws, "//lib:lib", "--explain")
    assert {e["reason"] for e in finished(events).values()} == {"input changed: lib/a.c"}


def test_dry_run_prints_the_plan_and_runs_nothing(ws):
    ws.write(WS)
    res = ws.run("run", "//app:app", "--dry-run", "--output", "plain")
    assert res.code == 0, res
    assert not ws.path("gen-ran").exists()
    assert not ws.path(".graphbuild/out/gen").exists()
    text = res.out + res.err
    assert re.search(r"would run\s+//gen:gen: no previous build", text), text
    assert re.search(r"would run\s+//app:app\[linux/arm64\]: .*//lib:lib\[linux/arm64\]", text)
    assert "5 to run" in text and "0 cached" in text

    # a dry run records nothing: the real build still has no previous build
    res, events = run_json(ws, "//lib:lib")
    assert {e["reason"] for e in finished(events).values()} == {"no previous build"}

    ws.write({"gen/BUILD.yaml": WS["gen/BUILD.yaml"].replace("echo gen", "echo gen2")})
    res = ws.run("run", "//app:app", "--dry-run", "--output", "json")
    assert res.code == 0, res
    plan = {e["node"]: e for e in res.events()}
    assert plan["//lib:lib[linux/amd64]"]["status"] == "cached"
    assert plan["//gen:gen"]["status"] == "would-run"
    assert plan["//gen:gen"]["reason"] == "no previous build"
    assert plan["//app:app[linux/amd64]"]["status"] == "would-run"
    assert not ws.path("gen-ran").exists()


def test_dry_run_after_a_change_says_why(ws):
    ws.write(WS)
    assert ws.run("run", "//app:app").code == 0
    ws.write({"lib/a.c": "int changed;\n"})
    res = ws.run("run", "//app:app", "--dry-run", "--output", "plain")
    text = res.out + res.err
    assert re.search(r"would run\s+//lib:lib\[linux/amd64\]: input changed: lib/a.c", text), text
    assert "4 to run" in text and "1 cached" in text
    assert ws.path(".graphbuild/out/lib/lib@linux-amd64/lib.a").read_text() == "int a;\n"


def test_plain_output_has_a_summary_table(ws):
    ws.write(WS)
    res = ws.run("run", "//app:app", "--output", "plain")
    assert res.code == 0, res
    lines = res.err.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["action"])
    assert lines[head].split() == ["action", "built", "cached", "failed", "skipped"]
    assert lines[head + 1].split() == ["Command", "5", "0", "0", "0"]
    assert lines[head + 2].split() == ["total", "5", "0", "0", "0"]
    assert re.match(r"success in [0-9.]+s", lines[head + 3])
    assert sum(bool(re.match(r"\[\d/5\] built", line)) for line in lines) == 5
    res = ws.run("run", "//app:app", "--output", "plain")
    assert ["total", "0", "5", "0", "0"] in [line.split() for line in res.err.splitlines()]


def query(ws, *args: str) -> list[str]:
    res = ws.run("query", *args)
    assert res.code == 0, res
    return res.out.split()


def test_query_deps_rdeps_kind(ws):
    ws.write(WS)
    assert query(ws, "//app:app") == ["//app:app"]
    assert query(ws, "//app:app", "--deps") == ["//app:app", "//gen:gen", "//lib:lib"]
    assert query(ws, "//lib:tools", "--deps") == ["//gen:gen", "//lib:lib", "//lib:tools"]
    assert query(ws, "//gen", "--rdeps") == ["//app:app", "//gen:gen", "//lib:tools"]
    assert query(ws, "//...", "--kind", "group") == ["//lib:tools"]
    assert query(ws, "//app:app", "--deps", "--kind", "command") == [
        "//app:app", "//gen:gen", "//lib:lib"]
    res = ws.run("query", "//app:all", "--output", "json")
    assert res.code == 0, res
    rows = [json.loads(line) for line in res.out.splitlines()]
    assert rows == [
        {"label": "//app:app", "rule": "command", "file": "app/BUILD.yaml", "line": 1,
         "deps": ["//gen:gen", "//lib:lib"]},
        {"label": "//app:fails", "rule": "command", "file": "app/BUILD.yaml", "line": 7,
         "deps": []},
    ]


def test_graph_dot_and_json(ws):
    ws.write(WS)
    res = ws.run("graph", "//app:app", "--format", "json")
    assert res.code == 0, res
    data = json.loads(res.out)
    ids = {n["id"] for n in data["nodes"]}
    assert ids == {"//lib:lib[linux/amd64]", "//lib:lib[linux/arm64]", "//gen:gen",
                   "//app:app[linux/amd64]", "//app:app[linux/arm64]"}
    edges = {(e["from"], e["to"]) for e in data["edges"]}
    assert edges == {("//lib:lib[linux/amd64]", "//app:app[linux/amd64]"),
                     ("//lib:lib[linux/arm64]", "//app:app[linux/arm64]"),
                     ("//gen:gen", "//app:app[linux/amd64]"),
                     ("//gen:gen", "//app:app[linux/arm64]")}
    app = next(n for n in data["nodes"] if n["id"] == "//app:app[linux/arm64]")
    assert app["label"] == "//app:app" and app["platform"] == "linux/arm64"
    assert app["rule"] == "command"
    assert app["level"] == 1  # its topological generation: after //lib and //gen (level 0)
    assert {n["level"] for n in data["nodes"] if n["id"].startswith(("//lib", "//gen"))} == {0}

    res = ws.run("graph", "//app:app", "--format", "dot")
    assert res.code == 0, res
    dot = res.out.strip()
    assert dot.startswith("digraph") and dot.endswith("}")
    dot_edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))
    assert {(b, a) for a, b in edges} == dot_edges or edges == dot_edges
    for n in ids:
        assert f'"{n}"' in dot
    res = ws.run("graph", "//app:app", "--platform", "linux/arm64", "--format", "json")
    assert {n["id"] for n in json.loads(res.out)["nodes"]} == {
        "//lib:lib[linux/arm64]", "//gen:gen", "//app:app[linux/arm64]"}


def test_platform_flag_limits_fan_out(ws):
    ws.write(WS)
    res, events = run_json(ws, "//app:app", "--platform", "linux/arm64")
    assert res.code == 0, res
    assert set(finished(events)) == {"//lib:lib[linux/arm64]", "//gen:gen",
                                     "//app:app[linux/arm64]"}


def run_in_terminal(ws, *args: str) -> tuple[int, str]:
    """The CLI on a pseudo-terminal, as a person runs it; returns (exit code, screen bytes)."""
    import os
    import pty
    import subprocess
    import sys
    import time

    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "graphbuild", "-C", str(ws.root), *args],
                            stdin=child, stdout=child, stderr=child,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "120"})
    os.close(child)
    chunks, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")


def test_live_display_on_a_terminal(ws):
    ws.write({"p/BUILD.yaml": """
        t:
          rule: command
          cmd: sleep 0.4
          platforms: [linux/amd64, linux/arm64]
    """})
    code, screen = run_in_terminal(ws, "run", "//p:t")
    assert code == 0, screen
    assert "graphbuild summary" in screen and "success" in screen, screen
    assert "running" in screen and "linux/arm64" in screen, screen
    # rich markup is rendered, never shown as text
    for tag in ("[bold]", "[/]", "[green]", "[red]", "[cyan]"):
        assert tag not in screen, screen
