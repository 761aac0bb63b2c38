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


def test_build_says_where_the_images_are_and_how_to_look(ws):
    """After a build, the last lines name the OCI layout and commands that work from the
    directory the user ran graphbuild in (Quick start runs it with -C from the repository)."""
    import subprocess
    import sys

    ws.write({"app/BUILD.yaml": "img:\n  rule: image\n  tags: ['app:v1']\n",
              "app/Dockerfile": "FROM scratch\nCOPY a /a\n", "app/a": "a\n"})
    proc = subprocess.run([sys.executable, "-m", "graphbuild", "-C", "ws", "run", "//...",
                           "--output", "plain"], cwd=ws.root.parent, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    tail = proc.stderr.splitlines()[-3:]
    assert tail[0] == "images: ws/.graphbuild/oci (an OCI image layout)"
    assert tail[1].startswith("  graphbuild -C ws inspect '//app:img[")  # the host's platform
    assert tail[2] == "  skopeo inspect oci:ws/.graphbuild/oci:app:v1"
