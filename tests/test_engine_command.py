"""The `command` rule through the CLI: fan-out, TARGET* variables, $OUT, $DEPS, outs, srcs, env."""

from __future__ import annotations

import json


def finished(res) -> dict[str, dict]:
    return {e["node"]: e for e in res.events() if e["event"] == "action_finished"}


def out(ws, node_dir: str, rel: str) -> str:
    return ws.path(f".graphbuild/out/{node_dir}/{rel}").read_text()


def test_fan_out_sets_target_variables(ws):
    ws.write({"tools/BUILD.yaml": """
        env:
          rule: command
          cmd: |
            mkdir -p $OUT
            for v in TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT; do
              printf '%s=%s\\n' "$v" "$(printenv $v || echo UNSET)" >> $OUT/vars
            done
          outs: [vars]
          platforms: [linux/amd64, linux/arm64, linux/arm/v7, linux/s390x]
    """})
    res = ws.run("run", "//tools:env", "--output", "json")
    assert res.code == 0, res
    assert {(e["label"], e["platform"], e["status"]) for e in finished(res).values()} == {
        ("//tools:env", p, "built") for p in ("linux/amd64", "linux/arm64", "linux/arm/v7",
                                               "linux/s390x")}
    assert out(ws, "tools/env@linux-arm-v7", "vars") == (
        "TARGETPLATFORM=linux/arm/v7\nTARGETOS=linux\nTARGETARCH=arm\nTARGETVARIANT=v7\n")
    assert out(ws, "tools/env@linux-amd64", "vars") == (
        "TARGETPLATFORM=linux/amd64\nTARGETOS=linux\nTARGETARCH=amd64\nTARGETVARIANT=\n")
    assert "TARGETARCH=s390x\n" in out(ws, "tools/env@linux-s390x", "vars")
    # each node has its own, distinct output digest
    assert len({e["digest"] for e in finished(res).values()}) == 4


def test_without_platforms_runs_once_with_no_target_variables(ws):
    ws.write({"g/BUILD.yaml": """
        gen:
          rule: command
          cmd: mkdir -p $OUT && (env | grep '^TARGET' || true) > $OUT/target-vars && pwd > $OUT/cwd
          outs: [target-vars, cwd]
    """})
    # a TARGET* variable in the caller's environment does not leak in either
    res = ws.run_subprocess("run", "//g:gen", "--output", "json",
                            env={"TARGETPLATFORM": "linux/leaked"})
    assert res.code == 0, res
    events = list(finished(res).values())
    assert len(events) == 1 and events[0]["platform"] is None and events[0]["node"] == "//g:gen"
    assert out(ws, "g/gen@host", "target-vars") == ""
    # it runs in its package directory
    assert out(ws, "g/gen@host", "cwd").strip() == str(ws.path("g").resolve())


def test_out_is_fresh_for_every_run(ws):
    ws.write({"p/BUILD.yaml": """
        t:
          rule: command
          cmd: ls -A $OUT > ../listing; mkdir -p $OUT && echo v1 > $OUT/f
          outs: [f]
    """})
    assert ws.run("run", "//p:t").code == 0
    ws.write({"p/BUILD.yaml": ws.path("p/BUILD.yaml").read_text().replace("v1", "v2")})
    assert ws.run("run", "//p:t").code == 0
    assert ws.path("listing").read_text() == ""  # the previous output was not visible in $OUT
    assert out(ws, "p/t@host", "f") == "v2\n"


def test_env_attribute_and_hermetic_environment(ws):
    ws.write({"p/BUILD.yaml": """
        t:
          rule: command
          cmd: mkdir -p $OUT && echo "$GREETING|$COUNT|${HOST_SECRET:-none}" > $OUT/env
          env: {GREETING: hello world, COUNT: 3}
          outs: [env]
    """})
    res = ws.run_subprocess("run", "//p:t", env={"HOST_SECRET": "leak"})
    assert res.code == 0, res
    assert out(ws, "p/t@host", "env") == "hello world|3|none\n"


DEPS_WS = {
    "lib/core/BUILD.yaml": """
        core:
          rule: command
          cmd: mkdir -p $OUT/lib && echo "core for $TARGETPLATFORM" > $OUT/lib/core.a
          outs: [lib/core.a]
          platforms: [linux/amd64, linux/arm64]
        gen:
          rule: command
          cmd: mkdir -p $OUT && echo generated > $OUT/gen.h
          outs: [gen.h]
    """,
    "app/BUILD.yaml": """
        bin:
          rule: command
          cmd: |
            mkdir -p $OUT
            cat $DEPS/lib/core/core/lib/core.a $DEPS/lib/core/gen/gen.h > $OUT/bin
          outs: [bin]
          platforms: [linux/amd64, linux/arm64]
          deps: ["//lib/core:core", "//lib/core:gen"]
        bundle:
          rule: command
          cmd: |
            mkdir -p $OUT && cd $DEPS && find -L . | sort > $OUT/tree
            cat app/bin/linux/arm64/bin > $OUT/arm
          outs: [tree, arm]
          deps: [":bin"]
    """,
}


