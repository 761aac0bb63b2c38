"""The command-rule round trip through the CLI, in-process and as a subprocess."""


def test_command_fanout_build_and_cache(ws):
    ws.write({
        "app/BUILD.yaml": """
            bin:
              rule: command
              cmd: mkdir -p $OUT/bin && echo "$TARGETPLATFORM" > $OUT/bin/arch
              outs: [bin/arch]
              platforms: [linux/amd64, linux/arm/v7]
        """,
    })
    first = ws.run("run", "//app:bin", "--output", "json")
    assert first.code == 0, first
    built = [e for e in first.events() if e["event"] == "action_finished"]
    assert {(e["platform"], e["status"]) for e in built} == {("linux/amd64", "built"),
                                                             ("linux/arm/v7", "built")}
    second = ws.run_subprocess("run", "//app:bin", "--output", "json")
    assert second.code == 0, second
    assert {e["status"] for e in second.events() if e["event"] == "action_finished"} == {"cached"}
    out = ws.path(".graphbuild/out/app/bin@linux-arm-v7/bin/arch").read_text()
    assert out == "linux/arm/v7\n"
