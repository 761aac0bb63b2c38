"""The buildx backend against a real BuildKit (tests/buildkit_fixtures.py): one rootful
buildkitd with the OCI worker, a remote-driver builder in a private DOCKER_CONFIG, RUN steps
under QEMU for arm64 and arm/v7. What the images hold is read back from the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import buildkit_fixtures as bk
import pytest
import registry_fixtures as fx
from conftest import REPO
from test_native_stage_platform import LINUX, push_base

from graphbuild.oci.store import Store
from graphbuild.oci.unpack import read_file
from graphbuild.registry.client import RegistryClient

registry = fx.registry
buildkit = bk.buildkit

BUILDER = "gb-main"


@pytest.fixture
def lab(buildkit, monkeypatch):
    """The shared daemon's builder as the current one, for this process."""
    daemon = buildkit.daemon("main")
    buildkit.builder(BUILDER, daemon)
    buildkit.use(monkeypatch)
    buildkit.run_buildx("use", BUILDER)
    buildkit.main = daemon
    return buildkit


def store(ws) -> Store:
    return Store(Path(ws.root) / ".graphbuild" / "oci")


def manifest(ws, node: str) -> dict:
    s = store(ws)
    desc = s.lookup(node)
    assert desc is not None, f"{node} is not in the store"
    return s.read_json(desc["digest"])


def config(ws, node: str) -> dict:
    return store(ws).read_json(manifest(ws, node)["config"]["digest"])


def file_in(ws, node: str, path: str) -> str | None:
    data = read_file(store(ws), manifest(ws, node)["layers"], path)
    return data.decode() if data is not None else None


def statuses(res) -> dict[str, str]:
    return {e["node"]: e["status"] for e in res.events() if e.get("event") == "action_finished"}


