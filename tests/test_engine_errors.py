"""Every bad input of the engine (issue 2, item 3, and the command line): exit code 2, one readable
``path/BUILD.yaml:LINE: //label: what is wrong`` line plus a hint, never a traceback."""

from __future__ import annotations

import re

import pytest

GOOD = """\
ok:
  rule: command
  cmd: mkdir -p $OUT && echo ok > $OUT/f
  outs: [f]
"""


def user_error(res, where: str | None, *phrases: str, hint: str | None = None) -> str:
    """Check a bad-input result; return its first line."""
    assert res.code == 2, res
    assert "Traceback" not in res.err and "Traceback" not in res.out, res
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert lines, res
    first = lines[0]
    if where is not None:
        assert first.startswith(where + ": "), f"expected {where!r} first\n{res}"
    for phrase in phrases:
        assert phrase in first, f"expected {phrase!r} in the first line\n{res}"
    hints = [line.strip() for line in lines[1:] if line.strip().startswith("hint:")]
    assert hints, f"no hint line\n{res}"
    if hint is not None:
        assert hint in hints[0], f"expected hint {hint!r}\n{res}"
    return first


# -- BUILD.yaml -----------------------------------------------------------------------------------

def test_yaml_syntax_error_names_line_and_target(ws):
    ws.write({"a/BUILD.yaml": """
        first:
          rule: command
          cmd: echo
        second:
          rule: command
          cmd: echo
          deps: [:first]
    """})
    user_error(ws.run("run", "//a:second"), "a/BUILD.yaml:7: //a:second", "invalid YAML",
               hint="quote labels")


def test_yaml_unterminated_quote(ws):
    ws.write({"a/BUILD.yaml": 'x:\n  rule: command\n  cmd: "echo\n'})
    first = user_error(ws.run("run", "//a:x"), None, "invalid YAML")
    assert re.match(r"a/BUILD\.yaml:\d+: //a:x: ", first), first
    assert "line 3" in first  # where the quoted scalar started


def test_build_file_not_utf8(ws):
    ws.write({"a/BUILD.yaml": b"x:\n  rule: command\n  cmd: echo \xff\n"})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:3", "UTF-8", "0xff")
    ws.write({"a/BUILD.yaml": "x:\n  rule: command\n  cmd: echo\n",
              "WORKSPACE.yaml": b"jobs: 2\n# \xfe\n"})
    user_error(ws.run("run", "//a:x"), "WORKSPACE.yaml:2", "UTF-8")


def test_duplicate_target_name(ws):
    ws.write({"a/BUILD.yaml": """
        x:
          rule: command
          cmd: echo one
        y:
          rule: command
          cmd: echo
        x:
          rule: command
          cmd: echo two
    """})
    user_error(ws.run("run", "//a:y"), "a/BUILD.yaml:7: //a:x", "duplicate target name 'x'",
               "first at line 1")


def test_duplicate_attribute(ws):
    ws.write({"a/BUILD.yaml": """
        x:
          rule: command
          cmd: echo one
          cmd: echo two
    """})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:4: //a:x", "duplicate key 'cmd'")


def test_unknown_rule_did_you_mean(ws):
    ws.write({"a/BUILD.yaml": """
        x:
          cmd: echo
          rule: comand
    """})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:3: //a:x", "unknown rule 'comand'",
               hint="did you mean 'command'?")


def test_missing_rule(ws):
    ws.write({"a/BUILD.yaml": "x:\n  cmd: echo\n"})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:1: //a:x", "rule", hint="command")


def test_unknown_attribute_did_you_mean(ws):
    ws.write({"a/BUILD.yaml": """
        x:
          rule: command
          cmd: echo
          sercs: ["*.c"]
    """})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:4: //a:x", "unknown attribute 'sercs'",
               hint="did you mean 'srcs'?")


@pytest.mark.parametrize("attr, value, line, phrase", [
    ("cmd", "[echo, hi]", 3, "must be a string, not a list"),
    ("srcs", "5", 4, "list of strings"),
    ("env", "[A, B]", 4, "mapping"),
    ("deps", "{a: b}", 4, "list of labels"),
])
def test_wrong_attribute_type(ws, attr, value, line, phrase):
    body = {"rule": "command", "cmd": "echo", attr: value}
    text = "x:\n" + "".join(f"  {k}: {v}\n" for k, v in body.items())
    ws.write({"a/BUILD.yaml": text})
    user_error(ws.run("run", "//a:x"), f"a/BUILD.yaml:{line}: //a:x", f"'{attr}'", phrase)


