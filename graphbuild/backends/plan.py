"""A Dockerfile read for one platform: the stages to build, where each comes from, and what it
needs. Image analysis (inputs, checks) and every backend use the same plan."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..platforms import Platform


@dataclass
class StageBase:
    kind: str  # scratch | stage | context | ref
    value: object = None  # stage index, context name, or image reference


@dataclass
class DockerfilePlan:
    path: str  # workspace-relative
    stages: list
    target_index: int
    order: list[int]  # stages to build, dependencies first
    bases: dict[int, StageBase]
    runs: list[int] = field(default_factory=list)  # lines of RUN instructions in needed stages
    add_urls: list[tuple[int, str]] = field(default_factory=list)
    # (line, image ref, FROM --platform or None) to fetch
    refs: list[tuple[int, str, str | None]] = field(default_factory=list)
    contexts_used: set[str] = field(default_factory=set)  # read at the node's platform
    # (line, name, --platform) of each FROM --platform=X <named context>: BuildKit resolves
    # the context for X (dockerfile2llb resolveBaseImage), whatever the node's platform
    context_platforms: list[tuple[int, str, str]] = field(default_factory=list)
    meta_args: dict = field(default_factory=dict)


class UnknownTarget(UserError):
    """The image's `target:` names no stage of its Dockerfile."""


def _err(path: str, line: int | None, msg: str, label: str, hint: str | None = None) -> UserError:
    return UserError(msg, path=path, line=line, label=label, hint=hint)


def _stage_ref(stages: list, word: str, before: int) -> int | None:
    """The index of an earlier stage named (or numbered) ``word``."""
    lowered = word.lower()
    for s in reversed(stages[:before]):  # two stages of one name: the later one, as BuildKit
        if s.name and s.name.lower() == lowered:
            return s.index
    if word.isdigit() and int(word) < before:
        return int(word)
    return None


def _source(stages: list, word: str, before: int, contexts: set[str]) -> StageBase:
    """Where a FROM or COPY --from name points: named contexts win, as in buildx."""
    if word in contexts:
        return StageBase("context", word)
    idx = _stage_ref(stages, word, before)
    if idx is not None:
        return StageBase("stage", idx)
    if word == "scratch":
        return StageBase("scratch")
    return StageBase("ref", word)


_PARSED: dict[tuple[str, str], object] = {}


def _parsed(text: str, rel: str):
    """A Dockerfile parsed once per process, however many platforms read it."""
    from ..dockerfile.parser import parse

    key = (rel, text)
    if key not in _PARSED:
        _PARSED[key] = parse(text, rel)
    return _PARSED[key]


def make_plan(text: str, rel: str, label: str, build_args: dict[str, str], platform: Platform,
              build_platform: Platform, target: str | None, contexts: set[str],
              base_env=None) -> DockerfilePlan:
    """Parse and resolve a Dockerfile for one platform; bad input is a UserError at its line.

    ``base_env(name)`` gives the Env of an image a stage starts FROM, which BuildKit expands the
    stage's words with; backends pass it once those images are built."""
    from ..dockerfile import instructions as ins
    from ..dockerfile.errors import DockerfileSyntaxError

    try:
        df = _parsed(text, rel)
        stages, meta = ins.parse_stages(df, build_args, platform, build_platform,
                                        base_env=base_env)
        if not stages:
            raise _err(rel, 1, "the Dockerfile has no FROM instruction", label,
                       "start the build stage with FROM scratch or FROM <image>")
        try:
            tstage = ins.target_stage(stages, target)
        except DockerfileSyntaxError as exc:
            if exc.line is None and target:  # no stage has that name: the `target:` is at fault
                raise UnknownTarget(exc.message, path=rel, label=label, hint=exc.hint) from None
            raise
    except DockerfileSyntaxError as exc:
        raise _err(rel, exc.line, exc.message, label, exc.hint or
                   "see the Dockerfile reference for this instruction's syntax") from None
    plan = DockerfilePlan(rel, stages, tstage.index, [], {}, meta_args=meta)
    _visit(plan, tstage.index, contexts, set())
    _check_typos(plan, label, contexts)
    _check_ports(plan, label)
    _check_stage_platforms(plan, label)
    return plan


