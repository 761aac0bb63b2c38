"""`run --push`, `pull` targets, FROM by reference and `inspect REF`, through the CLI against the
real registry (never a mock of it), read back with skopeo."""

from __future__ import annotations

import json
import subprocess

import registry_fixtures as fx
from conftest import need_tool

registry = fx.registry
fault_proxy = fx.fault_proxy

DOCKERFILE = "FROM scratch\nARG TARGETARCH\nCOPY app.txt /app-$TARGETARCH.txt\n"


def _skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need_tool("skopeo"), *args], capture_output=True, text=True, check=False)


def _app(ws, host: str, repo: str, extra: str = "") -> None:
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64, linux/arm64]\n",
        "app/BUILD.yaml": f"""
            img:
              rule: image
              tags: ["{host}/{repo}:{{arch}}"]
            m:
              rule: manifest
              images: [":img"]
              tags: ["{host}/{repo}:v1", "{host}/{repo}:latest"]
            {extra}
        """,
        "app/Dockerfile": DOCKERFILE,
        "app/app.txt": "hello\n",
    })


def test_push_moves_tags_that_skopeo_reads_back(ws, registry, tmp_path):
    repo = fx.unique_repo("push")
    _app(ws, registry.host, repo)
    res = ws.run("run", "//app:all", "--push", "--output", "json")
    assert res.code == 0, res
    pushed = [e for e in res.events() if e["event"] == "pushed"]
    assert {e["ref"] for e in pushed} == {f"{registry.host}/{repo}:{t}"
                                           for t in ("v1", "latest", "amd64", "arm64")}
    index = next(e for e in pushed if e["ref"].endswith(":v1"))
    assert index["label"] == "//app:m"
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:v1")
    assert raw.returncode == 0, raw.stderr
    store_raw = ws.path(f".graphbuild/oci/blobs/sha256/{index['digest'].split(':')[1]}").read_text()
    assert raw.stdout == store_raw
    copy = _skopeo("copy", "--all", "--src-tls-verify=false",
                   f"docker://{registry.host}/{repo}:v1", f"oci:{tmp_path}/copy:v1")
    assert copy.returncode == 0, copy.stderr
    copied = json.loads((tmp_path / "copy" / "index.json").read_text())
    assert copied["manifests"][0]["digest"] == index["digest"]


def test_second_push_uploads_nothing_and_leaves_tags(ws, registry):
    repo = fx.unique_repo("again")
    _app(ws, registry.host, repo)
    assert ws.run("run", "//app:all", "--push").code == 0
    before = len(registry.requests(repo, method="POST"))
    puts_before = len(registry.requests(repo, method="PUT", kind="manifests"))
    res = ws.run("run", "//app:all", "--push", "--output", "json")
    assert res.code == 0, res
    assert len(registry.requests(repo, method="POST")) == before  # no upload session opened
    assert len(registry.requests(repo, method="PUT", kind="manifests")) == puts_before


def test_failed_platform_moves_no_tag(ws, registry):
    repo = fx.unique_repo("fail")
    _app(ws, registry.host, repo, extra="""
            broken:
              rule: command
              cmd: exit 3
              platforms: [linux/arm64]
    """)
    ws.write({"app/BUILD.yaml": ws.path("app/BUILD.yaml").read_text().replace(
        'rule: image\n', 'rule: image\n  deps: [":broken"]\n', 1)})
    res = ws.run("run", "//app:all", "--push", "--keep-going")
    assert res.code == 1, res
    assert "nothing was tagged" in res.err
    for tag in ("v1", "amd64", "arm64"):
        probe = _skopeo("inspect", "--raw", "--tls-verify=false",
                        f"docker://{registry.host}/{repo}:{tag}")
        assert probe.returncode != 0, f"{tag} must not exist"