def test_missing_required_attribute(ws):
    ws.write({"a/BUILD.yaml": """
        other:
          rule: command
          cmd: echo
        x:
          rule: command
          srcs: []
        g:
          rule: group
    """})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:4: //a:x",
               "missing required attribute 'cmd'")
    user_error(ws.run("query", "//a:g"), "a/BUILD.yaml:4: //a:x", "'cmd'")


def test_missing_required_group_targets(ws):
    ws.write({"a/BUILD.yaml": "g:\n  rule: group\n"})
    user_error(ws.run("query", "//a:g"), "a/BUILD.yaml:1: //a:g",
               "missing required attribute 'targets'")


def test_label_naming_missing_package(ws):
    ws.write({"a/BUILD.yaml": """
        x:
          rule: command
          cmd: echo
          deps: ["//nowhere:thing"]
    """})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:4: //a:x", "//nowhere",
               "no nowhere/BUILD.yaml")


def test_missing_target_did_you_mean(ws):
    ws.write({
        "a/BUILD.yaml": """
            x:
              rule: command
              cmd: echo
              deps:
                - //b:server
                - //b:servre
        """,
        "b/BUILD.yaml": "server:\n  rule: command\n  cmd: echo\n",
    })
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:4: //a:x", "no target 'servre'",
               hint="did you mean 'server'?")


def test_missing_target_on_command_line(ws):
    ws.write({"a/BUILD.yaml": "server:\n  rule: command\n  cmd: echo\n"})
    user_error(ws.run("run", "//a:sever"), None, "no target 'sever'",
               hint="did you mean 'server'?")
    user_error(ws.run("run", "//nope:all"), None, "//nope")


def test_dependency_cycle_lists_every_label_with_file_line(ws):
    ws.write({
        "a/BUILD.yaml": """
            x:
              rule: command
              cmd: echo
              deps: ["//b:y"]
        """,
        "b/BUILD.yaml": """
            pad:
              rule: command
              cmd: echo
            y:
              rule: command
              cmd: echo
              deps: [":z"]
            z:
              rule: group
              targets: ["//a:x"]
        """,
    })
    res = ws.run("run", "//a:x")
    first = user_error(res, None, "dependency cycle")
    where = {"//a:x": ("a/BUILD.yaml:4", "a/BUILD.yaml:1"),
             "//b:y": ("b/BUILD.yaml:7", "b/BUILD.yaml:4"),
             "//b:z": ("b/BUILD.yaml:9", "b/BUILD.yaml:8")}
    # the first line is the dependency attribute of one label of the cycle
    assert any(first.startswith(f"{attr_line}: {lab}: ")
               for lab, (attr_line, _) in where.items()), res
    for lab, (_, target_line) in where.items():
        assert re.search(rf"{re.escape(lab)}\s+\({re.escape(target_line)}\)", res.err), res
    cycle = re.search(r"dependency cycle: (.*)", first).group(1).split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == set(where), first


def test_self_dependency_is_a_cycle(ws):
    ws.write({"a/BUILD.yaml": "x:\n  rule: command\n  cmd: echo\n  deps: [':x']\n"})
    user_error(ws.run("query", "//a:x"), "a/BUILD.yaml:4: //a:x", "dependency cycle",
               "//a:x -> //a:x")


@pytest.mark.parametrize("label", ["//a:b:c", "a:x", "//a/../b:x", "//a:", "//a:all"])
def test_malformed_label_in_build_file(ws, label):
    ws.write({"a/BUILD.yaml": f"x:\n  rule: command\n  cmd: echo\n  deps: [\"{label}\"]\n"})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:4: //a:x", "'deps'", label)


@pytest.mark.parametrize("pattern", ["a:x", "//a:b:c", "//a/../b:x", "//a/:x", "//a:-x"])
def test_malformed_label_on_command_line(ws, pattern):
    ws.write({"a/BUILD.yaml": GOOD})
    user_error(ws.run("run", pattern), None, pattern)