_BARE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _check_typos(plan: DockerfilePlan, label: str, contexts: set[str]) -> None:
    """A FROM or COPY --from name one edit away from a stage or context name is a typo, not
    an image to pull from docker.io (which would cost retries and say nothing of the line)."""
    names = {s.name.lower(): "stage" for s in plan.stages if s.name}
    names.update({c: "context" for c in contexts})
    for line, ref, _ in plan.refs:
        if not _BARE_NAME.fullmatch(ref):
            continue  # host/repo, a tag or a digest: meant as an image
        if names.get(ref) == "stage":  # defined further down: BuildKit refuses it too
            raise _err(plan.path, line, f'cannot copy from stage "{ref}": it needs to be defined '
                       "before the stage that uses it", label,
                       f"move `FROM … AS {ref}` above this line")
        close = sorted(n for n in names if one_edit_apart(ref.lower(), n))
        if close:
            raise _err(plan.path, line, f"'{ref}' is neither a stage nor a context, so it would "
                       f"be pulled as the image docker.io/library/{ref}", label,
                       f"did you mean {names[close[0]]} '{close[0]}'? (to pull the image, "
                       f"write docker.io/library/{ref})")


def one_edit_apart(a: str, b: str) -> bool:
    """``a`` and ``b`` differ by one insertion, deletion, substitution or swap of neighbours."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1:] == b[i + 1:] or (a[i + 2:] == b[i + 2:] and a[i:i + 2] == b[i:i + 2][::-1])
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[i + 1:] == shorter[i:]


def _check_stage_platforms(plan: DockerfilePlan, label: str) -> None:
    """``FROM --platform=X`` must name a platform, whatever the stage starts from (BuildKit
    parses it for every stage it builds)."""
    from .. import platforms

    for idx in plan.order:
        stage = plan.stages[idx]
        if stage.platform_flag is not None:  # an empty expansion too: BuildKit refuses it
            try:
                platforms.parse(stage.platform_flag)
            except platforms.PlatformError as exc:
                raise _err(plan.path, stage.line, f"FROM --platform: {exc}", label,
                           exc.hint) from None


def _check_ports(plan: DockerfilePlan, label: str) -> None:
    """A bad EXPOSE port is bad input, found before anything runs."""
    from ..dockerfile import instructions as ins
    from ..dockerfile.errors import DockerfileSyntaxError

    for idx in plan.order:
        for cmd in plan.stages[idx].commands:
            if isinstance(cmd, ins.Expose):
                try:
                    cmd.specs()
                except DockerfileSyntaxError as exc:
                    raise _err(plan.path, cmd.line, exc.message, label, "EXPOSE takes "
                               "port[/tcp|udp|sctp] or a range such as 8000-8010") from None


def _visit(plan: DockerfilePlan, idx: int, contexts: set[str], seen: set[int]) -> None:
    """Depth-first over stage dependencies (FROM and COPY --from), recording what each needs."""
    from ..dockerfile import instructions as ins

    if idx in seen:
        return
    seen.add(idx)
    stage = plan.stages[idx]
    base = _source(plan.stages, stage.base, idx, contexts)
    plan.bases[idx] = base
    _note_source(plan, base, stage.line, contexts, seen, stage.platform_flag)
    for cmd in stage.commands:
        if isinstance(cmd, ins.Run):
            plan.runs.append(cmd.line)
            for word in mount_sources(cmd):  # read like COPY --from: a stage, context or image
                _note_source(plan, _source(plan.stages, word, idx, contexts), cmd.line,
                             contexts, seen)
        elif isinstance(cmd, ins.Copy):
            if cmd.from_:
                src = _source(plan.stages, cmd.from_, idx, contexts)
                _note_source(plan, src, cmd.line, contexts, seen)
            if cmd.is_add:
                plan.add_urls.extend((cmd.line, s) for s in cmd.sources if _is_url(s))
    plan.order.append(idx)


def _note_source(plan, base: StageBase, line: int, contexts: set[str], seen: set[int],
                 platform_flag: str | None = None) -> None:
    if base.kind == "stage":
        _visit(plan, base.value, contexts, seen)
    elif base.kind == "context" and platform_flag:
        plan.context_platforms.append((line, base.value, platform_flag))
    elif base.kind == "context":
        plan.contexts_used.add(base.value)
    elif base.kind == "ref":
        plan.refs.append((line, base.value, platform_flag or None))


def context_key(name: str, platform: Platform) -> str:
    """The key of a named context resolved for a platform other than the node's: BuildKit's
    own ``name::os/arch`` (dockerui NamedContext), looked up before the plain ``name``."""
    return f"{name}::{platform}"


def stage_platforms(plan: DockerfilePlan, node: Platform) -> dict[int, Platform]:
    """The platform each stage to build starts from, for a node building ``node``: a stage FROM
    another stage has that stage's (its own --platform is not looked at, as in the native
    backend); FROM scratch the node's (BuildKit's emptyImage(target platform)); FROM an image
    its ``--platform``, else the node's."""
    from .. import platforms

    out: dict[int, Platform] = {}
    for idx in plan.order:  # dependencies first: a stage's base stage is already known
        base, flag = plan.bases[idx], plan.stages[idx].platform_flag
        if base.kind == "stage":
            out[idx] = out[base.value]
        elif base.kind in ("context", "ref") and flag:
            out[idx] = platforms.parse(flag)  # checked when the plan was made
        else:
            out[idx] = node
    return out


