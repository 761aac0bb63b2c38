"""Rules come from the `graphbuild.rules` entry-point group (built-in ones too), and the CLI
imports heavy modules only when a command needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

BUILTIN = {"platform", "group", "command"}


def test_builtin_rules_are_entry_points():
    from graphbuild.engine import rule_registry
    from graphbuild.rule_api import Rule

    eps = {ep.name: ep for ep in entry_points(group="graphbuild.rules")}
    assert BUILTIN <= set(eps)
    for name in BUILTIN:
        assert eps[name].value.startswith("graphbuild_rules:"), eps[name]
        cls = eps[name].load()
        assert issubclass(cls, Rule) and cls.name == name
        assert cls.__module__.startswith("graphbuild_rules._private.")
        assert type(rule_registry.get(name)) is cls
    assert set(rule_registry.names()) == set(eps)
    # the rules package is installed as graphbuild_rules, never as a top-level `rules`
    import graphbuild_rules

    assert {"CommandRule", "GroupRule", "PlatformRule"} <= set(graphbuild_rules.__all__)
    assert "rules" not in sys.modules or not hasattr(sys.modules["rules"], "CommandRule")


THIRD_PARTY_RULE = '''
from graphbuild.engine.hashing import digest_json
from graphbuild.rule_api import Action, Attr, Outcome, Provider, Rule


class HelloRule(Rule):
    name = "hello"
    mnemonic = "Hello"
    doc = "says hello"
    attrs = {"greeting": Attr("string", "what to say", required=True)}

    def analyze(self, target, ctx):
        greeting = target.attrs["greeting"]
        action = Action(label=target.label, platform=None, rule=self.name,
                        rule_version=self.version, mnemonic=self.mnemonic,
                        progress=f"Hello {target.label}",
                        run=lambda rc: Outcome(digest_json(greeting), {}),
                        deps=ctx.nodes_for(target.attrs["deps"]),
                        key_data={"greeting": greeting})
        return Provider(self.name, nodes={None: ctx.declare(action)})
'''


def _plugin(site, metadata_dir: str, metadata_file: str):
    """``site`` holding the hello_rules package and its distribution metadata (a .dist-info
    as installed, or a source checkout's .egg-info) that registers the rule ``hello``."""
    (site / "hello_rules").mkdir(parents=True)
    (site / "hello_rules" / "__init__.py").write_text(textwrap.dedent(THIRD_PARTY_RULE))
    dist = site / metadata_dir
    dist.mkdir()
    (dist / metadata_file).write_text("Metadata-Version: 2.1\nName: hello-rules\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[graphbuild.rules]\nhello = hello_rules:HelloRule\n")
    return site


def test_third_party_rule_registers_through_the_same_group(ws, tmp_path):
    site = _plugin(tmp_path / "site", "hello_rules-1.0.dist-info", "METADATA")
    ws.write({
        "p/BUILD.yaml": """
            hi:
              rule: hello
              greeting: hi there
              deps: [":c"]
            c:
              rule: command
              cmd: "true"
        """,
        "q/BUILD.yaml": "typo:\n  rule: helo\n  greeting: x\n",
    })
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    res = ws.run_subprocess("run", "//p:hi", "--output", "json", env=env)
    assert res.code == 0, res
    actions = {e["node"]: e for e in res.events() if e["event"] == "action_finished"}
    assert actions["//p:hi"]["rule"] == "hello" and actions["//p:hi"]["status"] == "built"
    assert actions["//p:hi"]["digest"].startswith("sha256:")
    res = ws.run_subprocess("query", "//q:typo", env=env)
    assert res.code == 2 and "did you mean 'hello'?" in res.err, res
    # without the plugin on the path the rule is unknown
    res = ws.run_subprocess("query", "//p:hi")
    assert res.code == 2 and "unknown rule 'hello'" in res.err, res


def test_rules_of_a_checkout_run_with_python_m_are_not_taken_from_another_directory(ws,
                                                                                   tmp_path):
    """`python -m graphbuild` puts the current directory on sys.path: a source checkout there
    (its .dist-info or .egg-info) registers rules. The remembered rule list is per directory."""
    site = _plugin(tmp_path / "checkout", "hello_rules.egg-info", "PKG-INFO")
    ws.write({"p/BUILD.yaml": "hi:\n  rule: hello\n  greeting: hi\n"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # one user cache for both

    def query(cwd) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "graphbuild", "-C", str(ws.root), "query",
                               "//p:hi"], capture_output=True, text=True, cwd=cwd, env=env,
                              check=False)

    first = query(elsewhere)
    assert first.returncode == 2 and "unknown rule 'hello'" in first.stderr, first
    second = query(site)
    assert second.returncode == 0, second.stderr


HEAVY = ("rich", "networkx", "yaml", "diskcache", "httpx")

PROBE = """
import json, sys
from graphbuild.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
print(json.dumps({"code": code, "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))


def probe(*args: str, cwd=None) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          cwd=cwd, check=False)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_imports_no_heavy_module():
    for args in (["--help"], ["run", "--help"], ["query", "--help"], ["cache", "--help"]):
        result = probe(*args)
        assert result["code"] == 0
        assert result["heavy"] == [], (args, result)


def test_probe_sees_heavy_modules_when_they_are_used(ws):
    # the probe itself can fail: a real build does import them
    ws.write({"p/BUILD.yaml": "c:\n  rule: command\n  cmd: 'true'\n"})
    result = probe("-C", str(ws.root), "run", "//p:c", "--output", "plain")
    assert result["code"] == 0
    assert {"yaml", "diskcache"} <= set(result["heavy"])
    assert "networkx" not in result["heavy"]  # the build path stays off networkx (speed)
    result = probe("-C", str(ws.root), "graph", "//p:c", "--format", "json")
    assert result["code"] == 0
    assert "networkx" in result["heavy"]
