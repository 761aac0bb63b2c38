"""The native backend's metadata instructions, through the CLI: each one lands in the image config
read back from the store, with one history entry per instruction (issue 3, item 2)."""

from __future__ import annotations

from graphbuild import platforms
from graphbuild.oci.store import Store

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def store(ws) -> Store:
    return Store(ws.root / ".graphbuild" / "oci")


def config_of(ws, node: str) -> dict:
    s = store(ws)
    desc = s.lookup(node)
    assert desc is not None, f"{node} is not in the store"
    return s.read_json(s.read_json(desc["digest"])["config"]["digest"])


def build(ws, *patterns: str) -> None:
    res = ws.run("run", *patterns)
    assert res.code == 0, res


def test_every_metadata_instruction_lands_in_the_config(ws):
    ws.write({
        "app/BUILD.yaml": """
            img:
              rule: image
              platforms: [linux/amd64]
              labels: {org.example.from-build: "yes", overridden: by-build}
        """,
        "app/Dockerfile": """
            FROM scratch
            MAINTAINER Jane Doe <jane@example.com>
            ENV A=1 B="two words"
            ENV C=${A}-$B
            ENV A=3
            LABEL version="1.0" "with space"="a b" overridden=by-dockerfile
            WORKDIR /srv
            WORKDIR app/$A
            USER 1000:1000
            EXPOSE 80 53/udp 8000-8002
            VOLUME ["/data"]
            VOLUME /cache /logs
            STOPSIGNAL SIGQUIT
            SHELL ["/bin/bash", "-eu", "-c"]
            ENTRYPOINT ["/bin/app", "--serve"]
            CMD echo "$HOME" done
            HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --retries=4 CMD curl -f http://localhost/ || exit 1
            ONBUILD COPY . /src
        """,
    })
    build(ws, "//app:img")
    cfg = config_of(ws, "//app:img[linux/amd64]")
    c = cfg["config"]
    assert cfg["architecture"] == "amd64" and cfg["os"] == "linux"
    assert cfg["author"] == "Jane Doe <jane@example.com>"
    # a later ENV of the same name replaces it in place (BuildKit's addEnv)
    assert c["Env"] == [PATH, "A=3", "B=two words", "C=1-two words"]
    assert c["Labels"] == {"version": "1.0", "with space": "a b", "overridden": "by-build",
                           "org.example.from-build": "yes"}
    assert c["WorkingDir"] == "/srv/app/3"
    assert c["User"] == "1000:1000"
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {},
                                 "8002/tcp": {}}
    assert c["Volumes"] == {"/data": {}, "/cache": {}, "/logs": {}}
    assert c["StopSignal"] == "SIGQUIT"
    assert c["Shell"] == ["/bin/bash", "-eu", "-c"]
    assert c["Entrypoint"] == ["/bin/app", "--serve"]
    # shell form runs with the SHELL in force, its variables left to the shell
    assert c["Cmd"] == ["/bin/bash", "-eu", "-c", 'echo "$HOME" done']
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                                "Interval": 30_000_000_000, "Timeout": 3_000_000_000,
                                "StartPeriod": 60_000_000_000, "Retries": 4}
    assert c["OnBuild"] == ["COPY . /src"]
    # one history entry per instruction, in order, as BuildKit writes them (ONBUILD writes
    # none); only WORKDIR makes a layer (its directory)
    hist = cfg["history"]
    assert [h["created_by"].split()[0] for h in hist] == [
        "MAINTAINER", "ENV", "ENV", "ENV", "LABEL", "WORKDIR", "WORKDIR", "USER", "EXPOSE",
        "VOLUME", "VOLUME", "STOPSIGNAL", "SHELL", "ENTRYPOINT", "CMD", "HEALTHCHECK"]
    assert {h["comment"] for h in hist} == {"buildkit.dockerfile.v0"}
    assert [h["created_by"] for h in hist if not h.get("empty_layer")] == [
        "WORKDIR /srv", "WORKDIR /srv/app/3"]  # the directory as it became, as BuildKit
    assert all(h["created"] == "1970-01-01T00:00:00Z" for h in hist)
    assert len(cfg["rootfs"]["diff_ids"]) == 2


