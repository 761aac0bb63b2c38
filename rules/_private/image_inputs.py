"""Image analysis: reading the Dockerfile per platform, checking what the backend can build, and
collecting exactly the inputs the Dockerfile can reach."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from graphbuild import backends, platforms
from graphbuild.engine.yamlpos import read_text
from graphbuild.errors import ActionFailed, UserError, did_you_mean
from graphbuild.labels import Label
from graphbuild.rule_api import AnalysisContext, NodeId, Target

from . import image_facts, image_secrets

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
    index.json and be a reference a registry accepts, so a bad one is exit 2 before anything
    runs, for every command, rather than a failure at the end of a --push."""
    from graphbuild.oci.store import check_ref_name
    from graphbuild.registry.reference import ReferenceError, parse_reference

    text = written if tag is None else tag
    shown = repr(written) if tag in (None, written) else f"{written!r} (here {tag!r})"
    try:
        check_ref_name(text)
        parse_reference(text)
    except ReferenceError as exc:
        raise target.error(f"invalid tag {shown}: {exc.problem}", "tags",
                           _pushable_hint(text)) from None
    except ValueError:
        hint = "a tag is [host/]name:tag of letters, digits and . _ - separators, e.g. myapp:v1"
        if any(k in written for k in TEMPLATE_KEYS) and target.rule == "manifest":
            hint = "{os} {arch} {variant} name per-platform images: use them in an image's tags"
        elif "{variant}" in written:
            hint = "{variant} is empty on platforms without one (linux/amd64): keep it off the end"
        raise target.error(f"invalid tag {shown}", "tags", hint) from None


def _pushable_hint(text: str) -> str:
    """The same tag as registries would take it: a lower-case repository and no '+' in the tag
    (semver build metadata), when that is what is wrong."""
    host, slash, rest = text.partition("/")
    if not (slash and ("." in host or ":" in host or host == "localhost")):
        host, slash, rest = "", "", text
    repo, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    fixed = f"{host}{slash}{repo.lower()}{colon}{tag.replace('+', '-')}"
    if fixed != text:
        return f"registries refuse it: write {fixed!r} (lower-case repository; no '+' in a tag)"
    return ("a tag is [host[:port]/]repository[:tag]: a lower-case repository, a tag of letters, "
            "digits, '_', '.' and '-'")


@dataclass
class NodeSpec:
    """Everything one (image, platform) node needs, computed at analysis time."""

    label: str
    platform: platforms.Platform
    backend: str
    tool_version: str
    context_dir: str
    dockerfile: str
    dockerfile_rel: str
    build_args: dict
    target: str
    labels: dict
    # name (or name::X, see context_key) -> ("node", NodeId) | ("dir", Path) | ("ref", pinned)
    contexts: dict
    refs: dict  # image reference -> the same reference pinned by digest
    source_date_epoch: int
    plan_loader: Callable[[], object]  # the Dockerfile plan, made when the node builds
    deps: list[NodeId] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    input_globs: list[str] = field(default_factory=list)
    key_data: dict = field(default_factory=dict)
    ref_platforms: dict = field(default_factory=dict)  # reference -> FROM --platform
    context_platforms: dict = field(default_factory=dict)  # contexts key -> FROM --platform
    builder: str = ""  # buildx builder instance ("" = the default)
    secrets: list = field(default_factory=list)  # backends.base.Secret
    ssh: list = field(default_factory=list)  # backends.base.SshAgent
    attest: dict = field(default_factory=dict)  # records to attach: {sbom, provenance}

    @property
    def plan(self):
        return self.plan_loader()


