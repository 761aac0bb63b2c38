"""Typed instructions and build stages: BuildKit's ``instructions`` package plus the ARG/ENV
scoping and variable expansion of ``dockerfile2llb``.

``parse_stages`` checks every instruction as BuildKit's instructions.Parse does, expands each
``FROM`` with the meta ARGs (those before the first FROM) and the automatic platform ARGs, and
expands the words BuildKit expands (ENV, ARG, LABEL, WORKDIR, USER, STOPSIGNAL, VOLUME, EXPOSE,
COPY/ADD) in the stages the target needs, in order, with the environment BuildKit would have:
ARG and ENV write one environment, so the later of the two wins. RUN, CMD, ENTRYPOINT, SHELL,
HEALTHCHECK and ONBUILD stay as written: their variables belong to the shell at run time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar, Protocol

from graphbuild.dockerfile.parser import (
    KNOWN_COMMANDS,
    Dockerfile,
    DockerfileSyntaxError,
    Heredoc,
    Instruction,
    chomp_heredoc,
    parse_heredoc,
)
from graphbuild.dockerfile.shell import ShellLex, go_quote, trim_space
from graphbuild.errors import did_you_mean

PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
                 "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9-_.]*\Z")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_MIN_HEALTH_INTERVAL_NS = 1_000_000  # Docker's container.MinimumDuration (1ms)
# Heredoc bodies expand variables only: quotes in them belong to the file (BuildKit ExpandRaw).
_HEREDOC_LEX = ShellLex("\\", skip_process_quotes=True)


class PlatformLike(Protocol):
    os: str
    arch: str
    variant: str

    def build_args(self) -> dict[str, str]: ...


# -- typed commands ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class Command:
    """Every command keeps where it came from: lines are 1-based, ``original`` is its code."""

    line: int
    end_line: int
    original: str

    keyword: ClassVar[str] = ""  # the instruction, lowercase


@dataclass(kw_only=True)
class Env(Command):
    pairs: list[tuple[str, str]]
    keyword = "env"


@dataclass(kw_only=True)
class Arg(Command):
    """One declared name; ``value`` is what it resolved to in its scope (None: unset)."""

    name: str
    default: str | None
    value: str | None = None
    keyword = "arg"


@dataclass(kw_only=True)
class Label(Command):
    pairs: list[tuple[str, str]]
    keyword = "label"


@dataclass(kw_only=True)
class Maintainer(Command):
    maintainer: str
    keyword = "maintainer"


@dataclass(kw_only=True)
class Workdir(Command):
    path: str
    keyword = "workdir"


@dataclass(kw_only=True)
class User(Command):
    user: str
    keyword = "user"


@dataclass(kw_only=True)
class Expose(Command):
    ports: list[str]
    keyword = "expose"

    def specs(self) -> list[str]:
        """The ports as image-config keys (``80/tcp``), ranges spelled out."""
        return port_specs(self.ports, self.line)


@dataclass(kw_only=True)
class Volume(Command):
    paths: list[str]
    keyword = "volume"


@dataclass(kw_only=True)
class StopSignal(Command):
    signal: str
    keyword = "stopsignal"


@dataclass(kw_only=True)
class Cmd(Command):
    """``args`` is the JSON array, or one string to run with the SHELL when ``shell_form``."""

    args: list[str]
    shell_form: bool
    keyword = "cmd"


@dataclass(kw_only=True)
class Entrypoint(Command):
    args: list[str]
    shell_form: bool
    keyword = "entrypoint"


@dataclass(kw_only=True)
class Shell(Command):
    args: list[str]
    keyword = "shell"


@dataclass(kw_only=True)
class Healthcheck(Command):
    """``test`` is ``["NONE"]``, ``["CMD", ...]`` or ``["CMD-SHELL", cmd]``; durations are
    nanoseconds and 0 means "not set" (inherit), as in the image config."""

    test: list[str]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0
    keyword = "healthcheck"


@dataclass(kw_only=True)
class Run(Command):
    args: list[str]
    shell_form: bool
    heredocs: list[Heredoc] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    network: str | None = None
    security: str | None = None
    devices: list[str] = field(default_factory=list)
    keyword = "run"


@dataclass(kw_only=True)
class Onbuild(Command):
    expression: str
    keyword = "onbuild"


@dataclass(frozen=True)
class SourceContent:
    """A COPY/ADD source written inline as a heredoc: file ``path`` holding ``data``."""

    path: str
    data: str
    expand: bool


@dataclass(kw_only=True)
class Copy(Command):
    """COPY, or ADD when ``is_add``. ``from_stage`` is the stage ``--from`` names, if any."""

    sources: list[str]
    dest: str
    from_: str | None = None
    from_stage: int | None = None
    chown: str = ""
    chmod: str = ""
    link: bool = False
    heredocs: list[SourceContent] = field(default_factory=list)
    is_add: bool = False
    checksum: str = ""
    keep_git_dir: bool = False
    unpack: bool | None = None
    parents: bool = False
    excludes: list[str] = field(default_factory=list)

    @property  # type: ignore[override]
    def keyword(self) -> str:
        return "add" if self.is_add else "copy"


@dataclass
class Stage:
    """One ``FROM`` and its commands. ``base`` is the FROM word after expansion;
    ``base_stage`` the index of the earlier stage it names, if it names one. ``error`` holds an
    expansion error BuildKit would only report if this stage were built (see parse_stages)."""

    name: str | None
    index: int
    base: str
    base_raw: str
    platform_flag: str | None
    line: int
    end_line: int
    original: str
    commands: list[Command] = field(default_factory=list)
    base_stage: int | None = None
    error: DockerfileSyntaxError | None = None

    @property
    def is_scratch(self) -> bool:
        return self.base_stage is None and self.base == "scratch"


# -- flags (BuildKit's BFlags) -----------------------------------------------------------------


def _parse_flags(raw: list[str], spec: Mapping[str, str]) -> dict[str, object]:
    """Flags by name. ``spec`` maps each allowed flag to "bool", "string" or "strings"."""
    values: dict[str, object] = {name: [] for name, kind in spec.items() if kind == "strings"}
    for arg in raw:
        if not arg.startswith("--"):
            raise _CommandError(f"arg should start with -- : {arg}")
        if arg == "--":
            break
        name, eq, value = arg[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            hint = did_you_mean(name, spec)
            raise _CommandError(f"unknown flag: {name}", hint)
        if name in values and kind != "strings":
            raise _CommandError(f"duplicate flag specified: {name}")
        values[name] = _flag_value(name, kind, value, bool(eq), values.get(name))
    return values


def _flag_value(name: str, kind: str, value: str, has_value: bool, seen: object) -> object:
    if kind == "bool":
        if has_value and not value:
            raise _CommandError(f"missing a value on flag: {name}")
        if value.lower() not in ("", "true", "false"):
            raise _CommandError(f"expecting boolean value for flag {name}, not: {value}")
        return value.lower() != "false"
    if not has_value:
        raise _CommandError(f"missing a value on flag: {name}")
    if kind == "strings":
        return [*seen, value]  # type: ignore[misc]
    return value


class _CommandError(Exception):
    """A malformed instruction; parse_stages adds the line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