@pytest.mark.parametrize("name", ["all", "-x", "a b"])
def test_bad_target_name(ws, name):
    ws.write({"a/BUILD.yaml": f"'{name}':\n  rule: command\n  cmd: echo\n"})
    user_error(ws.run("run", "//a/..."), "a/BUILD.yaml:1", name)


@pytest.mark.parametrize("written, right", [
    ("armv7", "linux/arm/v7"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/arm/v9", "linux/arm64"),
    ("aarch64", "linux/arm64"),
])
def test_bad_platform_suggests_oci_spelling(ws, written, right):
    ws.write({"a/BUILD.yaml": f"""
        x:
          rule: command
          cmd: echo
          platforms:
            - linux/amd64
            - {written}
    """})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:6: //a:x", "'platforms'", written,
               hint=right)


def test_bad_platform_in_platform_rule_names_its_attribute(ws):
    ws.write({"p/BUILD.yaml": """
        pi:
          rule: platform
          os: linux
          arch: aarch64
    """})
    user_error(ws.run("query", "//p:pi"), "p/BUILD.yaml:4: //p:pi", "aarch64", hint="linux/arm64")


def test_platforms_naming_a_non_platform_target(ws):
    ws.write({"a/BUILD.yaml": """
        x:
          rule: command
          cmd: echo
          platforms: [":y"]
        y:
          rule: command
          cmd: echo
    """})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:4: //a:x", "//a:y", "not a platform")


def test_bad_output_path(ws):
    ws.write({"a/BUILD.yaml": "x:\n  rule: command\n  cmd: echo\n  outs: [../up]\n"})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:4: //a:x", "../up")


def test_srcs_matching_nothing(ws):
    ws.write({"a/BUILD.yaml": "x:\n  rule: command\n  cmd: echo\n  srcs: ['*.go']\n"})
    user_error(ws.run("run", "//a:x"), "a/BUILD.yaml:4: //a:x", "srcs")


def test_query_and_graph_check_what_run_checks(ws):
    ws.write({
        "a/BUILD.yaml": "x:\n  rule: command\n  cmd: echo\n  srcs: ['*.go']\n",
        "b/BUILD.yaml": "y:\n  rule: command\n  cmd: echo\n  platforms: ['//c:z']\n",
        "c/BUILD.yaml": "z:\n  rule: command\n  cmd: echo\n",
    })
    for args in (["query", "//a:x"], ["query", "//a:x", "--rdeps"], ["graph", "//a:x"]):
        user_error(ws.run(*args), "a/BUILD.yaml:4: //a:x", "srcs")
    user_error(ws.run("query", "//b:y"), "b/BUILD.yaml:4: //b:y", "not a platform")


def test_broken_package_outside_the_patterns_is_not_loaded(ws):
    ws.write({"a/BUILD.yaml": GOOD, "b/BUILD.yaml": "x: [unclosed\n"})
    assert ws.run("run", "//a:ok").code == 0
    user_error(ws.run("run", "//..."), "b/BUILD.yaml:2", "invalid YAML")


def test_bad_dependency_package_is_checked_before_anything_runs(ws):
    ws.write({
        "a/BUILD.yaml": """
            first:
              rule: command
              cmd: touch ../ran
            x:
              rule: command
              cmd: echo
              deps: [":first", "//b:y"]
        """,
        "b/BUILD.yaml": "y:\n  rule: command\n  cmd: echo\n  bogus: 1\n",
    })
    user_error(ws.run("run", "//a:x"), "b/BUILD.yaml:4: //b:y", "unknown attribute 'bogus'")
    assert not ws.path("ran").exists()