def busyboxes(ws, pkg: str, arches: list[str]) -> None:
    for arch in arches:
        dest = ws.path(f"{pkg}/busybox-{arch}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bk.busybox(arch), dest)


# -- the examples -------------------------------------------------------------------------------

def test_examples_build_with_buildx_and_rerun_cached(lab, tmp_path, make_ws):
    """The example monorepo and the BUILD.example.yaml workflow, backend: buildx, for real."""
    for name in ("monorepo", "manifest-workflow"):
        root = tmp_path / name
        shutil.copytree(REPO / "examples" / name, root,
                        ignore=shutil.ignore_patterns(".graphbuild"))
        ws_file = root / "WORKSPACE.yaml"
        ws_file.write_text(ws_file.read_text() + "backend: buildx\n")
        ws = make_ws(name)
        assert ws.root == root
        res = ws.run("run", "//...", "--output", "json")
        assert res.code == 0, res
        done = statuses(res)
        assert done and set(done.values()) == {"built"}, done
        again = ws.run("run", "//...", "--output", "json")
        assert again.code == 0, again
        assert set(statuses(again).values()) == {"cached"}, statuses(again)
    mono = make_ws("monorepo")
    for arch in ("amd64", "arm64"):
        node = f"//services/api:image[linux/{arch}]"
        assert f"# api built for linux/{arch}" in file_in(mono, node, "usr/local/bin/api")
        assert config(mono, node)["architecture"] == arch
    flow = make_ws("manifest-workflow")
    index = store(flow).read_json(store(flow).lookup("//:v1")["digest"])
    plats = [m["platform"]["architecture"] for m in index["manifests"]]
    assert sorted(plats) == ["amd64", "arm64"]  # no attestation (unknown/unknown) entry
    assert "x86" in file_in(flow, "//:x86[linux/amd64]", "etc/myapp.conf")


# -- RUN on three architectures -----------------------------------------------------------------

PER_ARCH = """
FROM scratch
ARG TARGETARCH
ARG TARGETVARIANT
COPY --chmod=755 busybox-${TARGETARCH} /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /arch; echo ${TARGETARCH}${TARGETVARIANT} > /target"]
"""


def test_run_executes_per_architecture_under_qemu(lab, ws):
    for arch in ("arm64", "arm"):
        bk.need_emulation(arch)
    busyboxes(ws, "app", ["amd64", "arm64", "arm"])
    ws.write({"app/BUILD.yaml": """
                app:
                  rule: image
                  backend: buildx
                  platforms: [linux/amd64, linux/arm64, linux/arm/v7]
              """,
              "app/Dockerfile": PER_ARCH})
    res = ws.run("run", "//app:app")
    assert res.code == 0, res
    assert "emulated: RUN for linux/arm64" in res.out + res.err
    expect = {"linux/amd64": ("x86_64", "amd64", "amd64", None),
              "linux/arm64": ("aarch64", "arm64", "arm64", None),
              "linux/arm/v7": ("armv7l", "armv7", "arm", "v7")}
    for plat, (machine, target, arch, variant) in expect.items():
        node = f"//app:app[{plat}]"
        assert file_in(ws, node, "arch").strip() == machine
        assert file_in(ws, node, "target").strip() == target
        cfg = config(ws, node)
        assert (cfg["architecture"], cfg.get("variant")) == (arch, variant)


# -- the cross-compile pattern, named contexts and Dockerfile features ---------------------------

CROSS = """
FROM --platform=$BUILDPLATFORM tools AS build
ARG TARGETARCH
RUN ["/bin/busybox", "sh", "-c", "echo built on $(/bin/busybox uname -m) for $TARGETARCH > /out"]
FROM base
COPY --from=build /out /out
"""


def test_cross_compile_pattern(lab, ws):
    """``FROM --platform=$BUILDPLATFORM … AS build`` runs natively; ``FROM base`` takes each
    target platform's base image from the store."""
    busyboxes(ws, "tools", ["amd64"])
    ws.write({
        "tools/BUILD.yaml": "tools: {rule: image, platforms: [linux/amd64]}\n",
        "tools/Dockerfile": "FROM scratch\nCOPY --chmod=755 busybox-amd64 /bin/busybox\n",
        "base/BUILD.yaml": "base: {rule: image, platforms: [linux/amd64, linux/arm64]}\n",
        "base/Dockerfile": "FROM scratch\nARG TARGETARCH\nCOPY ${TARGETARCH}.txt /base.txt\n",
        "base/amd64.txt": "amd64 base\n", "base/arm64.txt": "arm64 base\n",
        "app/BUILD.yaml": """
            app:
              rule: image
              backend: buildx
              platforms: [linux/amd64, linux/arm64]
              contexts: {tools: //tools, base: //base}
        """,
        "app/Dockerfile": CROSS,
    })
    res = ws.run("run", "//app:app")
    assert res.code == 0, res
    for arch in ("amd64", "arm64"):
        node = f"//app:app[linux/{arch}]"
        assert file_in(ws, node, "out").strip() == f"built on x86_64 for {arch}"
        assert file_in(ws, node, "base.txt") == f"{arch} base\n"
        assert config(ws, node)["architecture"] == arch


FEATURES = """\
# syntax-free: BuildKit's built-in Dockerfile frontend
FROM base AS final
ARG FLAVOUR=plain
COPY --from=assets logo.txt /srv/logo.txt
COPY --from=remote /platform.txt /srv/remote.txt
COPY . /src/
COPY <<EOF /etc/flavour
flavour=${FLAVOUR}
EOF
HEALTHCHECK --interval=30s --timeout=3s CMD ["/bin/check"]
FROM final AS debug
LABEL debug=yes
"""


def test_named_contexts_args_target_labels_ignore_heredoc_healthcheck(lab, ws, registry):
    tagged, _ = push_base(registry, LINUX)
    repo = tagged.split("/", 1)[1].rsplit(":", 1)[0]
    client = RegistryClient(registry.host, retry=fx.fast_retry())
    pinned = f"{registry.host}/{repo}@{client.head_manifest(repo, 'v1').digest}"
    ws.write({
        "base/BUILD.yaml": "base: {rule: image, platforms: [linux/amd64, linux/arm64]}\n",
        "base/Dockerfile": "FROM scratch\nCOPY base.txt /base.txt\n",
        "base/base.txt": "from the store\n",
        "app/BUILD.yaml": f"""
            app:
              rule: image
              backend: buildx
              platforms: [linux/amd64, linux/arm64]
              target: final
              build_args: {{FLAVOUR: spicy}}
              labels: {{org.opencontainers.image.title: app}}
              contexts:
                base: //base
                assets: ./assets
                remote: "docker-image://{pinned}"
        """,
        "app/Dockerfile": FEATURES,
        "app/.dockerignore": "secret.txt\nassets\n",
        "app/kept.txt": "kept\n",
        "app/secret.txt": "ignored\n",
        "app/assets/logo.txt": "logo\n",
    })
    res = ws.run("run", "//app:app")
    assert res.code == 0, res
    for arch in ("amd64", "arm64"):
        node = f"//app:app[linux/{arch}]"
        assert file_in(ws, node, "base.txt") == "from the store\n"
        assert file_in(ws, node, "srv/logo.txt") == "logo\n"
        assert file_in(ws, node, "srv/remote.txt") == f"linux/{arch}\n"
        assert file_in(ws, node, "src/kept.txt") == "kept\n"
        assert file_in(ws, node, "src/secret.txt") is None  # .dockerignore
        assert file_in(ws, node, "etc/flavour") == "flavour=spicy\n"  # heredoc + build arg
        cfg = config(ws, node)["config"]
        assert cfg["Labels"] == {"org.opencontainers.image.title": "app"}  # target: not debug
        assert cfg["Healthcheck"]["Test"] == ["CMD", "/bin/check"]
        assert cfg["Healthcheck"]["Interval"] == 30 * 10**9


# -- secrets and ssh ----------------------------------------------------------------------------

SECRETS = """
FROM tools
RUN --mount=type=secret,id=token --mount=type=secret,id=file ["/bin/busybox", "sh", "-c", \
"/bin/busybox sha256sum /run/secrets/token /run/secrets/file | /bin/busybox cut -c1-64 > /sums"]
RUN --mount=type=ssh ["/bin/busybox", "sh", "-c", "test -S $SSH_AUTH_SOCK && echo agent > /ssh"]
"""


def test_secrets_and_ssh_reach_run_but_never_keys_events_or_logs(lab, ws, monkeypatch, tmp_path):
    import hashlib
    import subprocess

    token, file_value = "tok-" + "s3cr3t-value-123", "file-secret-456\n"
    busyboxes(ws, "tools", ["amd64"])
    (tmp_path / "secret.txt").write_text(file_value)
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True)
    env = dict(line.split(";")[0].split("=", 1) for line in agent.stdout.splitlines()
               if line.startswith("SSH_"))
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", env["SSH_AUTH_SOCK"])
        monkeypatch.setenv("APP_TOKEN", token)
        ws.write({
            "tools/BUILD.yaml": "tools: {rule: image, platforms: [linux/amd64]}\n",
            "tools/Dockerfile": "FROM scratch\nCOPY --chmod=755 busybox-amd64 /bin/busybox\n",
            "app/BUILD.yaml": f"""
                app:
                  rule: image
                  backend: buildx
                  platforms: [linux/amd64]
                  contexts: {{tools: //tools}}
                  secrets:
                    token: {{env: APP_TOKEN}}
                    file: {{src: {tmp_path / 'secret.txt'}}}
                  ssh: [default]
            """,
            "app/Dockerfile": SECRETS,
        })
        res = ws.run("run", "//app:app", "--output", "json")
        assert res.code == 0, res
        sums = file_in(ws, "//app:app[linux/amd64]", "sums").split()
        assert sums == [hashlib.sha256(v.encode()).hexdigest() for v in (token, file_value)]
        assert file_in(ws, "//app:app[linux/amd64]", "ssh") == "agent\n"
        # the value is nowhere graphbuild writes: output, events, cache records, logs
        assert token not in res.out + res.err
        for path in ws.path(".graphbuild").rglob("*"):
            if path.is_file() and path.stat().st_size < 10**6:
                data = path.read_bytes()
                assert token.encode() not in data and b"file-secret-456" not in data, path
        # as in BuildKit, a changed value is not a change: the image stays cached
        monkeypatch.setenv("APP_TOKEN", "another-value")
        res = ws.run("run", "//app:app", "--output", "json")
        assert statuses(res)["//app:app[linux/amd64]"] == "cached"
        # a source that is missing names the BUILD.yaml entry, not the value
        monkeypatch.delenv("APP_TOKEN")
        ws.write({"app/Dockerfile": SECRETS + "LABEL changed=1\n"})
        res = ws.run("run", "//app:app")
        assert res.code == 1, res
        assert ("app/BUILD.yaml:7: //app:app: secret 'token': environment variable APP_TOKEN "
                "is not set") in res.err
    finally:
        subprocess.run(["ssh-agent", "-k"], env={**env}, capture_output=True, check=False)