# -- from Instruction to typed command ---------------------------------------------------------


def _where(inst: Instruction) -> dict:
    return {"line": inst.start_line, "end_line": inst.end_line,
            "original": trim_space(inst.original)}


def _exactly_one(inst: Instruction, keyword: str) -> str:
    if len(inst.value) != 1:
        raise _CommandError(f"{keyword} requires exactly one argument")
    return inst.value[0]


def _at_least_one(inst: Instruction, keyword: str) -> list[str]:
    if not inst.value:
        raise _CommandError(f"{keyword} requires at least one argument")
    return inst.value


def _shell_args(inst: Instruction) -> list[str]:
    # BuildKit's handleJSONArgs: the shell form is one string, joined with spaces.
    return list(inst.value) if inst.json else [" ".join(inst.value)]


def _pairs(inst: Instruction, keyword: str) -> list[tuple[str, str]]:
    args = _at_least_one(inst, keyword)
    if len(args) % 2:
        raise _CommandError(f"Bad input to {keyword}, too many arguments")
    pairs = list(zip(args[::2], args[1::2]))
    if any(not key for key, _ in pairs):
        raise _CommandError(f"{keyword} names can not be blank")
    return pairs


def _env(inst: Instruction) -> Env:
    _parse_flags(inst.flags, {})
    return Env(pairs=_pairs(inst, "ENV"), **_where(inst))


