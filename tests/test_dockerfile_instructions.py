"""Typed instructions, ARG scoping and expansion, stage and target resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphbuild.dockerfile import (
    Arg,
    Cmd,
    Copy,
    DockerfileSyntaxError,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Label,
    Onbuild,
    Run,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
    parse,
    parse_stages,
    reachable_stages,
    target_stage,
)
from graphbuild.dockerfile.instructions import parse_go_duration, port_specs
from graphbuild.platforms import parse as platform

ARM64 = platform("linux/arm64")
ARMV7 = platform("linux/arm/v7")
AMD64 = platform("linux/amd64")
CORPUS = sorted((Path(__file__).parent / "dockerfile_corpus").glob("*.Dockerfile"))


def stages_of(text: str, build_args: dict[str, str] | None = None, **kwargs: object
              ) -> list[Stage]:
    return parse_stages(parse(text), build_args or {}, ARM64, AMD64, **kwargs)[0]


def labels(stage: Stage) -> dict[str, str]:
    return {k: v for cmd in stage.commands if isinstance(cmd, Label) for k, v in cmd.pairs}


def syntax_error(text: str, build_args: dict[str, str] | None = None, **kwargs: object
                 ) -> DockerfileSyntaxError:
    with pytest.raises(DockerfileSyntaxError) as info:
        stages_of(text, build_args, **kwargs)
    return info.value


# -- ARG scope ------------------------------------------------------------------------------------


def test_meta_arg_is_visible_only_in_from_until_redeclared() -> None:
    (stage,) = stages_of("ARG V=3.19\nFROM alpine:$V\nLABEL before=$V\nARG V\nLABEL after=$V\n")
    assert stage.base == "alpine:3.19"
    assert labels(stage) == {"before": "", "after": "3.19"}


def test_meta_args_expand_in_order_and_build_args_win() -> None:
    text = ("ARG REG=docker.io\nARG IMG=${REG}/library/alpine\nARG TAG=latest\n"
            "FROM $IMG:$TAG\n")
    df = parse(text)
    stages, meta = parse_stages(df, {"TAG": "3.19", "UNDECLARED": "x"}, ARM64, AMD64)
    assert stages[0].base == "docker.io/library/alpine:3.19"
    assert meta == {"REG": "docker.io", "IMG": "docker.io/library/alpine", "TAG": "3.19"}
    stages, meta = parse_stages(df, {"REG": "ghcr.io"}, ARM64, AMD64)
    assert stages[0].base == "ghcr.io/library/alpine:latest"


def test_meta_arg_without_value_is_empty_in_from() -> None:
    (stage,) = stages_of("ARG SUFFIX\nFROM alpine${SUFFIX-:unset}\n")
    assert stage.base == "alpine"  # declared, so set (to ""), as in BuildKit


def test_stage_arg_takes_build_arg_else_default() -> None:
    text = "FROM a\nARG MODE=debug\nARG OTHER\nARG NAME=${MODE}-x\nLABEL m=$MODE o=$OTHER n=$NAME\n"
    (stage,) = stages_of(text)
    assert labels(stage) == {"m": "debug", "o": "", "n": "debug-x"}
    (stage,) = stages_of(text, {"MODE": "release", "OTHER": "set"})
    assert labels(stage) == {"m": "release", "o": "set", "n": "release-x"}
    args = [c for c in stage.commands if isinstance(c, Arg)]
    assert [(a.name, a.default, a.value) for a in args] == [
        ("MODE", "debug", "release"), ("OTHER", None, "set"), ("NAME", "${MODE}-x", "release-x")]


def test_args_on_one_line_see_each_other() -> None:
    (stage,) = stages_of("FROM a\nARG A=1 B=${A}2\nLABEL b=$B\n")
    assert labels(stage) == {"b": "12"}


def test_stage_args_do_not_leak_into_sibling_stages() -> None:
    _, second = stages_of("FROM a AS one\nARG X=1\nFROM b AS two\nLABEL x=$X\n")
    assert labels(second) == {"x": ""}


# -- automatic platform ARGs ----------------------------------------------------------------------


def test_platform_args_in_from_without_declaration() -> None:
    (stage,) = stages_of("FROM --platform=$BUILDPLATFORM golang:1-$TARGETOS-$TARGETARCH\n")
    assert stage.platform_flag == "linux/amd64"
    assert stage.base == "golang:1-linux-arm64"


def test_platform_args_in_a_stage_need_declaring() -> None:
    text = ("FROM scratch\nLABEL before=$TARGETARCH\nARG TARGETPLATFORM TARGETOS TARGETARCH "
            "TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT\n"
            "LABEL p=$TARGETPLATFORM o=$TARGETOS a=$TARGETARCH v=$TARGETVARIANT "
            "bp=$BUILDPLATFORM bo=$BUILDOS ba=$BUILDARCH bv=$BUILDVARIANT\n")
    (stage,) = parse_stages(parse(text), {}, ARMV7, AMD64)[0]
    assert labels(stage) == {"before": "", "p": "linux/arm/v7", "o": "linux", "a": "arm",
                             "v": "v7", "bp": "linux/amd64", "bo": "linux", "ba": "amd64",
                             "bv": ""}


def test_platform_args_can_be_overridden_by_build_args() -> None:
    (stage,) = stages_of("FROM img-$TARGETARCH\n", {"TARGETARCH": "riscv64"})
    assert stage.base == "img-riscv64"


def test_variant_default_syntax_from_buildkit_docs() -> None:
    text = "FROM scratch\nARG TARGETARCH TARGETVARIANT\nCOPY app-${TARGETARCH}${TARGETVARIANT:+-$TARGETVARIANT} /app\n"
    assert stages_of(text)[0].commands[-1].sources == ["app-arm64"]
    (stage,) = parse_stages(parse(text), {}, ARMV7, AMD64)[0]
    assert stage.commands[-1].sources == ["app-arm-v7"]


# -- ENV and ARG together -----------------------------------------------------------------------


def test_env_after_arg_overrides_it() -> None:
    (stage,) = stages_of("FROM a\nARG V=arg\nENV V=env\nLABEL v=$V\n", {"V": "build"})
    assert labels(stage) == {"v": "env"}


def test_arg_after_env_wins_as_in_buildkit() -> None:
    # BuildKit keeps one environment for ARG and ENV, so the later write wins.
    (stage,) = stages_of("FROM a\nENV V=env\nARG V=arg\nLABEL v=$V\n")
    assert labels(stage) == {"v": "arg"}


def test_env_pairs_on_one_line_expand_with_the_previous_values() -> None:
    (stage,) = stages_of("FROM a\nENV A=old\nENV A=new B=$A\nLABEL b=$B a=$A\n")
    assert stage.commands[1].pairs == [("A", "new"), ("B", "old")]
    assert labels(stage) == {"b": "old", "a": "new"}


def test_env_legacy_form_and_quotes() -> None:
    (stage,) = stages_of('FROM a\nENV P /bin:$P\nENV Q="a  b" R=c\\ d S=\'$P\'\n')
    assert stage.commands[0].pairs == [("P", "/bin:")]
    assert stage.commands[1].pairs == [("Q", "a  b"), ("R", "c d"), ("S", "$P")]


def test_child_stage_inherits_the_parent_environment() -> None:
    text = ("FROM alpine AS base\nENV HOME_DIR=/srv\nARG TOOL=make\n"
            "FROM base AS child\nWORKDIR $HOME_DIR/app\nLABEL tool=$TOOL\n")
    _base, child = stages_of(text)
    assert child.base_stage == 0 and child.base == "base"
    assert child.commands[0].path == "/srv/app"
    assert labels(child) == {"tool": "make"}


def test_external_base_image_environment() -> None:
    seen = []

    def base_env(ref: str) -> dict[str, str]:
        seen.append(ref)
        return {"GOPATH": "/go"}

    (stage,) = stages_of("FROM golang:1.22\nWORKDIR $GOPATH/src\n", base_env=base_env)
    assert seen == ["golang:1.22"]
    assert stage.commands[0].path == "/go/src"


def test_escape_directive_applies_to_expansion() -> None:
    (stage,) = stages_of("# escape=`\nFROM a\nENV D=C:\\data\nWORKDIR $D\\sub`$X\n")
    assert stage.commands[1].path == "C:\\data\\sub$X"


# -- what is expanded and what is not -----------------------------------------------------------


def test_expanded_and_literal_instructions() -> None:
    text = """FROM a