def test_deps_layout_per_platform(ws):
    ws.write(DEPS_WS)
    res = ws.run("run", "//app:bundle", "--output", "json")
    assert res.code == 0, res
    assert set(finished(res)) == {
        "//lib/core:core[linux/amd64]", "//lib/core:core[linux/arm64]", "//lib/core:gen",
        "//app:bin[linux/amd64]", "//app:bin[linux/arm64]", "//app:bundle"}
    # a fanned-out dependency is seen at its label's path, for the same platform
    assert out(ws, "app/bin@linux-amd64", "bin") == "core for linux/amd64\ngenerated\n"
    assert out(ws, "app/bin@linux-arm64", "bin") == "core for linux/arm64\ngenerated\n"
    # a command without platforms sees every platform's output under <label path>/<platform>/
    tree = out(ws, "app/bundle@host", "tree").split()
    assert "./app/bin/linux/amd64/bin" in tree and "./app/bin/linux/arm64/bin" in tree
    assert out(ws, "app/bundle@host", "arm") == "core for linux/arm64\ngenerated\n"


def test_deps_through_a_group(ws):
    ws.write({
        "lib/BUILD.yaml": """
            a:
              rule: command
              cmd: mkdir -p $OUT && echo A > $OUT/a
            b:
              rule: command
              cmd: mkdir -p $OUT && echo B > $OUT/b
            both:
              rule: group
              targets: [":a", ":b"]
        """,
        "app/BUILD.yaml": """
            use:
              rule: command
              cmd: mkdir -p $OUT && cat $DEPS/lib/a/a $DEPS/lib/b/b > $OUT/ab
              outs: [ab]
              deps: ["//lib:both"]
        """,
    })
    res = ws.run("run", "//app:use", "--output", "json")
    assert res.code == 0, res
    assert out(ws, "app/use@host", "ab") == "A\nB\n"


def test_dependency_missing_the_platform_is_bad_input(ws):
    ws.write({"p/BUILD.yaml": """
        dep:
          rule: command
          cmd: "true"
          platforms: [linux/amd64]
        use:
          rule: command
          cmd: "true"
          platforms: [linux/amd64, linux/arm64]
          deps: [":dep"]
    """})
    res = ws.run("run", "//p:use")
    assert res.code == 2 and "Traceback" not in res.err, res
    assert res.err.startswith("p/BUILD.yaml:9: //p:use: ") and "linux/arm64" in res.err, res


def test_missing_declared_output_fails(ws):
    ws.write({"p/BUILD.yaml": """
        t:
          rule: command
          cmd: mkdir -p $OUT && touch $OUT/present
          outs: [present, bin/missing]
          platforms: [linux/arm64]
    """})
    res = ws.run("run", "//p:t", "--output", "json")
    assert res.code == 1, res
    ev = finished(res)["//p:t[linux/arm64]"]
    assert ev["status"] == "failed" and ev["digest"] is None
    assert "bin/missing" in ev["reason"] and "present" not in ev["reason"].replace("missing", "")
    # nothing was recorded: the next run tries again
    res = ws.run("run", "//p:t", "--output", "json")
    assert finished(res)["//p:t[linux/arm64]"]["status"] == "failed"


def test_failing_command_reports_status_and_log(ws):
    ws.write({"p/BUILD.yaml": """
        t:
          rule: command
          cmd: echo "compiler says no" >&2; exit 3
    """})
    res = ws.run("run", "//p:t", "--output", "plain")
    assert res.code == 1, res
    assert "status 3" in res.err and "compiler says no" in res.err, res


def test_srcs_globs_are_inputs(ws):
    ws.write({
        "c/BUILD.yaml": """
            lib:
              rule: command
              cmd: mkdir -p $OUT && cat $(find src -name '*.c' | sort) > $OUT/all
              srcs: ["src/**/*.c"]
              outs: [all]
        """,
        "c/src/top.c": "top\n",
        "c/src/x/mid.c": "mid\n",
        "c/src/x/y/z/deep.c": "deep\n",
        "c/src/x/notes.txt": "not a source\n",
        "c/other.c": "outside the glob\n",
    })

    def status():
        res = ws.run("run", "//c:lib", "--output", "json")
        assert res.code == 0, res
        return finished(res)["//c:lib"]

    assert status()["status"] == "built"
    assert out(ws, "c/lib@host", "all") == "top\nmid\ndeep\n"
    ws.write({"c/src/x/notes.txt": "changed\n", "c/other.c": "changed\n"})
    assert status()["status"] == "cached"
    ws.write({"c/src/x/y/z/deep.c": "deeper\n"})
    ev = status()
    assert ev["status"] == "built" and "c/src/x/y/z/deep.c" in ev["reason"]
    ws.write({"c/src/top.c": "top\n", "c/src/new/added.c": "added\n"})
    ev = status()
    assert ev["status"] == "built" and "c/src/new/added.c" in ev["reason"]
    ws.path("c/src/x/mid.c").unlink()
    ev = status()
    assert ev["status"] == "built" and "c/src/x/mid.c" in ev["reason"]


def test_graph_json_lists_command_nodes_and_edges(ws):
    ws.write(DEPS_WS)
    res = ws.run("graph", "//app:bin", "--format", "json")
    assert res.code == 0, res
    data = json.loads(res.out)
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["//app:bin[linux/arm64]"]["deps"] == ["//lib/core:core[linux/arm64]",
                                                       "//lib/core:gen"]