def _label(inst: Instruction) -> Label:
    _parse_flags(inst.flags, {})
    return Label(pairs=_pairs(inst, "LABEL"), **_where(inst))


def _maintainer(inst: Instruction) -> Maintainer:
    value = _exactly_one(inst, "MAINTAINER")
    _parse_flags(inst.flags, {})
    return Maintainer(maintainer=value, **_where(inst))


def _workdir(inst: Instruction) -> Workdir:
    value = _exactly_one(inst, "WORKDIR")
    _parse_flags(inst.flags, {})
    return Workdir(path=value, **_where(inst))


def _user(inst: Instruction) -> User:
    value = _exactly_one(inst, "USER")
    _parse_flags(inst.flags, {})
    return User(user=value, **_where(inst))


def _stopsignal(inst: Instruction) -> StopSignal:
    return StopSignal(signal=_exactly_one(inst, "STOPSIGNAL"), **_where(inst))


def _expose(inst: Instruction) -> Expose:
    ports = _at_least_one(inst, "EXPOSE")
    _parse_flags(inst.flags, {})
    return Expose(ports=sorted(ports), **_where(inst))


def _volume(inst: Instruction) -> Volume:
    paths = [trim_space(v) for v in _at_least_one(inst, "VOLUME")]
    _parse_flags(inst.flags, {})
    if "" in paths:
        raise _CommandError("VOLUME specified can not be an empty string")
    return Volume(paths=paths, **_where(inst))


def _args(inst: Instruction) -> list[Arg]:
    out = []
    for word in _at_least_one(inst, "ARG"):
        name, eq, default = word.partition("=")
        if eq and not name:
            raise _CommandError("ARG names can not be blank")
        out.append(Arg(name=name, default=default if eq else None, **_where(inst)))
    return out


def _cmd(inst: Instruction) -> Cmd:
    _parse_flags(inst.flags, {})
    return Cmd(args=_shell_args(inst), shell_form=not inst.json, **_where(inst))


def _entrypoint(inst: Instruction) -> Entrypoint:
    _parse_flags(inst.flags, {})
    return Entrypoint(args=_shell_args(inst), shell_form=not inst.json, **_where(inst))


def _shell(inst: Instruction) -> Shell:
    _parse_flags(inst.flags, {})
    args = _shell_args(inst)
    if not args:
        raise _CommandError("SHELL requires at least one argument")
    if not inst.json:
        raise _CommandError("SHELL requires the arguments to be in JSON form")
    return Shell(args=args, **_where(inst))


_RUN_FLAGS = {"mount": "strings", "network": "string", "security": "string", "device": "strings"}


def _run(inst: Instruction) -> Run:
    flags = _parse_flags(inst.flags, _RUN_FLAGS)
    return Run(args=_shell_args(inst), shell_form=not inst.json, heredocs=list(inst.heredocs),
               mounts=flags["mount"], network=flags.get("network"),
               security=flags.get("security"), devices=flags["device"], **_where(inst))


