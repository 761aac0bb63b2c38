"""Image analysis: reading the Dockerfile per platform, checking what the backend can build, and
collecting exactly the inputs the Dockerfile can reach."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from graphbuild import backends, platforms
from graphbuild.errors import UserError, did_you_mean
from graphbuild.labels import Label
from graphbuild.rule_api import AnalysisContext, NodeId, Target
from graphbuild.yamlpos import read_text

DOCKER_IMAGE = "docker-image://"
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"


def check_attrs(target: Target) -> None:
    """Load-time checks that need no other target."""
    backend = target.attrs["backend"]
    if backend and backend not in backends.names():
        raise target.error(f"unknown backend '{backend}'", "backend",
                           did_you_mean(backend, backends.names())
                           or f"backends: {', '.join(backends.names())}")
    sample = platforms.Platform("linux", "arm", "v7")  # every template key non-empty
    for tag in target.attrs["tags"]:
        check_tag(target, tag, expand_tag(tag, sample))


TEMPLATE_KEYS = ("{os}", "{arch}", "{variant}")


def expand_tag(tag: str, plat: platforms.Platform) -> str:
    out = tag.replace("{os}", plat.os).replace("{arch}", plat.arch)
    return out.replace("{variant}", plat.variant)


def check_tag(target: Target, written: str, tag: str | None = None) -> None:
    """A tag (as ``written``, or as expanded for a platform) must name an image in the store's
    index.json, so a bad one is exit 2 before anything runs rather than a failure at the end."""
    from graphbuild.oci.store import check_ref_name

    try:
        check_ref_name(written if tag is None else tag)
    except ValueError:
        shown = repr(written) if tag in (None, written) else f"{written!r} (here {tag!r})"
        hint = "a tag is [host/]name:tag of letters, digits and . _ - separators, e.g. myapp:v1"
        if any(k in written for k in TEMPLATE_KEYS) and target.rule == "manifest":
            hint = "{os} {arch} {variant} name per-platform images: use them in an image's tags"
        elif "{variant}" in written:
            hint = "{variant} is empty on platforms without one (linux/amd64): keep it off the end"
        raise target.error(f"invalid tag {shown}", "tags", hint) from None


@dataclass
class NodeSpec:
    """Everything one (image, platform) node needs, computed at analysis time."""

    label: str
    platform: platforms.Platform
    backend: str
    tool_version: str
    context_dir: Path
    dockerfile: Path
    dockerfile_rel: str
    plan: object
    build_args: dict
    target: str
    labels: dict
    contexts: dict  # name -> ("node", NodeId) | ("dir", Path)
    refs: dict  # image reference -> the same reference pinned by digest
    source_date_epoch: int
    deps: list[NodeId] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    input_globs: list[str] = field(default_factory=list)
    key_data: dict = field(default_factory=dict)
    ref_platforms: dict = field(default_factory=dict)  # reference -> FROM --platform
    builder: str = ""  # buildx builder instance ("" = the default)


class Setup:
    """Per-target facts shared by its platforms."""

    def __init__(self, target: Target, ctx: AnalysisContext) -> None:
        self.target = target
        self.ctx = ctx
        ws = ctx.ws
        self.root = ws.root
        pkg_dir = ws.root / target.package
        self.context_dir = _inside(ws.root, pkg_dir / target.attrs["context"], target, "context")
        if not self.context_dir.is_dir():
            raise target.error(f"context '{target.attrs['context']}' is not a directory", "context",
                               "context is a directory relative to the package (default '.')")
        self.dockerfile = _inside(ws.root, pkg_dir / target.attrs["dockerfile"], target, "dockerfile")
        self.dockerfile_rel = ws.rel(self.dockerfile)
        try:
            self.text = read_text(self.dockerfile, self.dockerfile_rel)
        except UserError as exc:  # not UTF-8: name the target too
            exc.label = str(target.label)
            raise
        except OSError:
            raise target.error(f"Dockerfile '{self.dockerfile_rel}' not found", "dockerfile",
                               "the path is relative to the package directory") from None
        self.contexts = self._contexts()
        self.root_prefix = f"{self.root}/"
        self._copy_memo: dict = {}
        self.ignore = self._dockerignore()
        self.backend_choice = target.attrs["backend"] or ws.backend
        self.sde = int(os.environ.get(SOURCE_DATE_EPOCH, "0") or 0)

    def _plan(self, plat: platforms.Platform):
        """The Dockerfile read for one platform: a pure function of its text and these
        arguments, remembered across runs (stage resolution costs a no-op build most)."""
        import hashlib

        from graphbuild.backends.plan import make_plan

        t = self.target
        host = platforms.host()
        key = ("plan", self.dockerfile_rel, hashlib.sha256(self.text.encode()).hexdigest(),
               tuple(sorted(t.attrs["build_args"].items())), str(plat), str(host),
               t.attrs["target"], tuple(sorted(self.contexts)), str(t.label))
        return self.ctx.remembered(key, lambda walked: make_plan(
            self.text, self.dockerfile_rel, str(t.label), t.attrs["build_args"], plat, host,
            t.attrs["target"] or None, set(self.contexts)))

    def _dockerignore(self):
        from graphbuild.backends.plan import dockerignore_path
        from graphbuild.dockerignore import DockerIgnore

        path = dockerignore_path(self.context_dir, self.dockerfile)
        self.ignore_path = path
        return DockerIgnore.from_file(path) if path else None

    @classmethod
    def of(cls, target: Target, ctx: AnalysisContext) -> Setup:
        return cls(target, ctx)

    def _contexts(self) -> dict:
        out = {}
        for name, value in self.target.attrs["contexts"].items():
            if isinstance(value, Label):
                out[name] = ("label", value)
            elif value.startswith(DOCKER_IMAGE):
                out[name] = ("ref", value[len(DOCKER_IMAGE):])
            else:
                path = _inside(self.root, self.root / self.target.package / value, self.target,
                               "contexts")
                if not path.is_dir():
                    raise self.target.error(f"context '{name}': '{value}' is not a directory",
                                            "contexts", "a named context is a label (//pkg:name or "
                                            ":name), docker-image://ref or a directory")
                out[name] = ("dir", path)
        return out

    # -- per platform --------------------------------------------------------------------------
    def node_spec(self, plat: platforms.Platform) -> NodeSpec:
        from graphbuild.backends.plan import UnknownTarget

        t = self.target
        try:
            plan = self._plan(plat)
        except UnknownTarget as exc:
            raise t.error(f"{exc.message} in {self.dockerfile_rel}", "target", exc.hint) from None
        backend = self._backend(plan)
        spec = NodeSpec(str(t.label), plat, backend, backends.get(backend).version(),
                        self.context_dir, self.dockerfile, self.dockerfile_rel, plan,
                        t.attrs["build_args"], t.attrs["target"], t.attrs["labels"], {}, {},
                        self.sde)
        if backend == "buildx":  # the builder instance for this platform
            spec.builder = backends.get(backend).node_builder(t, self.ctx, plat)
        spec.deps = self.ctx.nodes_for(t.attrs["deps"], plat)
        self._resolve_contexts(spec, plan, plat)
        self._inputs(spec, plan)
        ignore = self.ignore_path
        spec.inputs = sorted({self.dockerfile_rel, *([self._rel(ignore)] if ignore else []),
                              *spec.inputs})
        spec.key_data = {
            "build_args": t.attrs["build_args"], "target": t.attrs["target"],
            "labels": t.attrs["labels"], "backend": backend, "source_date_epoch": self.sde,
            "contexts": {k: self._rel(v[1]) if v[0] == "dir" else str(v[1])
                         for k, v in spec.contexts.items()},
            "refs": spec.refs,
            "ref_platforms": {k: str(v) for k, v in spec.ref_platforms.items()},
        }
        return spec

    def _backend(self, plan) -> str:
        choice = self.backend_choice
        needs = _needs_more(plan)
        if choice == "auto":
            if not needs:
                return "native"
            why = {}
            for name in backends.EXTERNAL:
                why[name] = backends.missing(name)
                if why[name] is None:
                    return name
            line, what = needs[0]
            raise UserError(f"{what} needs a backend that runs containers (native cannot), and "
                            f"neither buildx nor buildah is available: {why['buildx']}; "
                            f"{why['buildah']}", path=plan.path, line=line,
                            label=str(self.target.label),
                            hint="install buildah (daemonless) or Docker with the buildx plugin")
        if choice == "native" and needs:
            line, what = needs[0]
            raise UserError(f"the native backend cannot execute {what}", path=plan.path,
                            line=line, label=str(self.target.label),
                            hint="set `backend: buildah` or `backend: buildx` (or auto) on this "
                                 "image; native builds COPY/ADD of local files and metadata only")
        if choice not in backends.MODULES:
            raise self.target.error(f"backend '{choice}' is not available in this build",
                                    "backend", f"available: {', '.join(backends.names())}")
        why = backends.missing(choice)
        if why is not None:
            raise self.target.error(f"backend '{choice}' cannot run here: {why}",
                                    "backend" if self.target.attrs["backend"] else None,
                                    "install it, or choose another backend (native, buildx, "
                                    "buildah or auto) on the image or in WORKSPACE.yaml")
        return choice

    def _resolve_contexts(self, spec: NodeSpec, plan, plat) -> None:
        for name in plan.contexts_used:
            kind, value = self.contexts[name]
            if kind == "label":
                spec.contexts[name] = ("node", self._label_node(value, plat, name))
            elif kind == "dir":
                spec.contexts[name] = ("dir", value)
            else:
                spec.contexts[name] = ("ref", self._pin(value))
        for idx, base in plan.bases.items():
            if base.kind == "context" and not self._is_image(base.value):
                raise UserError(f"FROM {base.value}: that context is a directory, not an image",
                                path=plan.path, line=plan.stages[idx].line, label=spec.label,
                                hint="FROM takes scratch, a stage, or a context naming an image "
                                     "or pull target; COPY --from reads a directory")
        for line, ref, flag in plan.refs:
            try:  # bad input first, before any registry lookup
                if flag:  # FROM --platform=$BUILDPLATFORM ref: that platform's image, not ours
                    spec.ref_platforms[ref] = platforms.parse(flag)
                spec.refs[ref] = self._pin(ref)
            except platforms.PlatformError as exc:
                raise UserError(f"FROM --platform: {exc}", path=plan.path, line=line,
                                label=spec.label, hint=exc.hint) from None
            except UserError as exc:
                raise UserError(exc.message, path=plan.path, line=line, label=spec.label,
                                hint=exc.hint) from None
        spec.deps.extend(n for k, n in spec.contexts.values() if k == "node" and n not in spec.deps)

    def _is_image(self, name: str) -> bool:
        kind, value = self.contexts[name]
        if kind == "label":
            prov = self.ctx.provider(value)
            return bool(prov.data.get("image")) or prov.rule == "pull"
        return kind == "ref"

    def _pin(self, ref: str) -> str:
        """A base image reference pinned by digest (a tag is resolved once per run)."""
        from graphbuild.remote import Remote

        return Remote.of(self.ctx.ws).resolve(ref)

    def _label_node(self, label: Label, plat, name: str) -> NodeId:
        prov = self.ctx.provider(label)
        node = prov.nodes.get(str(plat)) or prov.nodes.get(None)
        if node is None:
            raise self.target.error(f"context '{name}': {label} does not build {plat}",
                                    "contexts", f"add {plat} to the platforms of {label}")
        return node

    def _inputs(self, spec: NodeSpec, plan) -> None:
        """Files each COPY/ADD can reach (after .dockerignore); escaping the context is exit 2."""
        from graphbuild.dockerfile import instructions as ins
        from graphbuild.oci import copyspec

        ignore = self.ignore
        files: set[str] = set()
        for idx in plan.order:
            for cmd in plan.stages[idx].commands:
                if not isinstance(cmd, ins.Copy):
                    continue
                _check_copy_flags(cmd, plan, spec)
                root, ign = self.context_dir, ignore
                if cmd.from_:
                    ctx_entry = spec.contexts.get(cmd.from_)
                    if ctx_entry is None or ctx_entry[0] != "dir":
                        continue  # a stage, image or command output: keyed by its digest
                    root, ign = ctx_entry[1], None
                try:
                    files.update(self._copy_inputs(root, cmd.sources, ign))
                    _check_many_into_one(cmd, root, ign)
                except copyspec.CopyError as exc:
                    raise UserError(exc.message, path=plan.path, line=cmd.line, label=spec.label,
                                    hint=exc.hint or "COPY sources are relative to the build "
                                    "context and must stay inside it") from None
                spec.input_globs.extend(self._rel(root) + "/" + s.lstrip("/")
                                        for s in cmd.sources)
        spec.inputs = sorted(files)

    def _copy_inputs(self, root: Path, sources: list[str], ignore) -> list[str]:
        """Workspace-relative files a COPY reaches: the same for every platform that expands
        its sources alike, and remembered across runs while the directories are unchanged."""
        from graphbuild.oci import copyspec

        key = ("copy", str(root), tuple(sources), ignore.patterns if ignore else ())
        if key not in self._copy_memo:
            def walk(walked: list[str]) -> list[str]:
                paths = copyspec.copy_inputs(root, sources, ignore, walked)
                # a symlink to a directory is no file to hash: the files under it are listed
                return [self._rel(p) for p in paths if not p.is_dir()]

            self._copy_memo[key] = self.ctx.remembered(key, walk)
        return self._copy_memo[key]

    def _rel(self, path: Path | str) -> str:
        text = str(path)
        if text.startswith(self.root_prefix):
            return text[len(self.root_prefix):]
        return Path(os.path.relpath(path, self.root)).as_posix()


def _check_many_into_one(cmd, root: Path, ignore) -> None:
    """Docker's rule that several sources need a destination spelled as a directory, counted
    as the build counts them (a wildcard by its matches), found before anything runs."""
    from graphbuild.dockerignore import has_glob_meta
    from graphbuild.oci import copyspec

    if copyspec.resolve_dest(cmd.dest)[1]:
        return
    if len(cmd.sources) + len(cmd.heredocs) < 2 and not any(map(has_glob_meta, cmd.sources)):
        return
    copyspec.resolve_copy(root, cmd.sources, cmd.dest, ignore=ignore, is_add=False,
                          inline=[(doc.path, b"") for doc in cmd.heredocs])


def _check_copy_flags(cmd, plan, spec) -> None:
    """Flags the native and other backends would reject mid-build, found before anything runs."""
    from graphbuild.oci import copyspec

    try:
        if cmd.chmod:
            copyspec.parse_chmod(cmd.chmod)
    except copyspec.CopyError as exc:
        raise UserError(exc.message, path=plan.path, line=cmd.line, label=spec.label,
                        hint=exc.hint) from None
    if spec.backend == "native" and (cmd.parents or cmd.excludes or cmd.checksum):
        flag = "--parents" if cmd.parents else "--exclude" if cmd.excludes else "--checksum"
        raise UserError(f"the native backend does not support COPY {flag}", path=plan.path,
                        line=cmd.line, label=spec.label,
                        hint="use backend: buildah or buildx for this instruction")


def _needs_more(plan) -> list[tuple[int, str]]:
    needs = [(line, "RUN") for line in plan.runs]
    needs += [(line, f"ADD {url}") for line, url in plan.add_urls]
    return sorted(needs)


_REAL: dict[str, str] = {}


def _realpath(path: str) -> str:
    """os.path.realpath with each directory resolved once per process (packages share their
    parents: one lstat per new path component instead of one per component per target)."""
    if path in _REAL:
        return _REAL[path]
    parent, name = os.path.split(path)
    if not name:
        return path
    base = _realpath(parent)
    joined = os.path.join(base, name)
    resolved = os.path.realpath(joined) if os.path.islink(joined) else joined
    _REAL[path] = resolved
    return resolved


def _inside(root: Path, path: Path, target: Target, attr: str) -> Path:
    resolved = Path(_realpath(os.path.normpath(path)))
    if resolved != root and root not in resolved.parents:
        raise target.error(f"'{attr}' leads outside the workspace ({path})", attr,
                           "contexts and Dockerfiles must live inside the workspace")
    return resolved