# -- WORKSPACE.yaml -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, phrase, hint", [
    ("jobs: 4\ndefault_platform: [linux/amd64]\n", 2, "unknown key 'default_platform'",
     "did you mean 'default_platforms'?"),
    ("cache_dirr: x\n", 1, "unknown key 'cache_dirr'", "did you mean 'cache_dir'?"),
    ("default_platforms: [linux/x86_64]\n", 1, "x86_64", "linux/amd64"),
    ("default_platforms:\n  - linux/amd64\n  - armv7\n", 3, "armv7", "linux/arm/v7"),
    ("backend: nativ\n", 1, "backend", "did you mean 'native'?"),
    ("- jobs\n", 1, "mapping", "known keys"),
    ("jobs: [1\n", 2, "invalid YAML", None),
])
def test_bad_workspace_file(ws, text, line, phrase, hint):
    ws.write({"WORKSPACE.yaml": text, "a/BUILD.yaml": GOOD})
    user_error(ws.run("run", "//a:ok"), f"WORKSPACE.yaml:{line}", phrase, hint=hint)


@pytest.mark.parametrize("text", ["jobs: 0\n", "jobs: many\n"])
def test_bad_workspace_jobs(ws, text):
    ws.write({"WORKSPACE.yaml": text, "a/BUILD.yaml": GOOD})
    res = ws.run("run", "//a:ok")
    assert res.code == 2 and "Traceback" not in res.err, res
    assert res.err.startswith("WORKSPACE.yaml:1: ") and "jobs" in res.err, res


def test_no_workspace(tmp_path):
    import subprocess
    import sys

    (tmp_path / "BUILD.yaml").write_text(GOOD)
    proc = subprocess.run([sys.executable, "-m", "graphbuild", "query", "//..."], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "WORKSPACE.yaml" in proc.stderr and "hint:" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "graphbuild", "-C", str(tmp_path),
                           "query", "//..."],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "WORKSPACE.yaml" in proc.stderr and "hint:" in proc.stderr


# -- command line ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "1.5"])
def test_bad_jobs_value(ws, value):
    ws.write({"a/BUILD.yaml": GOOD})
    res = ws.run("run", "//a:ok", "-j", value)
    assert res.code == 2 and "Traceback" not in res.err, res
    assert "-j" in res.err and value in res.err and "hint:" in res.err, res


@pytest.mark.parametrize("value", ["0", "-3"])
def test_non_positive_jobs(ws, value):
    ws.write({"a/BUILD.yaml": GOOD})
    user_error(ws.run("run", "//a:ok", "-j", value), None, "-j")
    assert not ws.path(".graphbuild/out/a/ok@host").exists()


@pytest.mark.parametrize("written, right", [
    ("armv7", "linux/arm/v7"), ("linux/aarch64", "linux/arm64"),
    ("linux/x86_64", "linux/amd64"), ("linux/arm/v9", "linux/arm64"),
])
def test_bad_platform_flag(ws, written, right):
    ws.write({"a/BUILD.yaml": GOOD})
    user_error(ws.run("run", "//a:ok", "--platform", written), None, "--platform", written,
               hint=right)


def test_unknown_kind(ws):
    ws.write({"a/BUILD.yaml": GOOD})
    user_error(ws.run("query", "//...", "--kind", "comand"), None, "comand",
               hint="did you mean 'command'?")


# -- the cache survives bad input -----------------------------------------------------------------

def test_cache_dir_survives_bad_input(ws):
    ws.write({"a/BUILD.yaml": GOOD})
    assert ws.run("run", "//a:ok").code == 0
    ws.write({"a/BUILD.yaml": GOOD + "bad:\n  rule: command\n  cmd: [1]\n"})
    user_error(ws.run("run", "//a:ok"), "a/BUILD.yaml:7: //a:bad", "'cmd'")
    ws.write({"a/BUILD.yaml": GOOD + "x: [\n"})
    user_error(ws.run("run", "//a:ok"), None, "invalid YAML")
    ws.write({"a/BUILD.yaml": GOOD})
    res = ws.run("run", "//a:ok", "--output", "json")
    assert res.code == 0, res
    assert [e["status"] for e in res.events() if e["event"] == "action_finished"] == ["cached"]
    assert ws.path(".graphbuild/out/a/ok@host/f").read_text() == "ok\n"
    ws.write({"a/BUILD.yaml": GOOD.replace("echo ok", "echo ok2")})
    res = ws.run("run", "//a:ok", "--output", "json")
    assert res.code == 0, res
    assert ws.path(".graphbuild/out/a/ok@host/f").read_text() == "ok2\n"