def test_secrets_shape_is_checked_at_load(ws):
    ws.write({"app/BUILD.yaml": """
                app:
                  rule: image
                  backend: buildx
                  secrets:
                    token: {value: hunter2}
              """,
              "app/Dockerfile": "FROM scratch\n"})
    res = ws.run("query", "//...")
    assert res.code == 2, res
    assert "app/BUILD.yaml:5: //app:app: secret 'token' must be {src: PATH} or {env: NAME}" \
        in res.err
    assert "hint: e.g. secrets:" in res.err


# -- reproducibility ----------------------------------------------------------------------------

def test_two_cold_builds_give_the_same_digest(lab, make_ws):
    """SOURCE_DATE_EPOCH and rewrite-timestamp=true: a RUN's files get clamped dates."""
    digests = []
    for name in ("one", "two"):
        ws = make_ws(name)
        busyboxes(ws, "app", ["amd64"])
        ws.write({"app/BUILD.yaml": "app: {rule: image, backend: buildx, "
                                    "platforms: [linux/amd64]}\n",
                  "app/Dockerfile": "FROM scratch\nCOPY --chmod=755 busybox-amd64 /bin/busybox\n"
                                    'RUN ["/bin/busybox", "sh", "-c", "echo hi > /made"]\n'})
        lab.main.buildctl("prune", "--all")  # cold: nothing in BuildKit's cache
        res = ws.run("run", "//app:app")
        assert res.code == 0, res
        digests.append(store(ws).lookup("//app:app[linux/amd64]")["digest"])
    assert digests[0] == digests[1]
    assert json.dumps(digests)  # both are real digests


