"""`graphbuild run //x:img[os/arch]` builds one platform's node and what it needs; `//...:all`
is `//...` (Bazel's spelling). Bad selections are exit 2 at the target's line."""

from __future__ import annotations

WS = {
    "tools/BUILD.yaml": """
        bin:
          rule: command
          platforms: [linux/amd64, linux/arm64]
          cmd: echo "$TARGETPLATFORM" > $OUT/arch
    """,
    "app/BUILD.yaml": """
        img:
          rule: image
          platforms: [linux/amd64, linux/arm64]
          contexts: {bin: //tools:bin}
        list:
          rule: manifest
          images: [":img"]
        other:
          rule: image
          dockerfile: Dockerfile.other
          platforms: [linux/amd64]
    """,
    "app/Dockerfile": "FROM scratch\nCOPY --from=bin arch /arch\n",
    "app/Dockerfile.other": "FROM scratch\nLABEL other=yes\n",
}


def _built(res) -> set[str]:
    assert res.code == 0, res
    return {e["node"] for e in res.events()
            if e["event"] == "action_finished" and e["status"] == "built"}


def test_one_platform_node_and_what_it_needs(ws):
    ws.write(WS)
    res = ws.run("run", "//app:img[linux/arm64]", "--output", "json")
    assert _built(res) == {"//app:img[linux/arm64]", "//tools:bin[linux/arm64]"}
    # the same node in another spelling of the platform is already built
    res = ws.run("run", "//app:img[linux/arm64/v8]", "--output", "json")
    assert res.code == 0 and _built(res) == set(), res
    # with a whole target beside it, that target's nodes too
    res = ws.run("run", "//app:img[linux/amd64]", "//app:other", "--output", "json")
    assert _built(res) == {"//app:img[linux/amd64]", "//tools:bin[linux/amd64]",
                           "//app:other[linux/amd64]"}


def test_recursive_all_is_the_same_as_recursive(ws):
    ws.write(WS)
    res = ws.run("run", "//...:all", "--dry-run", "--output", "json")
    assert res.code == 0, res
    plan = {e["node"] for e in res.events()}
    assert "//app:list" in plan and "//tools:bin[linux/amd64]" in plan
    res = ws.run("run", "//app/...:all", "--dry-run", "--output", "json")
    assert {e["node"] for e in res.events()} == plan  # //tools is needed by //app


def test_bad_selections_are_exit_2(ws):
    ws.write(WS)
    cases = {
        "//app:img[linux/s390x]": (("app/BUILD.yaml:3: //app:img: //app:img does not build "
                                   "linux/s390x"), "it builds: linux/amd64, linux/arm64"),
        "//app:list[linux/arm64]": (("app/BUILD.yaml:5: //app:list: //app:list is a manifest: it "
                                    "is not built per platform"), "name //app:list itself"),
        "//app:all[linux/arm64]": (("pattern '//app:all[linux/arm64]': [os/arch] names one "
                                   "platform of one target"), "--platform linux/arm64"),
        "//app:img[linux/armz]": ("unknown architecture 'armz'", "GOARCH"),
    }
    for text, (message, hint) in cases.items():
        res = ws.run("run", text)
        assert res.code == 2, (text, res)
        assert res.err.startswith(message), (text, res.err)
        assert hint in res.err and "Traceback" not in res.err, (text, res.err)
    assert not ws.path(".graphbuild/oci/index.json").exists() or \
        "//app:img" not in ws.path(".graphbuild/oci/index.json").read_text()