def test_pull_target_and_from_reference(ws, make_ws, registry):
    repo = fx.unique_repo("base")
    _app(ws, registry.host, repo)
    res = ws.run("run", "//app:m", "--push", "--output", "json")
    assert res.code == 0, res
    digest = next(e["digest"] for e in res.events() if e["event"] == "pushed"
                  and e["ref"].endswith(":v1"))
    user = make_ws("user")
    user.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64, linux/arm64]\n",
        "svc/BUILD.yaml": f"""
            base:
              rule: pull
              image: "{registry.host}/{repo}@{digest}"
            svc:
              rule: image
              contexts: {{base: ":base"}}
            direct:
              rule: image
              dockerfile: Dockerfile.direct
        """,
        "svc/Dockerfile": "FROM base\nCOPY extra.txt /extra.txt\n",
        "svc/Dockerfile.direct": f"FROM {registry.host}/{repo}:v1\nCOPY extra.txt /x.txt\n",
        "svc/extra.txt": "extra\n",
    })
    first = user.run("run", "//svc:all", "--output", "json")
    assert first.code == 0, first
    assert f"resolved {registry.host}/{repo}:v1 to" in first.err
    gets = len(registry.requests(repo, method="GET", kind="blobs"))
    second = user.run("run", "//svc:all", "--output", "json")
    assert second.code == 0, second
    statuses = {e["node"]: e["status"] for e in second.events() if e["event"] == "action_finished"}
    assert set(statuses.values()) == {"cached"}
    assert len(registry.requests(repo, method="GET", kind="blobs")) == gets  # nothing downloaded
    inspect = user.run("inspect", "//svc:svc[linux/arm64]", "--verbose")
    assert inspect.code == 0, inspect
    layers = json.loads(inspect.out)["OCIManifest"]["layers"]
    assert len(layers) == 2  # the base image's layer plus ours


def test_pull_without_digest_is_bad_input(ws):
    ws.write({"b/BUILD.yaml": """
        base:
          rule: pull
          image: "127.0.0.1:5000/x:latest"
    """})
    res = ws.run("run", "//b:base")
    assert res.code == 2
    assert res.err.startswith("b/BUILD.yaml:3: //b:base: '127.0.0.1:5000/x:latest' is not pinned")
    assert "hint:" in res.err and "Traceback" not in res.err


def test_inspect_registry_reference(ws, registry):
    from graphbuild.oci.inspect import format_manifest_inspect

    repo = fx.unique_repo("insp")
    _app(ws, registry.host, repo)
    assert ws.run("run", "//app:m", "--push").code == 0
    res = ws.run("inspect", f"{registry.host}/{repo}:v1")
    assert res.code == 0, res
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:v1")
    expected = format_manifest_inspect(raw.stdout.encode(), json.loads(raw.stdout)["mediaType"])
    assert res.out.strip() == expected.strip()


def test_push_through_faults_completes(ws, fault_proxy):
    fault_proxy.rate = 0.3
    repo = fx.unique_repo("faulty")
    _app(ws, fault_proxy.host, repo)
    res = ws.run("run", "//app:all", "--push")
    assert res.code == 0, res
    probe = _skopeo("inspect", "--raw", "--tls-verify=false",
                    f"docker://{fault_proxy.upstream}/{repo}:v1")
    assert probe.returncode == 0, probe.stderr


def test_from_platform_pulls_the_build_platform_image(ws, make_ws, registry):
    """FROM --platform=$BUILDPLATFORM (the cross-compile pattern) takes the build platform's
    image, whatever platform the node builds."""
    repo = fx.unique_repo("tools")
    _app(ws, registry.host, repo)
    assert ws.run("run", "//app:m", "--push").code == 0
    user = make_ws("cross")
    user.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64, linux/arm64]\n",
        "c/BUILD.yaml": "img:\n  rule: image\n  tags: ['cross:{arch}']\n",
        "c/Dockerfile": (f"FROM --platform=$BUILDPLATFORM {registry.host}/{repo}:v1 AS tools\n"
                         "FROM scratch\nARG BUILDARCH\n"
                         "COPY --from=tools /app-${BUILDARCH}.txt /tool.txt\n"),
    })
    res = user.run("run", "//c:img")
    assert res.code == 0, res
    bad = make_ws("bad")
    bad.write({"c/BUILD.yaml": "img:\n  rule: image\n",
               "c/Dockerfile": f"FROM --platform=linux/aarch64 {registry.host}/{repo}:v1\n"})
    res = bad.run("run", "//c:img")
    assert res.code == 2, res
    assert res.err.startswith("c/Dockerfile:1: //c:img: FROM --platform: unknown architecture")