ARG P=8080 V=/data U=app S=SIGTERM D=/srv N=x
ENV E=1
WORKDIR $D
USER $U
EXPOSE $P 9000-9001/udp "$P/udp"
VOLUME $V ["/static"]
VOLUME ["$V", "/other"]
STOPSIGNAL $S
RUN echo $N
CMD echo $N
ENTRYPOINT ["echo", "$N"]
HEALTHCHECK CMD check $N
ONBUILD RUN echo $N
"""
    (stage,) = stages_of(text)
    by_type = {type(c): c for c in stage.commands}
    assert by_type[Workdir].path == "/srv"
    assert by_type[User].user == "app"
    assert by_type[StopSignal].signal == "SIGTERM"
    assert by_type[Expose].ports == ["8080/udp", "8080", "9000-9001/udp"]  # sorted as written
    assert by_type[Expose].specs() == ["8080/udp", "8080/tcp", "9000/udp", "9001/udp"]
    volumes = [c.paths for c in stage.commands if isinstance(c, Volume)]
    assert volumes == [["/data", "[/static]"], ["/data", "/other"]]  # not JSON: words
    assert by_type[Run].args == ["echo $N"] and by_type[Run].shell_form
    assert by_type[Cmd].args == ["echo $N"] and by_type[Cmd].shell_form
    assert by_type[Entrypoint].args == ["echo", "$N"] and not by_type[Entrypoint].shell_form
    assert by_type[Healthcheck].test == ["CMD-SHELL", "check $N"]
    assert by_type[Onbuild].expression == "RUN echo $N"


def test_expose_specs() -> None:
    assert port_specs(["8080", "53/udp", "9000-9002/tcp", "127.0.0.1:80:8000", "80/TCP"]) == [
        "8080/tcp", "53/udp", "9000/tcp", "9001/tcp", "9002/tcp", "8000/tcp", "80/tcp"]
    for bad in (["http"], ["80/quic"], ["9002-9000"], ["70000"]):
        with pytest.raises(DockerfileSyntaxError):
            port_specs(bad, 3)


def test_copy_fields_and_heredocs() -> None:
    text = """FROM alpine AS build
