"""Batches (Action.batch) through the rule API and the CLI: a third-party rule whose actions,
one per platform, share their work through RunContext.batch. What is checked: runnable
members start together and one of them does the work for all; a member whose sibling's
dependency is still running waits for it; a member that fails before offering does not hold
the others; an exception in the shared work fails every member that offered."""

from __future__ import annotations

import json
import os
import textwrap

from test_rules_entrypoints import _plugin

RULE = '''
import json, os, time
from graphbuild.rule_api import Action, Attr, Outcome, Provider, Rule


class BatchedRule(Rule):
    name = "batched"
    mnemonic = "Batched"
    doc = "one action per platform; the platforms share one piece of work"
    attrs = {
        "log": Attr("string", "file the shared work appends to", required=True),
        "platforms": Attr("platforms", "platforms", default=None),
        "after": Attr("label", "a batched target each platform waits for", default=None),
        "together": Attr("bool", "declare a batch", default=True),
        "sleep": Attr("string_dict", "seconds to sleep, by platform", default={}),
        "fail": Attr("string", "platform that fails before offering", default=""),
        "exit": Attr("string", "platform whose run calls sys.exit", default=""),
        "raise_in_work": Attr("bool", "the shared work raises", default=False),
    }

    def analyze(self, target, ctx):
        a = target.attrs
        provider = Provider(self.name, platforms=ctx.resolve_platforms(target))
        for plat in provider.platforms:
            deps = []
            if a["after"] is not None:
                deps = [ctx.providers[a["after"]].nodes[str(plat)]]
            action = Action(
                label=target.label, platform=plat, rule=self.name, rule_version=1,
                mnemonic=self.mnemonic, progress=f"{target.label} {plat}", deps=deps,
                run=lambda rc, p=str(plat): run(rc, p, a), cacheable=False,
                batch=f"batched {target.label}" if a["together"] else "")
            provider.nodes[str(plat)] = ctx.declare(action)
        return provider


def run(rc, plat, a):
    time.sleep(float(a["sleep"].get(plat, 0)))
    if a["fail"] == plat:
        raise RuntimeError(f"{plat} failed early")
    if a["exit"] == plat:
        raise SystemExit(3)
    if rc.batch is None:
        return Outcome("sha256:" + "0" * 64, {})

    def work(offers):
        if a["raise_in_work"]:
            raise ValueError("the shared work broke")
        with open(a["log"], "a") as f:
            f.write(json.dumps(sorted(offers)) + "\\n")
        return {node: "sha256:" + "1" * 64 for node in offers}

    return Outcome(rc.batch.together(rc.action.node, plat, work), {})
'''

PLATS = "[linux/amd64, linux/arm64, linux/386]"


def _env(tmp_path) -> dict:
    site = _plugin(tmp_path / "site", "hello_rules-1.0.dist-info", "METADATA")
    (site / "hello_rules" / "__init__.py").write_text(textwrap.dedent(RULE))
    (site / "hello_rules-1.0.dist-info" / "entry_points.txt").write_text(
        "[graphbuild.rules]\nbatched = hello_rules:BatchedRule\n")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


def _statuses(res) -> dict[str, tuple[str, str]]:
    return {e["node"]: (e["status"], e["reason"]) for e in res.events()
            if e["event"] == "action_finished"}


