"""What an image target's Dockerfile says, per platform, that analysis needs: the files it
reaches, what it needs of a backend, the contexts and base images it names.

Reading a Dockerfile (parse, stage resolution, the walks of each COPY's sources) is the dearest
part of analysing an image, and a no-op build repeats it for every image. So the facts are
remembered across runs while every path they came from keeps its stat stamp (the Dockerfile, the
.dockerignore, each directory walked and those leading to them); the plan itself is made again
only when the node builds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from graphbuild import __version__, platforms
from graphbuild.errors import UserError

FACTS_VERSION = 10  # bumped when Facts change shape or meaning (10: RUN --mount=from)


@dataclass
class Facts:
    """One platform's reading of the Dockerfile."""

    needs: list[tuple[int, str]]  # (line, "RUN" | "ADD <url>"): what native cannot build
    contexts_used: list[str]  # read at the node's platform
    context_platforms: list[tuple[int, str, str]]  # FROM --platform=X <context>: (line, name, X)
    context_bases: list[tuple[str, int]]  # FROM <context>: (name, line)
    refs: list[tuple[int, str, str | None]]  # FROM <image ref>: (line, ref, --platform)
    native_unsupported: tuple[int, str] | None  # the first COPY flag native cannot do
    native_special: tuple[int, str, str] | None  # a FIFO or device COPY reaches: (line, why, hint)
    inputs: list[str]  # workspace-relative files, the Dockerfile and .dockerignore included
    input_globs: list[str]
    heredocs: list[int]  # lines of COPY/ADD/RUN with a heredoc (old buildah cannot build them)
    # COPY --from or RUN --mount=from=<context or image> in a stage built for another platform
    # than the node's: (line, name, that platform, "COPY --from" | "RUN --mount=from"); buildah
    # looks the image up for the stage's platform
    image_copies: list[tuple[int, str, str, str]]


@dataclass
class DockerfileFacts:
    text_digest: str  # what the plan is made from again at build time
    per_platform: dict[str, Facts]


def key(setup, plats: list[platforms.Platform]) -> tuple:
    """Everything besides the paths' stamps that the facts depend on."""
    a = setup.target.attrs
    return ("image-facts", FACTS_VERSION, __version__, str(setup.target.label),
            setup.dockerfile_str, setup.context_str, setup.exclude, repr(a["build_args"]),
            a["target"],
            repr(sorted((k, str(v)) for k, v in setup.contexts.items())),
            tuple(map(str, plats)), str(platforms.host()))


def compute(setup, plats: list[platforms.Platform], walked: list[str],
            plans: dict[str, object]) -> DockerfileFacts:
    """Read the Dockerfile for every platform (``plans`` keeps each plan for this run) and list
    in ``walked`` every path the answer came from."""
    walked.extend(setup.parent_dirs())  # named first: their identity is taken before reading
    text = setup.read_dockerfile()
    walked.append(setup.dockerfile_str)
    ignore, ignore_rel = setup.dockerignore()
    if ignore_rel:
        walked.append(f"{setup.root_prefix}{ignore_rel}")
    out = DockerfileFacts(hashlib.sha256(text.encode()).hexdigest(), {})
    shared: dict[tuple, list[str]] = {}
    reached: dict[tuple, tuple] = {}  # what a COPY's sources reach, once for all platforms
    for plat in plats:
        plan = setup.make_plan(text, plat)
        plans[str(plat)] = plan
        facts = _facts(setup, plan, plat, ignore, walked, reached)
        extra = [setup.dockerfile_rel, *([ignore_rel] if ignore_rel else [])]
        inputs = sorted({*extra, *facts.inputs})
        facts.inputs = shared.setdefault(tuple(inputs), inputs)  # one list when platforms agree
        out.per_platform[str(plat)] = facts
    return out