def test_json_and_shell_forms_and_healthcheck_none(ws):
    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64]}\n",
        "p/Dockerfile": """
            FROM scratch
            ENTRYPOINT exec /bin/server --port 80
            CMD ["--verbose", "x y"]
            HEALTHCHECK NONE
        """,
    })
    build(ws, "//p:img")
    c = config_of(ws, "//p:img[linux/amd64]")["config"]
    assert c["Entrypoint"] == ["/bin/sh", "-c", "exec /bin/server --port 80"]
    assert c["Cmd"] == ["--verbose", "x y"]
    assert c["Healthcheck"] == {"Test": ["NONE"]}


def test_entrypoint_resets_an_inherited_cmd_but_not_its_own_stage_cmd(ws):
    ws.write({
        "p/BUILD.yaml": """
            base: {rule: image, target: base, platforms: [linux/amd64]}
            reset: {rule: image, target: reset, platforms: [linux/amd64]}
            keep: {rule: image, target: keep, platforms: [linux/amd64]}
            inherit: {rule: image, target: inherit, platforms: [linux/amd64]}
        """,
        "p/Dockerfile": """
            FROM scratch AS base
            ENTRYPOINT ["/old"]
            CMD ["base-cmd"]

            FROM base AS reset
            ENTRYPOINT ["/new"]

            FROM base AS keep
            CMD ["own-cmd"]
            ENTRYPOINT ["/new"]

            FROM base AS inherit
            LABEL x=y
        """,
    })
    build(ws, "//p:all")
    assert config_of(ws, "//p:base[linux/amd64]")["config"]["Cmd"] == ["base-cmd"]
    reset = config_of(ws, "//p:reset[linux/amd64]")["config"]
    assert reset["Entrypoint"] == ["/new"] and "Cmd" not in reset
    keep = config_of(ws, "//p:keep[linux/amd64]")["config"]
    assert keep["Entrypoint"] == ["/new"] and keep["Cmd"] == ["own-cmd"]
    inherit = config_of(ws, "//p:inherit[linux/amd64]")
    assert inherit["config"]["Entrypoint"] == ["/old"]
    assert inherit["config"]["Cmd"] == ["base-cmd"]
    # a stage built on another keeps the parent's history, then adds its own
    assert [h["created_by"] for h in inherit["history"]] == [
        'ENTRYPOINT ["/old"]', 'CMD ["base-cmd"]', "LABEL x=y"]