def _onbuild(inst: Instruction) -> Onbuild:
    if inst.sub_cmd is None:
        raise _CommandError("ONBUILD requires at least one argument")
    _parse_flags(inst.flags, {})
    trigger = inst.sub_cmd.upper()
    if trigger == "ONBUILD":
        raise _CommandError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise _CommandError(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", inst.original, count=1)
    for doc in inst.heredocs:
        expression += "\n" + doc.content + doc.name
    return Onbuild(expression=expression, **_where(inst))


_HEALTH_FLAGS = {"interval": "string", "timeout": "string", "start-period": "string",
                 "start-interval": "string", "retries": "string"}


def _healthcheck(inst: Instruction) -> Healthcheck:
    args = _at_least_one(inst, "HEALTHCHECK")
    kind, rest = args[0].upper(), args[1:]
    if kind == "NONE":
        if rest:
            raise _CommandError("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(test=["NONE"], **_where(inst))
    flags = _parse_flags(inst.flags, _HEALTH_FLAGS)
    if kind != "CMD":
        raise _CommandError(f"Unknown type {go_quote(kind)} in HEALTHCHECK (try CMD)")
    command = rest if inst.json else [" ".join(rest)]
    if not command:
        raise _CommandError("Missing command after HEALTHCHECK CMD")
    return Healthcheck(
        test=["CMD", *command] if inst.json else ["CMD-SHELL", *command],
        interval=_interval(flags, "interval"), timeout=_interval(flags, "timeout"),
        start_period=_interval(flags, "start-period"),
        start_interval=_interval(flags, "start-interval"),
        retries=_retries(flags.get("retries")), **_where(inst),
    )


def _interval(flags: Mapping[str, object], name: str) -> int:
    text = flags.get(name)
    if not text:
        return 0
    try:
        value = parse_go_duration(str(text))
    except ValueError as exc:
        raise _CommandError(str(exc)) from None
    if value and value < _MIN_HEALTH_INTERVAL_NS:
        raise _CommandError(f"Interval {go_quote(name)} cannot be less than 1ms")
    return value


def _retries(text: object) -> int:
    if not text:
        return 0
    if not re.fullmatch(r"[+-]?[0-9]+", str(text)) or not -2**31 <= int(str(text)) < 2**31:
        raise _CommandError(f"strconv.ParseInt: parsing {go_quote(str(text))}: invalid syntax")
    if int(str(text)) < 0:
        raise _CommandError(f"--retries cannot be negative ({int(str(text))})")
    return int(str(text))


_COPY_FLAGS = {"chown": "string", "from": "string", "chmod": "string", "link": "bool",
               "parents": "bool", "exclude": "strings"}
_ADD_FLAGS = {"chown": "string", "chmod": "string", "link": "bool", "keep-git-dir": "bool",
              "checksum": "string", "exclude": "strings", "unpack": "bool"}


def _copy(inst: Instruction) -> Copy:
    is_add = inst.cmd == "add"
    keyword = "ADD" if is_add else "COPY"
    if len(inst.value) < 2:
        raise _CommandError(f"{keyword} requires at least two arguments, but only one was "
                            "provided. Destination could not be determined")
    flags = _parse_flags(inst.flags, _ADD_FLAGS if is_add else _COPY_FLAGS)
    *srcs, dest = inst.value
    if parse_heredoc(dest) is not None:
        raise _CommandError(f"{keyword} cannot accept a heredoc as a destination")
    bodies = {doc.name: doc for doc in inst.heredocs}
    sources, contents = [], []
    for src in srcs:
        doc = parse_heredoc(src)
        if doc is None:
            sources.append(src)
            continue
        body = bodies[doc.name].content if doc.name in bodies else ""
        contents.append(SourceContent(doc.name, chomp_heredoc(body) if doc.chomp else body,
                                      doc.expand))
    return Copy(
        sources=sources, dest=dest, heredocs=contents, is_add=is_add,
        from_=flags.get("from"), chown=str(flags.get("chown", "")),
        chmod=str(flags.get("chmod", "")), link=bool(flags.get("link", False)),
        checksum=str(flags.get("checksum", "")), keep_git_dir=bool(flags.get("keep-git-dir")),
        unpack=flags.get("unpack"), parents=bool(flags.get("parents", False)),
        excludes=list(flags.get("exclude", [])), **_where(inst),
    )


_TYPED: dict[str, Callable[[Instruction], Command]] = {
    "env": _env, "label": _label, "maintainer": _maintainer, "workdir": _workdir,
    "user": _user, "stopsignal": _stopsignal, "expose": _expose, "volume": _volume,
    "cmd": _cmd, "entrypoint": _entrypoint, "shell": _shell, "run": _run,
    "onbuild": _onbuild, "healthcheck": _healthcheck, "copy": _copy, "add": _copy,
}


def parse_command(inst: Instruction) -> list[Command]:
    """The typed command(s) of one instruction (one per name for ARG); FROM is parse_stages'."""
    try:
        if inst.cmd == "arg":
            return list(_args(inst))
        if inst.cmd not in _TYPED:
            raise _unknown(inst)
        return [_TYPED[inst.cmd](inst)]
    except _CommandError as exc:
        raise DockerfileSyntaxError(str(exc), inst.start_line, hint=exc.hint) from None


def _unknown(inst: Instruction) -> _CommandError:
    keyword = inst.keyword or inst.cmd
    if inst.cmd == "from":
        return _CommandError("FROM starts a stage: use parse_stages")
    close = did_you_mean(keyword.upper(), [c.upper() for c in KNOWN_COMMANDS])
    return _CommandError(f"unknown instruction: {keyword}", close)


def _stage_from(inst: Instruction, index: int) -> Stage:
    args = inst.value
    try:
        flags = _parse_flags(inst.flags, {"platform": "string"})
        name = None
        if len(args) == 3 and args[1].lower() == "as":
            name = args[2].lower()
            if not _STAGE_NAME.match(name):
                raise _CommandError(f"invalid name for build stage: {go_quote(args[2])}, "
                                    "name can't start with a number or contain symbols")
        elif len(args) != 1:
            raise _CommandError("FROM requires either one or three arguments")
    except _CommandError as exc:
        raise DockerfileSyntaxError(str(exc), inst.start_line, hint=exc.hint) from None
    platform = flags.get("platform")
    return Stage(name=name, index=index, base=args[0], base_raw=args[0],
                 platform_flag=str(platform) if platform is not None else None,
                 line=inst.start_line, end_line=inst.end_line, original=trim_space(inst.original))


# -- stages, scoping and expansion ---------------------------------------------------------------


def _split_stages(df: Dockerfile) -> tuple[list[Stage], list[Arg]]:
    stages: list[Stage] = []
    meta: list[Arg] = []
    for inst in df.instructions:
        if inst.cmd == "from":
            stages.append(_stage_from(inst, len(stages)))
            continue
        commands = parse_command(inst)
        if stages:
            stages[-1].commands.extend(commands)
        elif inst.cmd == "arg":
            meta.extend(commands)  # type: ignore[arg-type]
        else:
            raise DockerfileSyntaxError("no build stage in current context", inst.start_line)
    return stages, meta


def platform_args(target_platform: PlatformLike | None,
                  build_platform: PlatformLike | None) -> dict[str, str]:
    """TARGET* and BUILD* as BuildKit predefines them."""
    args: dict[str, str] = {}
    if target_platform is not None:
        args.update(target_platform.build_args())
    if build_platform is not None:
        args.update({"BUILD" + key[len("TARGET"):]: value
                     for key, value in build_platform.build_args().items()})
    return args


def _expand(lex: ShellLex, word: str, env: Mapping[str, str], line: int) -> str:
    try:
        return lex.process_word(word, env)
    except DockerfileSyntaxError as exc:
        exc.line = line
        raise


def _global_args(meta: list[Arg], build_args: Mapping[str, str], lex: ShellLex,
                 platform: Mapping[str, str]) -> dict[str, str]:
    """The values FROM lines see: platform ARGs, then meta ARGs in order (build args win)."""
    scope = {key: build_args.get(key, value) for key, value in platform.items()}
    for arg in meta:
        if arg.name in build_args:
            arg.value = build_args[arg.name]
        elif arg.default is not None:
            arg.value = _expand(lex, arg.default, scope, arg.line)
        scope[arg.name] = arg.value or ""
    return scope


def _resolve_bases(stages: list[Stage], scope: Mapping[str, str], lex: ShellLex) -> None:
    for stage in stages:
        stage.base = _expand(lex, stage.base_raw, scope, stage.line)
        if not stage.base:
            raise DockerfileSyntaxError(
                f"base name ({stage.base_raw}) should not be blank", stage.line)
        if stage.platform_flag is not None:
            stage.platform_flag = _expand(lex, stage.platform_flag, scope, stage.line)
        earlier = [s for s in stages[: stage.index] if s.name == stage.base.lower()]
        stage.base_stage = earlier[-1].index if earlier else None


def _resolve_copy_sources(stages: list[Stage]) -> None:
    by_name = {s.name: s.index for s in stages if s.name}
    for stage in stages:
        for cmd in stage.commands:
            if not isinstance(cmd, Copy) or not cmd.from_:
                continue
            key = cmd.from_.lower()
            if key in by_name:
                cmd.from_stage = by_name[key]
            elif cmd.from_.isascii() and cmd.from_.isdigit():  # a stage by its index
                if int(cmd.from_) >= len(stages):
                    raise DockerfileSyntaxError("index out of bounds", cmd.line)
                cmd.from_stage = int(cmd.from_)


def _dependencies(stage: Stage) -> list[tuple[int, int]]:
    """(stage index, line) of every stage this one needs."""
    deps = [(stage.base_stage, stage.line)] if stage.base_stage is not None else []
    deps += [(c.from_stage, c.line) for c in stage.commands
             if isinstance(c, Copy) and c.from_stage is not None]
    return deps


def reachable_stages(stages: list[Stage], target: Stage) -> list[Stage]:
    """The stages ``target`` needs through FROM and COPY --from, in file order; a cycle is an
    error at the line that closes it."""
    state: dict[int, str] = {}

    def visit(index: int) -> None:
        state[index] = "visiting"
        for dep, line in _dependencies(stages[index]):
            if state.get(dep) == "visiting":
                name = stages[dep].name or f"stage-{dep}"
                raise DockerfileSyntaxError(
                    f"circular dependency detected on stage: {name}", line)
            if dep not in state:
                visit(dep)
        state[index] = "done"

    visit(target.index)
    return [s for s in stages if s.index in state]


class _Scope:
    """One stage's expansion environment: ENV and ARG values, later writes winning."""

    def __init__(self, env: dict[str, str], lex: ShellLex, build_args: Mapping[str, str],
                 global_args: Mapping[str, str]) -> None:
        self.env = env
        self.lex = lex
        self.build_args = build_args
        self.global_args = global_args

    def word(self, text: str, line: int) -> str:
        return _expand(self.lex, text, self.env, line)

    def arg(self, arg: Arg) -> None:
        if arg.name in self.build_args:
            arg.value = self.build_args[arg.name]
        elif arg.default is not None:
            arg.value = self.word(arg.default, arg.line)
        elif arg.name in self.global_args:  # `ARG NAME` re-declares a meta/platform ARG
            arg.value = self.global_args[arg.name]
        if arg.value is not None:
            self.env[arg.name] = arg.value

    def command(self, cmd: Command) -> None:
        expander = _EXPANDERS.get(type(cmd))
        if expander is not None:
            expander(self, cmd)


def _expand_env(scope: _Scope, cmd: Env) -> None:
    cmd.pairs = [(scope.word(k, cmd.line), scope.word(v, cmd.line)) for k, v in cmd.pairs]
    scope.env.update(cmd.pairs)


def _expand_label(scope: _Scope, cmd: Label) -> None:
    cmd.pairs = [(scope.word(k, cmd.line), scope.word(v, cmd.line)) for k, v in cmd.pairs]


def _expand_expose(scope: _Scope, cmd: Expose) -> None:
    try:
        cmd.ports = [p for port in cmd.ports for p in scope.lex.process_words(port, scope.env)]
    except DockerfileSyntaxError as exc:
        exc.line = cmd.line
        raise


def _expand_copy(scope: _Scope, cmd: Copy) -> None:
    cmd.sources = [scope.word(s, cmd.line) for s in cmd.sources]
    cmd.dest = scope.word(cmd.dest, cmd.line)
    cmd.chown = scope.word(cmd.chown, cmd.line)
    cmd.chmod = scope.word(cmd.chmod, cmd.line)
    cmd.checksum = scope.word(cmd.checksum, cmd.line)
    cmd.excludes = [scope.word(e, cmd.line) for e in cmd.excludes]
    cmd.heredocs = [
        SourceContent(doc.path, _expand(_HEREDOC_LEX, doc.data, scope.env, cmd.line), True)
        if doc.expand else doc for doc in cmd.heredocs
    ]


def _set(attr: str) -> Callable[[_Scope, Command], None]:
    def expand(scope: _Scope, cmd: Command) -> None:
        setattr(cmd, attr, scope.word(getattr(cmd, attr), cmd.line))
    return expand


def _expand_volume(scope: _Scope, cmd: Volume) -> None:
    cmd.paths = [scope.word(path, cmd.line) for path in cmd.paths]


# The commands BuildKit expands before dispatching them; the rest keep their text.
_EXPANDERS: dict[type, Callable] = {
    Env: _expand_env, Label: _expand_label, Expose: _expand_expose, Copy: _expand_copy,
    Volume: _expand_volume, Arg: _Scope.arg, Workdir: _set("path"), User: _set("user"),
    StopSignal: _set("signal"),
}


def parse_stages(
    df: Dockerfile,
    build_args: Mapping[str, str],
    target_platform: PlatformLike | None,
    build_platform: PlatformLike | None,
    *,
    target: str | None = None,
    base_env: Callable[[str], Mapping[str, str]] | None = None,
) -> tuple[list[Stage], dict[str, str]]:
    """The stages of ``df`` with their words expanded, and the meta ARGs' values.

    Every stage is expanded. BuildKit only expands the stages it builds, so an expansion error
    (``${X:?unset}``) is raised here only for a stage that ``target`` (the last stage by
    default) needs; any other stage keeps it in ``stage.error``, and ``target_stage`` raises it
    if that stage is chosen. ``base_env`` gives an external base image's config Env, which
    BuildKit also expands with; without it such images contribute no variables.
    """
    lex = ShellLex(df.escape)
    try:
        stages, meta = _split_stages(df)
        scope = _global_args(meta, build_args, lex, platform_args(target_platform, build_platform))
        _resolve_bases(stages, scope, lex)
        _resolve_copy_sources(stages)
        chosen = _find_stage(stages, target) if stages else None
        needed = {s.index for s in reachable_stages(stages, chosen)} if chosen else set()
        finals: dict[int, dict[str, str]] = {}
        for stage in stages:
            try:
                finals[stage.index] = _expand_stage(stage, finals, lex, build_args, scope,
                                                    base_env)
            except DockerfileSyntaxError as exc:
                if stage.index in needed:
                    raise
                exc.path = df.path
                stage.error = exc
    except DockerfileSyntaxError as exc:
        exc.path = exc.path or df.path
        raise
    return stages, {arg.name: arg.value or "" for arg in meta}


def _expand_stage(stage: Stage, finals: Mapping[int, dict[str, str]], lex: ShellLex,
                  build_args: Mapping[str, str], global_args: Mapping[str, str],
                  base_env: Callable[[str], Mapping[str, str]] | None) -> dict[str, str]:
    if stage.base_stage is not None:  # a stage inherits its parent's whole state
        parent = finals.get(stage.base_stage)
        if parent is None:  # the parent failed to expand: so does its child
            raise _parent_error(stage)
        env = dict(parent)
    elif base_env is not None and not stage.is_scratch:
        env = dict(base_env(stage.base))
    else:
        env = {}
    scope = _Scope(env, lex, build_args, global_args)
    for cmd in stage.commands:
        scope.command(cmd)
    return scope.env


def _parent_error(stage: Stage) -> DockerfileSyntaxError:
    return DockerfileSyntaxError(
        f"stage {stage.index} is based on stage {stage.base_stage}, which failed", stage.line)


def target_stage(stages: list[Stage], target: str | None = None) -> Stage:
    """The stage to build: the one named ``target`` (case-insensitive), else the last.

    Raises the deferred expansion error of any stage it needs."""
    chosen = _find_stage(stages, target)
    for stage in reachable_stages(stages, chosen):
        if stage.error is not None:
            raise stage.error
    return chosen


def _find_stage(stages: list[Stage], target: str | None) -> Stage:
    if not stages:
        raise DockerfileSyntaxError("the Dockerfile has no FROM instruction: nothing to build")
    if target is None:
        return stages[-1]
    for stage in reversed(stages):  # two stages of one name: the later one, as BuildKit
        if stage.name == target.lower():
            return stage
    names = [s.name for s in stages if s.name]
    available = ", ".join(names) if names else "none (no stage has a name: use FROM … AS name)"
    hint = did_you_mean(target.lower(), names) or f"stages in this Dockerfile: {available}"
    raise DockerfileSyntaxError(f'target stage "{target}" could not be found', hint=hint)


# -- Go-compatible value parsing ---------------------------------------------------------------

_UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6,
          "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"([0-9]*)(\.[0-9]*)?([^0-9.]*)")


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration``, in nanoseconds (``1m30s``, ``1.5h``, ``250ms``)."""
    invalid = ValueError(f"time: invalid duration {go_quote(text)}")
    rest, sign = text, 1
    if rest[:1] in ("+", "-"):
        sign, rest = (-1 if rest[0] == "-" else 1), rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total = Fraction(0)
    while rest:
        whole, frac, unit = _DURATION_PART.match(rest).groups()
        if not whole and len(frac or "") <= 1:
            raise invalid
        if not unit:
            raise ValueError(f"time: missing unit in duration {go_quote(text)}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(text)}")
        total += Fraction((whole or "0") + (frac or "")) * _UNITS[unit]
        rest = rest[_DURATION_PART.match(rest).end():]
    if total >= 2**63:
        raise invalid
    return sign * int(total)


def port_specs(ports: list[str], line: int | None = None) -> list[str]:
    """EXPOSE words as ``port/proto`` keys (Docker's nat.ParsePortSpecs, container side)."""
    out: list[str] = []
    for raw in ports:
        spec, _, proto = raw.rpartition("/") if "/" in raw else (raw, "", "tcp")
        proto = proto.lower() or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise DockerfileSyntaxError(f"invalid proto: {proto}", line)
        container = spec.rsplit(":", 1)[-1]
        first, _, last = container.partition("-")
        if not _is_port(first) or (last and not _is_port(last)) or (
                last and int(last) < int(first)):
            raise DockerfileSyntaxError(f"invalid containerPort: {container}", line)
        for port in range(int(first), int(last or first) + 1):
            key = f"{port}/{proto}"
            if key not in out:
                out.append(key)
    return out


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= 65535