FROM scratch
ARG OWNER=1000 NAME=app
COPY --from=build --chown=$OWNER:$OWNER --chmod=0755 --link /out/$NAME /bin/
COPY --from=0 a b
COPY --from=nginx:1.25 /etc/nginx /etc/nginx
COPY --exclude=*.md --exclude=docs --parents src/ /src/
ADD --checksum=sha256:abc --keep-git-dir=false --unpack=true x.tgz /x/
COPY <<EOF <<'RAW' <<-TABS /etc/
name=$NAME "$OWNER"
EOF
$NAME
RAW
\t\tindented $NAME
\tTABS
"""
    stages = stages_of(text.replace("\\t", "\t"))
    by_name, by_index, image, labs, add, docs = [
        c for c in stages[1].commands if isinstance(c, Copy)]
    assert (by_name.from_, by_name.from_stage, by_name.chown, by_name.chmod, by_name.link) == (
        "build", 0, "1000:1000", "0755", True)
    assert (by_name.sources, by_name.dest) == (["/out/app"], "/bin/")
    assert by_index.from_stage == 0
    assert (image.from_, image.from_stage) == ("nginx:1.25", None)
    assert (labs.excludes, labs.parents) == (["*.md", "docs"], True)
    assert (add.is_add, add.keyword, add.checksum, add.keep_git_dir, add.unpack) == (
        True, "add", "sha256:abc", False, True)
    assert [(d.path, d.data, d.expand) for d in docs.heredocs] == [
        ("EOF", 'name=app "1000"\n', True), ("RAW", "$NAME\n", False),
        ("TABS", "indented app\n", True)]
    assert docs.sources == [] and docs.dest == "/etc/"


def test_run_flags_and_heredocs_stay_literal() -> None:
    (stage,) = stages_of("FROM a\nRUN --mount=type=cache,target=/c --mount=type=secret,id=t "
                         "--network=none <<EOF\necho $HOME\nEOF\n")
    run = stage.commands[0]
    assert run.mounts == ["type=cache,target=/c", "type=secret,id=t"]
    assert run.network == "none"
    assert [(d.name, d.content) for d in run.heredocs] == [("EOF", "echo $HOME\n")]


def test_healthcheck_parsing() -> None:
    (stage,) = stages_of("FROM a\nHEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s "
                         "--start-interval=1s --retries=4 CMD [\"/bin/check\", \"-q\"]\n"
                         "HEALTHCHECK NONE\nHEALTHCHECK cmd\n")
    check, none, empty = stage.commands
    assert check.test == ["CMD", "/bin/check", "-q"]
    assert (check.interval, check.timeout, check.start_period, check.start_interval,
            check.retries) == (90 * 10**9, 5 * 10**8, 2 * 10**9, 10**9, 4)
    assert none.test == ["NONE"]
    assert empty.test == ["CMD-SHELL", ""]  # as BuildKit: the shell form is never empty


def test_go_durations() -> None:
    assert parse_go_duration("1h2m3.5s") == 3723_500_000_000
    assert parse_go_duration("1.5us") == parse_go_duration("1500ns") == 1500
    assert parse_go_duration("0") == 0
    assert parse_go_duration("-2ms") == -2_000_000
    for bad in ("", "1", "1x", ".s", "s", "1d"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)


# -- stages and targets -------------------------------------------------------------------------

MULTI = """FROM golang AS Build
RUN go build
FROM alpine AS test
COPY --from=build /out /out
FROM scratch AS unused
COPY --from=missing /x /y
FROM scratch
COPY --from=build /out /app
"""


def test_target_defaults_to_last_stage() -> None:
    stages = stages_of(MULTI)
    assert target_stage(stages).index == 3
    assert [s.name for s in stages] == ["build", "test", "unused", None]
    assert [s.index for s in reachable_stages(stages, stages[3])] == [0, 3]
    assert [s.index for s in reachable_stages(stages, stages[1])] == [0, 1]


def test_target_by_name_is_case_insensitive() -> None:
    stages = stages_of(MULTI, target="TEST")
    assert target_stage(stages, "Test") is stages[1]


def test_unknown_target_names_the_stages() -> None:
    error = syntax_error(MULTI, target="tset")
    assert error.message == 'target stage "tset" could not be found'
    assert error.hint == "did you mean 'test'?"
    error = syntax_error(MULTI, target="release")
    assert error.hint == "stages in this Dockerfile: build, test, unused"


def test_errors_in_stages_not_built_are_deferred() -> None:
    # BuildKit never expands a stage it does not build, so its errors only count if chosen.
    text = ("FROM a AS broken\nLABEL x=${REQUIRED:?unset}\nFROM broken AS child\n"
            "FROM b AS ok\n")
    stages = stages_of(text)
    assert stages[0].error is not None and stages[1].error is not None
    assert target_stage(stages) is stages[2] and stages[2].error is None
    for target in ("broken", "child"):
        with pytest.raises(DockerfileSyntaxError) as info:
            target_stage(stages, target)
        assert (info.value.line, info.value.message) == (
            2, 'failed to process "${REQUIRED:?unset}": REQUIRED: unset')
    error = syntax_error(text, target="child")
    assert (error.line, error.path) == (2, "Dockerfile")
    (stage,) = stages_of("FROM a\nARG R\nLABEL x=${R:?unset}\n", {"R": "yes"})
    assert labels(stage) == {"x": "yes"}


def test_from_names_only_earlier_stages() -> None:
    stages = stages_of("FROM alpine AS alpine\nFROM alpine\n")
    assert stages[0].base_stage is None and stages[1].base_stage == 0


def test_circular_copy_from_is_an_error_at_its_line() -> None:
    error = syntax_error("FROM a AS one\nCOPY --from=two x y\nFROM b AS two\n"
                         "COPY --from=one x y\n", target="two")
    assert error.message.startswith("circular dependency detected on stage")
    assert error.line in (2, 4)


def test_no_stages() -> None:
    stages, meta = parse_stages(parse("ARG A=1\n"), {}, ARM64, AMD64)
    assert stages == [] and meta == {"A": "1"}
    with pytest.raises(DockerfileSyntaxError, match="no FROM"):
        target_stage(stages)


# -- errors name their line ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "line", "message"), [
    ("FROM a\nFROOM b\n", 2, "unknown instruction: FROOM"),
    ("RUN x\nFROM a\n", 1, "no build stage in current context"),
    ("FROM a b\n", 1, "FROM requires either one or three arguments"),
    ("FROM a AS 1st\n", 1, ('invalid name for build stage: "1st", name can\'t start with a '
     "number or contain symbols")),
    ("FROM $EMPTY\n", 1, "base name ($EMPTY) should not be blank"),
    ("FROM a\n\n\nENV =x\n", 4, "ENV names can not be blank"),
    ("FROM a\nARG =x\n", 2, "ARG names can not be blank"),
    ("FROM a\nCOPY onlyone\n", 2, ("COPY requires at least two arguments, but only one was "
     "provided. Destination could not be determined")),
    ("FROM a\nCOPY x <<EOF\nbody\nEOF\n", 2, "COPY cannot accept a heredoc as a destination"),
    ("FROM a\nCOPY --form=b x y\n", 2, "unknown flag: form"),
    ("FROM a\nCOPY --chown x y\n", 2, "missing a value on flag: chown"),
    ("FROM a\nCOPY --link=maybe x y\n", 2, "expecting boolean value for flag link, not: maybe"),
    ("FROM a\nCOPY --from=a --from=b x y\n", 2, "duplicate flag specified: from"),
    ("FROM a\nCOPY --from=9 x y\n", 2, "index out of bounds"),
    ("FROM a\nWORKDIR\n", 2, "WORKDIR requires exactly one argument"),
    ("FROM a\nEXPOSE\n", 2, "EXPOSE requires at least one argument"),
    ("FROM a\nVOLUME [\"\"]\n", 2, "VOLUME specified can not be an empty string"),
    ("FROM a\nSHELL sh -c\n", 2, "SHELL requires the arguments to be in JSON form"),
    ("FROM a\nSHELL []\n", 2, "SHELL requires at least one argument"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", 2, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM a\nONBUILD FROM b\n", 2, "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nHEALTHCHECK NONE x\n", 2, "HEALTHCHECK NONE takes no arguments"),
    ("FROM a\nHEALTHCHECK TEST x\n", 2, 'Unknown type "TEST" in HEALTHCHECK (try CMD)'),
    ("FROM a\nHEALTHCHECK CMD []\n", 2, "Missing command after HEALTHCHECK CMD"),
    ("FROM a\nHEALTHCHECK --interval=1us CMD x\n", 2,
     'Interval "interval" cannot be less than 1ms'),
    ("FROM a\nHEALTHCHECK --timeout=5 CMD x\n", 2, 'time: missing unit in duration "5"'),
    ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", 2, "--retries cannot be negative (-1)"),
    ("FROM a\nRUN --mnt=type=cache x\n", 2, "unknown flag: mnt"),
    ("FROM a\nCOPY \"a b\" c\n", 2, ("failed to process \"\\\"a\": unexpected end of statement "
     "while looking for matching double-quote")),
    ("ARG V=${X:?}\nFROM a\n", 1, 'failed to process "${X:?}": X: is not allowed to be unset'),
])
def test_errors_carry_their_line(text: str, line: int, message: str) -> None:
    error = syntax_error(text)
    assert (error.line, error.message) == (line, message)
    assert error.path == "Dockerfile"


def test_unknown_instruction_suggests_the_right_one() -> None:
    error = syntax_error("FROM a\nCOPPY x y\n")
    assert error.hint == "did you mean 'COPY'?"
    assert "Dockerfile:2: unknown instruction: COPPY" in str(error)
    assert syntax_error("FROM a\nCOPY --chwon=1 x y\n").hint == "did you mean 'chown'?"


# -- the corpus ----------------------------------------------------------------------------------


def df_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


CORPUS_BY_NAME = {p.stem: p for p in CORPUS}



@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_resolves_for_every_target(path: Path) -> None:
    df = parse(df_text(path), str(path))
    names = [s.name for s in parse_stages(df, {}, ARM64, AMD64)[0] if s.name]
    for target in [None, *names]:
        stages, _ = parse_stages(df, {}, ARM64, AMD64, target=target)
        chosen = target_stage(stages, target)
        for stage in reachable_stages(stages, chosen):
            assert stage.error is None
            assert all(stage.line < cmd.line <= cmd.end_line for cmd in stage.commands)


def test_corpus_scratch_static_semantics() -> None:
    config, final = stages_of(df_text(CORPUS_BY_NAME["scratch_static"]))
    assert config.commands[1].heredocs[0].data == "version: 0.1.0\n"
    assert labels(final) == {"org.opencontainers.image.version": "0.1.0",
                             "org.example.arch": "arm64"}
    copies = [c for c in final.commands if isinstance(c, Copy)]
    assert copies[0].from_stage == 0
    assert copies[1].sources == ["bin/app-arm64"]
    assert copies[2].heredocs[0].data == "built for arm64\n"
    assert [c.pairs for c in final.commands if isinstance(c, Env)] == [
        [("APP_HOME", "/app"), ("PATH", "/app/bin")]]