def test_arg_scope_build_args_and_automatic_platform_args(ws):
    ws.write({
        "p/BUILD.yaml": """
            img:
              rule: image
              platforms: [linux/amd64, linux/arm/v7]
              build_args: {FROM_BUILD: overridden, GLOBAL: from-build-args}
        """,
        "p/Dockerfile": """
            ARG GLOBAL=global-default
            ARG UNUSED=nothing
            ARG FROM_BUILD=default
            FROM scratch AS stage-amd64
            LABEL chosen=amd64
            FROM scratch AS stage-arm
            LABEL chosen=arm
            FROM stage-${TARGETARCH}
            ENV BEFORE=[${GLOBAL}]
            ARG GLOBAL
            ENV AFTER=[${GLOBAL}] UNSEEN=[${UNUSED}]
            ARG FROM_BUILD
            ARG LOCAL=local-default
            ARG TARGETPLATFORM
            ARG TARGETOS
            ARG TARGETARCH
            ARG TARGETVARIANT
            ARG BUILDPLATFORM
            ENV FB=$FROM_BUILD LV=$LOCAL
            ENV TP=$TARGETPLATFORM TO=$TARGETOS TA=$TARGETARCH TV=[$TARGETVARIANT]
            ENV BP=$BUILDPLATFORM
            ENV UNDECLARED=[$BUILDARCH]
            WORKDIR /w/${TARGETARCH}
        """,
    })
    build(ws, "//p:img")
    host = str(platforms.host())
    for plat, arch, variant in (("linux/amd64", "amd64", ""), ("linux/arm/v7", "arm", "v7")):
        cfg = config_of(ws, f"//p:img[{plat}]")
        c = cfg["config"]
        env = dict(e.split("=", 1) for e in c["Env"])
        assert c["Labels"] == {"chosen": arch}, plat  # FROM picked with an automatic arg
        assert env["BEFORE"] == "[]"  # a meta ARG is not in a stage until declared there
        assert env["AFTER"] == "[from-build-args]"  # build_args win over the default
        assert env["UNSEEN"] == "[]"
        assert env["FB"] == "overridden" and env["LV"] == "local-default"
        assert (env["TP"], env["TO"], env["TA"], env["TV"]) == (plat, "linux", arch,
                                                                 f"[{variant}]")
        assert env["BP"] == host
        assert env["UNDECLARED"] == "[]"  # automatic args too must be declared in a stage
        assert c["WorkingDir"] == f"/w/{arch}"
        # ARG values are build-time only: never in the config's Env
        assert not {"GLOBAL", "FROM_BUILD", "LOCAL", "TARGETARCH"} & set(env)
        assert cfg["architecture"] == arch and cfg.get("variant", "") == variant
        args = [h["created_by"] for h in cfg["history"] if h["created_by"].startswith("ARG")]
        assert [a.split()[1].split("=")[0] for a in args] == [
            "GLOBAL", "FROM_BUILD", "LOCAL", "TARGETPLATFORM", "TARGETOS", "TARGETARCH",
            "TARGETVARIANT", "BUILDPLATFORM"]


def test_build_arg_change_rebuilds_and_changes_the_image(ws):
    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64], build_args: {V: one}}\n",
        "p/Dockerfile": "FROM scratch\nARG V=unset\nLABEL v=$V\n",
    })
    build(ws, "//p:img")
    assert config_of(ws, "//p:img[linux/amd64]")["config"]["Labels"] == {"v": "one"}
    ws.write({"p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64], build_args: {V: two}}\n"})
    build(ws, "//p:img")
    assert config_of(ws, "//p:img[linux/amd64]")["config"]["Labels"] == {"v": "two"}


def test_multi_stage_and_target(ws):
    ws.write({
        "p/BUILD.yaml": """
            final: {rule: image, platforms: [linux/amd64]}
            builder: {rule: image, platforms: [linux/amd64], target: Builder}
        """,
        "p/Dockerfile": """
            FROM scratch AS builder
            COPY a.txt /build/a.txt
            ENV STAGE=builder

            FROM scratch AS unused
            COPY missing-but-never-built /x

            FROM scratch
            COPY --from=builder /build/a.txt /a.txt
            COPY --from=0 build/a.txt /zero.txt
            LABEL stage=final
        """,
        "p/a.txt": "A\n",
    })
    build(ws, "//p:all")
    final = config_of(ws, "//p:final[linux/amd64]")
    assert final["config"]["Labels"] == {"stage": "final"}
    assert final["config"]["Env"] == [PATH]  # nothing from the builder stage's config
    assert [h["created_by"] for h in final["history"]] == [  # BuildKit's text: no --from
        "COPY /build/a.txt /a.txt # buildkit", "COPY build/a.txt /zero.txt # buildkit",
        "LABEL stage=final"]
    assert len(final["rootfs"]["diff_ids"]) == 2
    assert "empty_layer" not in final["history"][0]
    builder = config_of(ws, "//p:builder[linux/amd64]")
    assert builder["config"]["Env"] == [PATH, "STAGE=builder"]
    assert "Labels" not in builder["config"]
    assert [h["created_by"] for h in builder["history"]] == [
        "COPY a.txt /build/a.txt # buildkit", "ENV STAGE=builder"]