class Setup:
    """Per-target facts shared by its platforms."""

    def __init__(self, target: Target, ctx: AnalysisContext,
                 plats: list[platforms.Platform]) -> None:
        self.target = target
        self.ctx = ctx
        self.root = ctx.ws.root
        self.root_str = str(self.root)
        self.root_prefix = f"{self.root_str.rstrip('/')}/"
        self._cacheable = True  # no symlink on the way to the context or Dockerfile (_inside)
        pkg = f"{self.root_prefix}{target.package}"
        self.context_str = self._inside(f"{pkg}/{target.attrs['context']}", "context")
        if not os.path.isdir(self.context_str):
            raise target.error(f"context '{target.attrs['context']}' is not a directory", "context",
                               "context is a directory relative to the package (default '.')")
        self.dockerfile_str = self._inside(f"{pkg}/{target.attrs['dockerfile']}", "dockerfile")
        self.dockerfile_rel = self.rel(self.dockerfile_str)
        self.contexts = self._contexts()
        self.backend_choice = target.attrs["backend"] or ctx.ws.backend
        self.plats = plats
        self._auto: tuple[str | None, str] | None = None  # auto's choice, made once per image
        self.sde = int(os.environ.get(SOURCE_DATE_EPOCH, "0") or 0)
        self._plans: dict[str, object] = {}  # made during this run, kept for its builds
        self.facts = self._facts(plats)

    @classmethod
    def of(cls, target: Target, ctx: AnalysisContext, plats: list[platforms.Platform]) -> Setup:
        return cls(target, ctx, plats)

    # -- reading the Dockerfile (image_facts calls these) ----------------------------------------
    def _facts(self, plats: list[platforms.Platform]) -> image_facts.DockerfileFacts:
        def compute(walked: list[str]):
            return image_facts.compute(self, plats, walked, self._plans)

        if not self._cacheable:  # a symlink on the way: its target is not stamped
            return compute([])
        return self.ctx.remembered(image_facts.key(self, plats), compute)

    def read_dockerfile(self) -> str:
        try:
            return read_text(self.dockerfile_str, self.dockerfile_rel)
        except UserError as exc:  # not UTF-8: name the target too
            exc.label = str(self.target.label)
            raise
        except OSError:
            raise self.target.error(f"Dockerfile '{self.dockerfile_rel}' not found", "dockerfile",
                                    "the path is relative to the package directory") from None

    def dockerignore(self):
        """The .dockerignore that applies, with the cache directory excluded (None when it
        ignores nothing), and the file's relative path (None when there is none)."""
        from graphbuild.backends.plan import context_ignore, dockerignore_path

        context, dockerfile = Path(self.context_str), Path(self.dockerfile_str)
        path = dockerignore_path(context, dockerfile)
        ignore = context_ignore(context, dockerfile, self.exclude)
        return ignore, (self.rel(str(path)) if path else None)

    @functools.cached_property
    def exclude(self) -> tuple[str, ...]:
        """What of the context is never part of it: the cache directory, when inside (as
        ``plan.context_exclusions`` says; the context's symlinks are resolved already, the
        cache directory's once per run)."""
        cache = _realpath(os.path.normpath(self.ctx.ws.cache_dir), self.ctx.run_memo("realpath"))
        top = self.context_str.rstrip("/")
        return (cache[len(top) + 1:],) if cache.startswith(f"{top}/") else ()

    def parent_dirs(self) -> list[str]:
        """The directories of the Dockerfile, the context and named directory contexts (their
        entries matter: a .dockerignore appearing), and those leading to them, stamped by
        identity: replacing one is seen, an entry added beside the way is not a change."""
        from graphbuild.engine.treecache import Identity

        tops = [os.path.dirname(self.dockerfile_str), self.context_str,
                *(str(v) for k, v in self.contexts.values() if k == "dir")]
        out: dict[str, None] = dict.fromkeys(tops)
        for top in tops:
            out.update((Identity(p), None) for p in image_facts.ancestors(self.root_str, top)
                       if p not in out)
        return list(out)

    def make_plan(self, text: str, plat: platforms.Platform):
        from graphbuild.backends.plan import UnknownTarget, make_plan

        t = self.target
        try:
            return make_plan(text, self.dockerfile_rel, str(t.label), t.attrs["build_args"], plat,
                             platforms.host(), t.attrs["target"] or None, set(self.contexts))
        except UnknownTarget as exc:
            raise t.error(f"{exc.message} in {self.dockerfile_rel}", "target", exc.hint) from None

    def _plan_loader(self, plat: platforms.Platform) -> Callable[[], object]:
        """The plan analysis made, or (its facts remembered) the same plan made again from the
        Dockerfile, which must not have changed since."""
        def load():
            if str(plat) not in self._plans:
                text = image_facts.unchanged_dockerfile(self.dockerfile_str,
                                                        self.facts.text_digest)
                if text is None:
                    raise ActionFailed(f"{self.dockerfile_rel} changed while the build ran: "
                                       "run it again")
                self._plans[str(plat)] = self.make_plan(text, plat)
            return self._plans[str(plat)]
        return load

    def _contexts(self) -> dict:
        out = {}
        for name, value in self.target.attrs["contexts"].items():
            if isinstance(value, Label):
                out[name] = ("label", value)
            elif value.startswith(DOCKER_IMAGE):
                out[name] = ("ref", value[len(DOCKER_IMAGE):])
            else:
                path = self._inside(f"{self.root_prefix}{self.target.package}/{value}",
                                    "contexts")
                if not os.path.isdir(path):
                    raise self.target.error(f"context '{name}': '{value}' is not a directory",
                                            "contexts", "a named context is a label (//pkg:name or "
                                            ":name), docker-image://ref or a directory")
                out[name] = ("dir", Path(path))
        return out

    # -- per platform --------------------------------------------------------------------------
    def node_spec(self, plat: platforms.Platform) -> NodeSpec:
        t = self.target
        facts = self.facts.per_platform[str(plat)]
        backend = self._backend(facts.needs)
        if backend == "native" and facts.native_unsupported:
            line, flag = facts.native_unsupported
            raise UserError(f"the native backend does not support COPY {flag}",
                            path=self.dockerfile_rel, line=line, label=str(t.label),
                            hint="use backend: buildah or buildx for this instruction")
        if backend == "native" and facts.native_special:
            line, why, hint = facts.native_special
            raise UserError(why, path=self.dockerfile_rel, line=line, label=str(t.label),
                            hint=hint)
        if backend == "buildah":
            self._check_buildah(facts, plat)
        spec = NodeSpec(str(t.label), plat, backend, backends.version(backend),
                        self.context_str, self.dockerfile_str, self.dockerfile_rel,
                        t.attrs["build_args"], t.attrs["target"], t.attrs["labels"], {}, {},
                        self.sde, self._plan_loader(plat))
        if backend == "buildx":  # the builder instance for this platform
            spec.builder = backends.get(backend).node_builder(t, self.ctx, plat)
        spec.deps = self.ctx.nodes_for(t.attrs["deps"], plat)
        self._resolve_contexts(spec, facts, plat)
        spec.inputs = facts.inputs
        spec.input_globs = facts.input_globs
        spec.key_data = {
            "build_args": t.attrs["build_args"], "target": t.attrs["target"],
            "labels": t.attrs["labels"], "backend": backend, "source_date_epoch": self.sde,
            "contexts": {k: self.rel(str(v[1])) if v[0] == "dir" else str(v[1])
                         for k, v in spec.contexts.items()},
            "refs": spec.refs,
            "ref_platforms": {k: str(v) for k, v in spec.ref_platforms.items()},
        }
        pkg_dir = f"{self.root_prefix}{t.package}"
        spec.secrets = image_secrets.secrets(t, pkg_dir)
        spec.ssh = image_secrets.ssh(t, pkg_dir)
        spec.key_data.update(image_secrets.key_data(t))  # ids and sources, never values
        if spec.context_platforms:  # only then: the keys of other images stay as they were
            spec.key_data["context_platforms"] = {k: str(v)
                                                  for k, v in spec.context_platforms.items()}
        return spec

    def _check_buildah(self, facts, plat: platforms.Platform) -> None:
        """What buildah would fail on midway: exit 2 at its line before anything runs."""
        version = backends.version("buildah").rsplit("/", 1)[-1]
        label = str(self.target.label)
        if facts.heredocs and not backends.get("buildah").supports_heredocs():
            raise UserError(f"buildah {version} cannot build heredocs (it reads <<EOT as a file "
                            "name)", path=self.dockerfile_rel, line=facts.heredocs[0],
                            label=label, hint="use backend: buildx for this image (or native, "
                                              "when it has no RUN); buildah builds heredocs from "
                                              "1.33 on")
        for line, name, at, how in facts.image_copies:
            if name in self.contexts and not self._is_image(name):
                continue  # a directory: nothing to look up for a platform
            # COPY --from=<image> reads the target platform's image (BuildKit), which buildah
            # looks up for the stage's platform and does not find; a mount's from= alike
            raise UserError(f"{how}={name} in a stage built for {at} (FROM --platform): "
                            f"buildah {version} cannot read the {plat} image of {name} there",
                            path=self.dockerfile_rel, line=line, label=label,
                            hint=f"start a stage from it (FROM {name} AS files) and "
                                 f"{how}=files, or use backend: buildx for this image")

    def _backend(self, needs: list[tuple[int, str]]) -> str:
        choice = self.backend_choice
        if choice == "auto":
            if not needs:
                self._auto_choice()  # said once, for the image
                return "native"
            chosen, why = self._auto_choice()
            if chosen is not None:
                return chosen
            line, what = needs[0]
            installed = backends.missing("buildx") is None
            raise UserError(f"{what} needs a backend that runs containers (native cannot), and "
                            f"neither buildx nor buildah can build here: {why}",
                            path=self.dockerfile_rel, line=line, label=str(self.target.label),
                            hint="install buildah (daemonless), or get a buildx builder working: "
                                 "start its BuildKit daemon (or Docker), or name a running one "
                                 "(`docker buildx use NAME`, WORKSPACE.yaml builders)"
                                 if installed else
                                 "install buildah (daemonless) or Docker with the buildx plugin")
        if choice == "native" and needs:
            line, what = needs[0]
            raise UserError(f"the native backend cannot execute {what}", path=self.dockerfile_rel,
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

    def _auto_choice(self) -> tuple[str | None, str]:
        """What ``auto`` builds this image's platforms with, and why (``backends.auto``): one
        backend for every platform whose Dockerfile needs more than native, native for the
        rest; said once per image to ``--explain``. Builders are asked once per run."""
        if self._auto is not None:
            return self._auto
        needing = [p for p in self.plats if self.facts.per_platform[str(p)].needs]
        if not needing:
            self._auto = ("native", "no RUN or ADD <url>")
        else:
            # every platform's builder, --platform or not: a run of some platforms must pick
            # what a run of all picks, or it would build (or reuse) another backend's image
            every = self.ctx.resolve_platforms(self.target, limit=False)
            bx = backends.get("buildx")
            builders = sorted({",".join(sorted(bx.node_builder(self.target, self.ctx, p)
                                               .split(","))) for p in every})
            memo = self.ctx.run_memo("auto-backend")
            key = tuple(builders)
            if key not in memo:
                memo[key] = backends.auto(builders)
            chosen, why = memo[key]
            needed = {str(p) for p in needing}
            rest = [str(p) for p in self.plats if str(p) not in needed]
            if chosen is not None and rest:
                why += f"; native for {', '.join(rest)}: no RUN or ADD <url> there"
            self._auto = (chosen, why)
        if self._auto[0] is not None:
            self.ctx.explain(self.target, f"auto: {self._auto[0]} ({self._auto[1]})")
        return self._auto

    def _resolve_contexts(self, spec: NodeSpec, facts, plat) -> None:
        for name, line in facts.context_bases:
            if not self._is_image(name):
                raise UserError(f"FROM {name}: that context is a directory, not an image",
                                path=self.dockerfile_rel, line=line, label=spec.label,
                                hint="FROM takes scratch, a stage, or a context naming an image "
                                     "or pull target; COPY --from reads a directory")
        for key, use in _context_uses(facts, plat).items():
            self._resolve_context(spec, key, *use)
        self._resolve_refs(spec, facts, plat)
        spec.deps.extend(n for k, n in spec.contexts.values() if k == "node" and n not in spec.deps)

    def _resolve_refs(self, spec: NodeSpec, facts, plat) -> None:
        """Each base image reference pinned, once for each platform it is read for (a FROM
        --platform=$BUILDPLATFORM of a reference the final stage starts FROM too)."""
        uses = _ref_uses(facts, plat)
        for key, (ref, at, line) in uses.items():
            if at is not None:  # FROM --platform=X ref: X's image, not ours
                spec.ref_platforms[key] = at
            self._check_one_image_per_name(spec, key, ref, at, line, "image")
        for key, (ref, _, line) in uses.items():  # bad input first, before registry lookups
            try:
                spec.refs[key] = self._pin(ref)
            except UserError as exc:
                raise UserError(exc.message, path=self.dockerfile_rel, line=line,
                                label=spec.label, hint=exc.hint) from None

    def _resolve_context(self, spec: NodeSpec, key: str, name: str, at, line: int) -> None:
        """Context ``name`` read for platform ``at``: a label gives its node for ``at`` (a
        dependency of this node), a docker-image:// reference is pulled for ``at``."""
        if str(at) != str(spec.platform):
            self._check_one_image_per_name(spec, key, name, at, line)
            spec.context_platforms[key] = at
        kind, value = self.contexts[name]
        if kind == "label":
            spec.contexts[key] = ("node", self._label_node(value, at, name, line))
        elif kind == "dir":
            spec.contexts[key] = ("dir", value)
        else:
            spec.contexts[key] = ("ref", self._pin(value))

    def shares_builds(self) -> bool:
        """Whether this image's platforms may share one buildx build: each named context is
        an image or a directory (a command's output is a directory per platform), and
        WORKSPACE.yaml names no cache destination per platform."""
        if any(kind == "label" and not self._is_image(name)
               for name, (kind, _) in self.contexts.items()):
            return False
        return backends.get("buildx").shares_builds(getattr(self.ctx.ws, "buildx", None))

    def _is_image(self, name: str) -> bool:
        kind, value = self.contexts[name]
        if kind == "label":
            prov = self.ctx.provider(value)
            return bool(prov.data.get("image")) or prov.rule == "pull"
        return kind == "ref"

    def _pin(self, ref: str) -> str:
        """A base image reference pinned by digest (a tag is resolved once per run)."""
        from graphbuild.engine.remote import Remote

        return Remote.of(self.ctx.ws).resolve(ref)

    def _label_node(self, label: Label, plat, name: str, line: int = 0) -> NodeId:
        """The node of ``label`` for ``plat``; ``line`` is the FROM --platform asking for it."""
        prov = self.ctx.provider(label)
        node = prov.nodes.get(str(plat)) or prov.nodes.get(None)
        if node is not None:
            return node
        hint = f"add {plat} to the platforms of {label}"
        if self.ctx.platform_filter:  # this run builds only those: it may have dropped plat
            hint = (f"add {plat} to --platform (this run builds only those), and to the "
                    f"platforms of {label} if they lack it")
        if not line:
            raise self.target.error(f"context '{name}': {label} does not build {plat}",
                                    "contexts", hint)
        raise UserError(f"context '{name}' is read for {plat} (FROM --platform), but {label} "
                        f"does not build {plat}", path=self.dockerfile_rel, line=line,
                        label=str(self.target.label), hint=hint)

    def _check_one_image_per_name(self, spec: NodeSpec, key: str, name: str, at, line: int,
                                  what: str = "context") -> None:
        """buildx takes one image per --build-context name (it refuses BuildKit's
        ``name::os/arch``): a context or base image reference read for two platforms in one
        node is for native, and for buildah, whose copy of the Dockerfile names each FROM's
        own image (``buildah.dockerfile``)."""
        if key == name or spec.backend in ("native", "buildah"):
            return
        if what == "context":
            other = spec.context_platforms.get(name, spec.platform)  # the plain key's, made first
            hint = ("give the same value a second name under contexts and use it in this FROM, "
                    "or build with backend: buildah or native")
            subject = f"context '{name}'"
        else:
            other = spec.ref_platforms.get(name, spec.platform)
            hint = "build this image with backend: buildah or native"
            subject = f"image {name}"
        raise UserError(f"{subject} is read for {at} (FROM --platform) and for {other} in one "
                        f"build, which {spec.backend} cannot be given", path=self.dockerfile_rel,
                        line=line, label=spec.label, hint=hint)

    # -- paths ---------------------------------------------------------------------------------
    def rel(self, path: Path | str) -> str:
        text = str(path)
        if text.startswith(self.root_prefix):
            return text[len(self.root_prefix):]
        return Path(os.path.relpath(path, self.root)).as_posix()

    def _inside(self, path: str, attr: str) -> str:
        """``path`` with symlinks resolved; leading outside the workspace is exit 2."""
        plain = os.path.normpath(path)
        resolved = _realpath(plain, self.ctx.run_memo("realpath"))
        if resolved != plain:
            self._cacheable = False
        if resolved != self.root_str and not resolved.startswith(self.root_prefix):
            raise self.target.error(f"'{attr}' leads outside the workspace ({path})", attr,
                                    "contexts and Dockerfiles must live inside the workspace")
        return resolved


def _context_uses(facts, plat: platforms.Platform) -> dict[str, tuple]:
    """contexts key -> (name, platform, FROM line or 0) for each named context the node reads
    and each platform it reads it for. A name read for one platform keeps its plain key (what
    every backend can be given); read for several, the node's platform (else the first) keeps
    it and the others get ``name::X``, which BuildKit looks up before ``name``."""
    from graphbuild.backends.plan import context_key

    wanted: dict[str, dict[str, tuple]] = {}
    for name in facts.contexts_used:
        wanted.setdefault(name, {})[str(plat)] = (plat, 0)
    for line, name, flag in facts.context_platforms:
        at = platforms.parse(flag)  # checked when the plan was made
        wanted.setdefault(name, {}).setdefault(str(at), (at, line))
    out = {}
    for name, by_platform in wanted.items():
        for i, (at, line) in enumerate(by_platform.values()):
            out[context_key(name, at) if i else name] = (name, at, line)
    return out


def _ref_uses(facts, plat: platforms.Platform) -> dict[str, tuple]:
    """refs key -> (reference, its FROM --platform or None, FROM line), as _context_uses: a
    reference read for one platform keeps its plain key; read for several, the node's platform
    keeps it and the others get ``ref::X``. A --platform naming the node's own platform is kept
    (the node's key records it)."""
    from graphbuild.backends.plan import context_key

    def parsed(flag: str | None) -> platforms.Platform | None:
        return platforms.parse(flag) if flag else None  # checked when the plan was made

    def elsewhere(use: tuple) -> bool:  # read for another platform than the node's
        at = parsed(use[2])
        return at is not None and str(at) != str(plat)

    wanted: dict[str, dict[str, list]] = {}
    for line, ref, flag in sorted(facts.refs, key=elsewhere):  # stable: the node's reads first
        at = parsed(flag)
        seen = wanted.setdefault(ref, {}).setdefault(str(at or plat), [at, line])
        seen[0] = seen[0] or at
    out = {}
    for ref, by_platform in wanted.items():
        for i, (at, line) in enumerate(by_platform.values()):
            out[context_key(ref, at) if i else ref] = (ref, at, line)
    return out


def _realpath(path: str, memo: dict[str, str]) -> str:
    """os.path.realpath with each directory resolved once per analysis (packages share their
    parents: one lstat per new path component instead of one per component per target)."""
    if path in memo:
        return memo[path]
    parent, name = os.path.split(path)
    if not name:
        return path
    base = _realpath(parent, memo)
    joined = os.path.join(base, name)
    resolved = os.path.realpath(joined) if os.path.islink(joined) else joined
    memo[path] = resolved
    return resolved