def _facts(setup, plan, plat: platforms.Platform, ignore, walked: list[str],
           reached: dict[tuple, tuple]) -> Facts:
    from graphbuild.dockerfile import instructions as ins
    from graphbuild.oci import copyspec

    files: set[str] = set()
    globs: list[str] = []
    unsupported = special = None
    for idx in plan.order:
        for cmd in plan.stages[idx].commands:
            if not isinstance(cmd, ins.Copy):
                continue
            _check_chmod(cmd, plan, setup)
            flag = "--checksum" if cmd.checksum else None
            if flag and unsupported is None:
                unsupported = (cmd.line, flag)
            root, ign = setup.context_str, ignore
            try:
                if cmd.from_:
                    kind, value = setup.contexts.get(cmd.from_, (None, None))
                    if kind != "dir":  # a stage, image or command output: keyed by its digest
                        copyspec.check_many_into_one(len(cmd.sources) + len(cmd.heredocs),
                                                     cmd.dest, cmd.is_add)  # wildcards: later
                        continue
                    root, ign = str(value), None
                # the same sources (as expanded for this platform) reach the same files
                memo = (root, tuple(cmd.sources), tuple(cmd.excludes), ign is None)
                if memo not in reached:
                    specials: list[tuple[str, str]] = []
                    reached[memo] = (copyspec.copy_inputs(root, cmd.sources, ign, walked,
                                                          cmd.excludes, specials), specials)
                paths, specials = reached[memo]
                if specials and special is None:
                    special = (cmd.line, *specials[0])
                # copy_inputs lists no directory: a symlink (to a directory too) is its text
                files.update(setup.rel(p) for p in paths)
                _check_many_into_one(cmd, root, ign)
            except copyspec.CopyError as exc:
                raise UserError(exc.message, path=plan.path, line=cmd.line,
                                label=str(setup.target.label),
                                hint=exc.hint or "COPY sources are relative to the build "
                                "context and must stay inside it") from None
            globs.extend(f"{setup.rel(root)}/{s.lstrip('/')}" for s in cmd.sources)
    return Facts(
        needs=sorted([(line, "RUN") for line in plan.runs]
                     + [(line, f"ADD {url}") for line, url in plan.add_urls]),
        contexts_used=sorted(plan.contexts_used), context_platforms=list(plan.context_platforms),
        context_bases=[(b.value, plan.stages[i].line) for i, b in plan.bases.items()
                       if b.kind == "context"],
        refs=list(plan.refs), native_unsupported=unsupported, native_special=special,
        inputs=sorted(files),
        input_globs=globs,
        heredocs=sorted(cmd.line for idx in plan.order for cmd in plan.stages[idx].commands
                        if getattr(cmd, "heredocs", None)),
        image_copies=_image_copies(plan, plat, set(setup.contexts)))


def _image_copies(plan, plat: platforms.Platform,
                  contexts: set[str]) -> list[tuple[int, str, str, str]]:
    from graphbuild.backends.plan import image_copies, stage_platforms

    at = stage_platforms(plan, plat)
    return [(line, name, str(at[idx]), how) for idx, line, name, how
            in image_copies(plan, contexts) if str(at[idx]) != str(plat)]


def _check_many_into_one(cmd, root: str, ignore) -> None:
    """Docker's rule that several sources need a destination spelled as a directory, counted
    as the build counts them (a wildcard by its matches), found before anything runs."""
    from graphbuild.dockerfile.dockerignore import has_glob_meta
    from graphbuild.oci import copyspec

    if copyspec.resolve_dest(cmd.dest)[1]:
        return
    if len(cmd.sources) + len(cmd.heredocs) < 2 and not any(map(has_glob_meta, cmd.sources)):
        return
    copyspec.resolve_copy(root, cmd.sources, cmd.dest, ignore=ignore, is_add=False,
                          inline=[(doc.path, b"") for doc in cmd.heredocs], exclude=cmd.excludes)


def _check_chmod(cmd, plan, setup) -> None:
    """A bad --chmod would fail mid-build under every backend: found before anything runs."""
    from graphbuild.oci import copyspec

    try:
        if cmd.chmod:
            copyspec.parse_chmod(cmd.chmod)
    except copyspec.CopyError as exc:
        raise UserError(exc.message, path=plan.path, line=cmd.line,
                        label=str(setup.target.label), hint=exc.hint) from None


def ancestors(root: str, path: str) -> list[str]:
    """The directories from ``root`` down to ``path`` itself (a directory inside ``root``):
    the way to what a Dockerfile reaches, none of which may be replaced."""
    out = [root]
    rest = path[len(root):].strip("/")
    here = root
    for part in rest.split("/") if rest else ():
        here = f"{here}/{part}"
        out.append(here)
    return out


def unchanged_dockerfile(path: str, digest: str) -> str | None:
    """The Dockerfile's text if it still has the digest analysis saw, else None."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != digest:
        return None
    return data.decode("utf-8")