def test_empty_entrypoint_and_cmd_clear_inherited_ones(ws):
    ws.write({
        "p/BUILD.yaml": """
            base: {rule: image, dockerfile: base.Dockerfile, platforms: [linux/amd64]}
            img: {rule: image, platforms: [linux/amd64], contexts: {base: ":base"}}
        """,
        "p/base.Dockerfile": 'FROM scratch\nENTRYPOINT ["/x"]\nCMD ["y"]\nENV LEGACY value with spaces\n',
        "p/Dockerfile": "FROM base\nENTRYPOINT []\nCMD []\n",
    })
    build(ws, "//p:img")
    c = config_of(ws, "//p:img[linux/amd64]")["config"]
    # BuildKit omits empty lists (omitempty): the keys are gone, not []
    assert "Entrypoint" not in c and "Cmd" not in c
    assert c["Env"] == [PATH, "LEGACY=value with spaces"]


def test_onbuild_triggers_of_a_base_image_are_not_silently_dropped(ws):
    ws.write({
        "p/BUILD.yaml": """
            base: {rule: image, dockerfile: base.Dockerfile, platforms: [linux/amd64]}
            img: {rule: image, platforms: [linux/amd64], contexts: {base: ":base"}}
        """,
        "p/base.Dockerfile": "FROM scratch\nONBUILD LABEL triggered=yes\n",
        "p/Dockerfile": "FROM scratch AS first\nLABEL a=b\nFROM base\nLABEL x=y\n",
    })
    res = ws.run("run", "//p:img")
    assert res.code == 1, res
    assert "p/Dockerfile:3: //p:img: base image base has ONBUILD triggers (LABEL triggered=yes)" \
        in res.err, res
    assert config_of(ws, "//p:base[linux/amd64]")["config"]["OnBuild"] == ["LABEL triggered=yes"]


def test_workdir_makes_its_directory_as_buildkit_does(ws):
    """mkdir -p of the directory, owned by the USER in effect, one layer per WORKDIR (empty when
    the directory exists already); WORKDIR / makes none."""
    import io
    import tarfile

    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64]}\n",
        "p/Dockerfile": """
            FROM scratch
            COPY --chown=7:8 --chmod=700 f /srv/f
            WORKDIR /srv
            USER 1000:2000
            WORKDIR app/x
            WORKDIR /
        """,
        "p/f": "f\n",
    })
    build(ws, "//p:img")
    s = store(ws)
    manifest = s.read_json(s.lookup("//p:img[linux/amd64]")["digest"])
    cfg = s.read_json(manifest["config"]["digest"])
    assert [h.get("empty_layer", False) for h in cfg["history"]] == [
        False, False, True, False, True]
    assert cfg["config"]["WorkingDir"] == "/"
    layers = []
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(s.read_bytes(layer["digest"])), mode="r:gz") as t:
            layers.append([(m.name, m.type, m.mode, m.uid, m.gid) for m in t])
    assert len(layers) == 3
    assert layers[1] == []  # /srv exists (the COPY made it): an empty layer, as BuildKit commits
    # the new directories belong to the USER; /srv is listed unchanged as their parent (mode
    # 0700: COPY --chmod made it, as BuildKit v0.21+)
    assert layers[2] == [("srv", tarfile.DIRTYPE, 0o700, 7, 8),
                         ("srv/app", tarfile.DIRTYPE, 0o755, 1000, 2000),
                         ("srv/app/x", tarfile.DIRTYPE, 0o755, 1000, 2000)]


def test_workdir_owned_by_an_unknown_user_is_root_as_in_buildkit(ws):
    """A USER the image's /etc/passwd does not name owns WORKDIR as 0:0, as in BuildKit (it
    failed the node)."""
    import io
    import tarfile

    from graphbuild.oci.store import Store

    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64]}\n",
        "p/Dockerfile": "FROM scratch\nUSER nobody\nWORKDIR /app\n",
    })
    res = ws.run("run", "//p:img")
    assert res.code == 0, res
    store = Store(ws.path(".graphbuild/oci"))
    layer = store.read_json(store.lookup("//p:img[linux/amd64]")["digest"])["layers"][-1]
    with tarfile.open(fileobj=io.BytesIO(store.read_bytes(layer["digest"]))) as tar:
        app = tar.getmember("app")
    assert (app.uid, app.gid) == (0, 0)
