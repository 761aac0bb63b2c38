"""The scheduler through the CLI: failures and skips, --keep-going, eager starts, -j, priorities,
and interrupts that stop whole process groups and record nothing partial."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def node(name: str, cmd: str, deps: list[str] | None = None) -> str:
    text = f"{name}:\n  rule: command\n  cmd: |\n"
    text += "".join(f"    {line}\n" for line in cmd.strip().splitlines())
    if deps:
        text += "  deps: [" + ", ".join(f'"{d}"' for d in deps) + "]\n"
    return text


def stamp(name: str) -> str:
    """Shell that records when this node started and ended (outside $OUT, in the root). The
    file appears only once it holds the time: another node polling for it must not see it
    empty, before the time it will hold was taken."""
    return _stamp(name, "start")


def end(name: str) -> str:
    return _stamp(name, "end")


def _stamp(name: str, kind: str) -> str:
    path = f"../stamps/{name}.{kind}"
    return f"date +%s.%N > {path}.tmp && mv {path}.tmp {path}"


def read_stamp(ws, name: str, kind: str) -> float:
    return float(ws.path(f"stamps/{name}.{kind}").read_text())


def results(res) -> dict[str, dict]:
    return {e["node"]: e for e in res.events() if e["event"] == "action_finished"}


@pytest.fixture
def stamps(ws):
    ws.path("stamps").mkdir(parents=True)
    return ws


FAILING = (
    node("bad", "echo broken >&2; exit 1")
    + node("dep1", "touch ../stamps/dep1", [":bad"])
    + node("dep2", "touch ../stamps/dep2", [":dep1"])
    + node("slow", "sleep 0.4; touch ../stamps/slow")
    + node("later", "touch ../stamps/later", [":slow"])
)


def test_failure_skips_dependents_and_stops_new_work(stamps):
    ws = stamps
    ws.write({"p/BUILD.yaml": FAILING})
    res = ws.run("run", "//p:all", "-j", "2", "--output", "json")
    assert res.code == 1, res
    r = results(res)
    assert set(r) == {"//p:bad", "//p:dep1", "//p:dep2", "//p:slow", "//p:later"}
    assert r["//p:bad"]["status"] == "failed" and "status 1" in r["//p:bad"]["reason"]
    for dep in ("//p:dep1", "//p:dep2"):
        assert r[dep]["status"] == "skipped" and "//p:bad" in r[dep]["reason"], r[dep]
    # what was running finishes; nothing new starts
    assert r["//p:slow"]["status"] == "built"
    assert r["//p:later"]["status"] == "skipped"
    assert "//p:bad" in r["//p:later"]["reason"] and "--keep-going" in r["//p:later"]["reason"]
    assert not ws.path("stamps/later").exists() and not ws.path("stamps/dep1").exists()
    fin = next(e for e in res.events() if e["event"] == "build_finished")
    assert fin["status"] == "failure"
    assert fin["counts"] == {"built": 1, "cached": 0, "failed": 1, "skipped": 3}


def test_keep_going_builds_everything_else(stamps):
    ws = stamps
    ws.write({"p/BUILD.yaml": FAILING})
    res = ws.run("run", "//p:all", "-j", "2", "--keep-going", "--output", "json")
    assert res.code == 1, res
    r = results(res)
    assert {n: e["status"] for n, e in r.items()} == {
        "//p:bad": "failed", "//p:dep1": "skipped", "//p:dep2": "skipped",
        "//p:slow": "built", "//p:later": "built"}
    assert ws.path("stamps/later").exists() and not ws.path("stamps/dep1").exists()
    assert "//p:bad" in r["//p:dep2"]["reason"]


def test_plain_output_names_the_failure(stamps):
    ws = stamps
    ws.write({"p/BUILD.yaml": FAILING})
    res = ws.run("run", "//p:dep2", "--output", "plain")
    assert res.code == 1
    assert "failed" in res.err and "//p:bad" in res.err and "broken" in res.err, res
    assert "skipped" in res.err and "FAILED" in res.err


def test_node_starts_when_its_last_dependency_finishes(stamps):
    ws = stamps
    ws.write({"p/BUILD.yaml": (
        node("quick", f"{stamp('quick')}; {end('quick')}")
        + node("after_quick", f"{stamp('after_quick')}; {end('after_quick')}", [":quick"])
        # long waits (up to 60 s on a loaded machine) for after_quick: in level-by-level waves it never would
        + node("long", f"{stamp('long')}; i=0; until [ -e ../stamps/after_quick.start ]; do "
               "i=$((i+1)); [ $i -gt 3000 ] && exit 9; sleep 0.02; done; " + end("long"))
        + node("top", f"{stamp('top')}", [":after_quick", ":long"])
    )})
    res = ws.run("run", "//p:top", "-j", "2", "--output", "json")
    assert res.code == 0, res
    # not in waves: after_quick ran while long (from the first "level") was still running
    assert read_stamp(ws, "after_quick", "start") < read_stamp(ws, "long", "end")
    assert read_stamp(ws, "after_quick", "start") >= read_stamp(ws, "quick", "end")
    assert read_stamp(ws, "top", "start") >= read_stamp(ws, "long", "end")


def test_jobs_1_runs_serially_and_jobs_n_in_parallel(stamps):
    ws = stamps
    names = ["s1", "s2", "s3"]
    ws.write({"p/BUILD.yaml": "".join(
        node(n, f"{stamp(n)}; sleep 0.1; {end(n)}") for n in names)})
    assert ws.run("run", "//p:all", "-j", "1").code == 0
    spans = sorted((read_stamp(ws, n, "start"), read_stamp(ws, n, "end")) for n in names)
    for (_, end1), (start2, _) in itertools.pairwise(spans):
        assert end1 <= start2, spans

    # a barrier: each node waits (up to 10 s) until all three are running at once
    barrier = ('touch ../stamps/here.{n}; i=0; while [ "$(ls ../stamps | grep -c here)" -lt 3 ]; '
               'do i=$((i+1)); [ $i -gt 500 ] && exit 9; sleep 0.02; done')
    ws.write({"q/BUILD.yaml": "".join(node(n, barrier.format(n=n)) for n in names)})
    res = ws.run("run", "//q:all", "-j", "3", "--output", "json")
    assert res.code == 0, res


def test_longest_remaining_path_starts_first(stamps):
    ws = stamps
    log = "echo {n} >> ../stamps/order"
    ws.write({"p/BUILD.yaml": (
        node("a1", log.format(n="a1"))
        + node("a2", log.format(n="a2"), [":a1"])
        + node("a3", log.format(n="a3"), [":a2"])
        + node("lone", log.format(n="lone") + "; sleep 0.5")
    )})
    assert ws.run("run", "//p:all", "-j", "1").code == 0
    # no history: the head of the longest chain goes first
    assert ws.path("stamps/order").read_text().split()[0] == "a1"
    ws.path("stamps/order").unlink()
    # with durations from the first run, the slow node is the longest remaining path
    assert ws.run("run", "//p:all", "-j", "1", "--no-cache").code == 0
    assert ws.path("stamps/order").read_text().split()[0] == "lone"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (new) parent to reap it is gone for our purposes
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig, prelude", [
    (signal.SIGINT, ""),
    (signal.SIGTERM, ""),
    # a command that ignores SIGTERM (and so do its children) is killed after a grace period
    (signal.SIGTERM, "trap '' TERM INT\n"),
], ids=["SIGINT", "SIGTERM", "SIGTERM-ignored"])
def test_interrupt_kills_process_group_and_records_nothing(stamps, sig, prelude):
    ws = stamps
    ws.write({"p/BUILD.yaml": (
        node("fast", "mkdir -p $OUT && echo ok > $OUT/f")
        + node("hang", prelude + "sleep 30 &\necho $! > ../stamps/bg.pid\n"
               "mkdir -p $OUT && touch $OUT/partial\nwait", [":fast"])
    )})
    events = ws.path("events.jsonl")
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphbuild", "-C", str(ws.root), "run", "//p:hang",
         "--output", "plain", "--events", str(events)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell may start us with SIGINT ignored; a user's graphbuild gets it as Ctrl-C does
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    pid_file = ws.path("stamps/bg.pid")
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    bg = int(pid_file.read_text())
    assert pid_alive(bg)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    deadline = time.monotonic() + 5
    while pid_alive(bg) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(bg), "the command's background process survived"
    statuses = {ev["node"]: ev["status"] for ev in map(json.loads, events.read_text().splitlines())
                if ev["event"] == "action_finished"}
    assert statuses.get("//p:hang") != "built"
    assert not ws.path(".graphbuild/out/p/hang@host").exists()

    # nothing partial was recorded: a re-run runs it again (and the finished dependency is cached)
    res = ws.run("run", "//p:hang", "--output", "json", "--dry-run")
    assert res.code == 0, res
    plan = {e["node"]: e["status"] for e in res.events()}
    assert plan == {"//p:fast": "cached", "//p:hang": "would-run"}, res


def test_default_jobs_come_from_workspace_then_cpu_count(ws):
    ws.write({"p/BUILD.yaml": node("t", "true")})
    res = ws.run("run", "//p:t", "--output", "json")
    assert res.events()[0]["jobs"] == (os.cpu_count() or 1)
    ws.write({"WORKSPACE.yaml": "jobs: 7\n"})
    res = ws.run("run", "//p:t", "--output", "json")
    assert res.events()[0]["jobs"] == 7
    res = ws.run("run", "//p:t", "--output", "json", "-j", "2")
    assert res.events()[0]["jobs"] == 2