def image_copies(plan: DockerfilePlan, contexts: set[str]) -> list[tuple[int, int, str, str]]:
    """(stage index, line, name, how) of each ``COPY --from`` and ``RUN --mount=from`` in a
    stage to build that reads a named context or an image reference (not a stage)."""
    from ..dockerfile import instructions as ins

    out = []
    for idx in plan.order:
        for cmd in plan.stages[idx].commands:
            if isinstance(cmd, ins.Copy) and cmd.from_:
                reads = [("COPY --from", cmd.from_)]
            elif isinstance(cmd, ins.Run):
                reads = [("RUN --mount=from", word) for word in mount_sources(cmd)]
            else:
                continue
            for how, word in reads:
                if _source(plan.stages, word, idx, contexts).kind in ("context", "ref"):
                    out.append((idx, cmd.line, word, how))
    return out


def mount_sources(run) -> list[str]:
    """The ``from=`` of each ``RUN --mount`` (a bind or cache mount read from a stage, a named
    context or an image), in BuildKit's CSV form: ``type=bind,from=build,source=/out``."""
    import csv

    out = []
    for spec in run.mounts:
        for item in next(csv.reader([spec]), []):
            key, _, value = item.partition("=")
            if key.strip().lower() == "from" and value:
                out.append(value)
    return out


def _is_url(src: str) -> bool:
    return src.startswith(("http://", "https://", "git@")) or src.endswith(".git") and "://" in src


def context_exclusions(context_dir: Path, cache_dir: Path) -> tuple[str, ...]:
    """What is never part of a context: graphbuild's cache directory when it lies inside (a
    context at the workspace root), as a context-relative path."""
    try:
        rel = _resolved(str(cache_dir)).relative_to(_resolved(str(context_dir)))
    except ValueError:
        return ()
    return (rel.as_posix(),) if rel.parts else ()


@functools.lru_cache(maxsize=4096)
def _resolved(path: str) -> Path:
    """``Path.resolve``, once per path and run: every image's plan asks for the cache
    directory's and its context's."""
    return Path(path).resolve()


def ignore_lines(context_dir: Path, dockerfile: Path, exclude: tuple[str, ...]) -> list[str]:
    """The lines of the .dockerignore that applies, then ``exclude`` (last, so no exception
    of the user's brings the cache directory back)."""
    path = dockerignore_path(context_dir, dockerfile)
    lines = path.read_bytes().decode("utf-8", "surrogateescape").split("\n") if path else []
    return lines + [f"/{rel}" for rel in exclude]


def context_ignore(context_dir: Path, dockerfile: Path, exclude: tuple[str, ...] = ()):
    """The DockerIgnore of a context (None when it ignores nothing)."""
    from ..dockerfile.dockerignore import DockerIgnore

    ignore = DockerIgnore(ignore_lines(context_dir, dockerfile, exclude))
    return ignore if ignore else None


def dockerignore_path(context_dir: Path, dockerfile: Path) -> Path | None:
    """BuildKit's rule: ``<Dockerfile>.dockerignore`` beside the Dockerfile wins over the
    context's ``.dockerignore``."""
    specific = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if specific.is_file():
        return specific
    general = context_dir / ".dockerignore"
    return general if general.is_file() else None