def test_a_root_context_leaves_out_the_cache_directory(lab, ws):
    """The cache directory inside the context reaches BuildKit through a Dockerfile-specific
    .dockerignore beside a copy of the Dockerfile."""
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "BUILD.yaml": "app:\n  rule: image\n  backend: buildx\n",
        "Dockerfile": "FROM scratch\nCOPY . /src/\n",
        "hello.txt": "hello\n",
    })
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0, res
    assert file_in(ws, "//:app[linux/amd64]", "src/hello.txt") == "hello\n"
    assert file_in(ws, "//:app[linux/amd64]", "src/.graphbuild/oci/oci-layout") is None
    again = ws.run("run", "//...", "--output", "json")
    assert set(statuses(again).values()) == {"cached"}, again


# -- RUN --mount=from ---------------------------------------------------------------------------

MOUNTS = """\
FROM tools AS build
RUN ["/bin/busybox", "sh", "-c", "echo from a stage > /made"]
FROM tools
RUN --mount=type=bind,from=assets,target=/a --mount=type=bind,from=build,source=/made,target=/m \\
    ["/bin/busybox", "sh", "-c", "/bin/busybox cat /a/logo.txt /m > /seen"]
"""


def test_run_mount_from_a_named_context_and_a_stage(lab, ws):
    """A mount's from= names a context or a stage as COPY --from does: the context is given to
    BuildKit (else it would pull docker.io/library/assets), and a misspelt name is exit 2."""
    busyboxes(ws, "tools", ["amd64"])
    ws.write({
        "tools/BUILD.yaml": "tools: {rule: image, platforms: [linux/amd64]}\n",
        "tools/Dockerfile": "FROM scratch\nCOPY --chmod=755 busybox-amd64 /bin/busybox\n",
        "app/BUILD.yaml": """
            app:
              rule: image
              backend: buildx
              platforms: [linux/amd64]
              contexts: {tools: //tools, assets: ./assets}
        """,
        "app/Dockerfile": MOUNTS,
        "app/assets/logo.txt": "logo\n",
    })
    res = ws.run("run", "//app:app")
    assert res.code == 0, res
    assert file_in(ws, "//app:app[linux/amd64]", "seen") == "logo\nfrom a stage\n"

    ws.write({"app/Dockerfile": MOUNTS.replace("from=build", "from=biuld")})
    res = ws.run("run", "//app:app")
    assert res.code == 2, res
    assert "app/Dockerfile:4: //app:app: 'biuld' is neither a stage nor a context" in res.err