def _groups(ws) -> list[list[str]]:
    path = ws.path("log.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_members_start_together_and_one_does_the_work(ws, tmp_path):
    ws.write({"p/BUILD.yaml": f"b: {{rule: batched, log: {ws.root}/log.jsonl, "
                              f"platforms: {PLATS}}}\n"})
    res = ws.run_subprocess("run", "//p:b", "--output", "json", "-j", "1", env=_env(tmp_path))
    assert res.code == 0, res
    nodes = ["//p:b[linux/386]", "//p:b[linux/amd64]", "//p:b[linux/arm64]"]
    assert _groups(ws) == [nodes]  # one -j slot, one piece of work for the three
    assert {n: s for n, (s, _) in _statuses(res).items()} == dict.fromkeys(nodes, "built")


def test_a_member_waits_for_its_siblings_dependency(ws, tmp_path):
    """The base's platforms are not a batch and finish apart (arm64 later); the app's
    platforms still start as one batch."""
    ws.write({"p/BUILD.yaml": f"""
        base: {{rule: batched, log: {ws.root}/base.jsonl, platforms: {PLATS}, together: false,
               sleep: {{linux/arm64: "0.6", linux/386: "0.3"}}}}
        app: {{rule: batched, log: {ws.root}/log.jsonl, platforms: {PLATS}, after: ":base"}}
    """})
    res = ws.run_subprocess("run", "//p:app", "--output", "json", "-j", "4", env=_env(tmp_path))
    assert res.code == 0, res
    assert _groups(ws) == [["//p:app[linux/386]", "//p:app[linux/amd64]", "//p:app[linux/arm64]"]]


def _failing(ws, tmp_path, attrs: str) -> dict[str, tuple[str, str]]:
    """Run //p:b with ``attrs`` added, --keep-going: exit 1; each node's (status, reason)."""
    ws.write({"p/BUILD.yaml": f"b: {{rule: batched, log: {ws.root}/log.jsonl, "
                              f"platforms: {PLATS}, {attrs}}}\n"})
    res = ws.run_subprocess("run", "//p:b", "--output", "json", "--keep-going",
                            env=_env(tmp_path))
    assert res.code == 1, res
    return _statuses(res)


def test_a_member_failing_early_does_not_hold_the_others(ws, tmp_path):
    got = _failing(ws, tmp_path, "fail: linux/arm64")
    assert got["//p:b[linux/arm64]"][0] == "failed"
    assert "linux/arm64 failed early" in got["//p:b[linux/arm64]"][1]
    assert got["//p:b[linux/amd64]"][0] == got["//p:b[linux/386]"][0] == "built"
    assert _groups(ws) == [["//p:b[linux/386]", "//p:b[linux/amd64]"]]


def test_an_error_in_the_shared_work_fails_every_member(ws, tmp_path):
    got = _failing(ws, tmp_path, "raise_in_work: true")
    assert len(got) == 3
    for status, reason in got.values():
        assert status == "failed" and "ValueError: the shared work broke" in reason, reason


def test_a_member_failing_stops_new_work_at_once(ws, tmp_path):
    """Without --keep-going a member's failure is reported when it happens, not when its batch
    ends: work that becomes runnable meanwhile does not start."""
    ws.write({"p/BUILD.yaml": f"""
        b: {{rule: batched, log: {ws.root}/log.jsonl, platforms: {PLATS}, fail: linux/arm64,
            sleep: {{linux/amd64: "1.5"}}}}
        z: {{rule: batched, log: {ws.root}/z.jsonl, platforms: [linux/amd64], together: false,
            sleep: {{linux/amd64: "0.5"}}}}
        y: {{rule: batched, log: {ws.root}/y.jsonl, platforms: [linux/amd64], after: ":z"}}
    """})
    res = ws.run_subprocess("run", "//p:all", "--output", "json", "-j", "4", env=_env(tmp_path))
    assert res.code == 1, res
    got = _statuses(res)
    assert got["//p:b[linux/arm64]"][0] == "failed"
    assert got["//p:b[linux/amd64]"][0] == "built"  # what was running finishes
    assert got["//p:z[linux/amd64]"][0] == "built"
    assert got["//p:y[linux/amd64]"][0] == "skipped"
    assert "not started" in got["//p:y[linux/amd64]"][1]


def test_a_member_that_exits_is_a_failed_node_not_a_hung_run(ws, tmp_path):
    """A rule calling sys.exit in a batch member: that node fails (as outside a batch) and
    the run ends."""
    got = _failing(ws, tmp_path, "exit: linux/arm64")
    assert got["//p:b[linux/arm64]"] == ("failed",
                                         "internal error: the action called sys.exit(3)")
    assert got["//p:b[linux/amd64]"][0] == got["//p:b[linux/386]"][0] == "built"
