"""The `image` rule: one Dockerfile, fanned out into one build node per platform.

Its inputs are only what the Dockerfile can reach: the Dockerfile, the .dockerignore, the files
its COPY/ADD instructions match, its build args, platform, base images and backend.
"""

from __future__ import annotations

from typing import ClassVar

from graphbuild import platforms
from graphbuild.rule_api import Action, AnalysisContext, Attr, Provider, Rule, Target

from . import image_inputs, image_run, image_secrets
from .image_inputs import TEMPLATE_KEYS, check_tag


class ImageRule(Rule):
    name = "image"
    version = 1
    mnemonic = "Image"
    doc = "An image built from a Dockerfile, once per platform."
    attrs: ClassVar[dict[str, Attr]] = {
        "dockerfile": Attr("string", "the Dockerfile, relative to the package", default="Dockerfile"),
        "context": Attr("string", "the build context directory, relative to the package",
                        default="."),
        "platforms": Attr("platforms", "platforms to build (default: the workspace's)", default=None),
        "build_args": Attr("string_dict", "build arguments (ARG values)", default={}),
        "target": Attr("string", "the Dockerfile stage to build", default=""),
        "contexts": Attr("contexts", "named contexts: name -> label, docker-image://ref or path",
                         default={}),
        "labels": Attr("string_dict", "image labels", default={}),
        "tags": Attr("string_list", "tags; {os} {arch} {variant} name per-platform images",
                     default=[]),
        "backend": Attr("string", "native, buildx, buildah or auto (default: the workspace's)",
                        default=""),
        "attest": Attr("mapping", "records attached as OCI referrers: {sbom: bool, provenance: "
                       "bool} (default: the workspace's attest, else both)", default=None),
        "secrets": Attr("mapping", "build secrets for RUN --mount=type=secret: id -> {src: "
                        "path} or {env: NAME}; values are not build inputs", default={}),
        "ssh": Attr("string_list", "SSH agent or keys for RUN --mount=type=ssh: default or "
                    "id=path[,path]", default=[]),
    }

    def check(self, target: Target) -> None:
        image_inputs.check_attrs(target)
        image_secrets.check(target)
        _check_attest(target)

    def analyze(self, target: Target, ctx: AnalysisContext) -> Provider:
        plats = ctx.resolve_platforms(target)
        setup = image_inputs.Setup.of(target, ctx, plats)
        provider = Provider(self.name, platforms=plats, data={"image": True})
        templated, plain = _split_tags(target.attrs["tags"])
        attest = _attest(target, ctx)
        for plat in plats:
            spec = setup.node_spec(plat)
            spec.attest = attest
            spec.key_data["attest"] = attest
            action = Action(
                label=target.label, platform=plat, rule=self.name, rule_version=self.version,
                mnemonic=self.mnemonic, progress=f"Building {target.label} for {plat}",
                deps=spec.deps, inputs=spec.inputs, input_globs=spec.input_globs,
                key_data=spec.key_data, tool_version=spec.tool_version,
                run=lambda rc, s=spec: image_run.run(rc, s),
                check_cached=image_run.check_cached,
                tags=[_expand(t, plat, target) for t in templated] + (plain if len(plats) == 1 else []),
                batch=_batch(spec, setup),
            )
            provider.nodes[str(plat)] = ctx.declare(action)
        if len(plats) > 1:  # //x:img names the multi-platform image, as a buildx build does
            provider.data["index"] = ctx.declare(_index_action(target, provider, plain))
        return provider


def _batch(spec, setup) -> str:
    """buildx builds an image's platforms that share a builder in one invocation, as bake does:
    they start together when their bases are built."""
    if spec.backend != "buildx" or not setup.shares_builds():
        return ""
    return f"buildx {spec.label} {spec.builder}"


def _check_attest(target: Target) -> None:
    from graphbuild.attest import settings

    try:
        settings.check(_plain_attest(target), "attest")
    except settings.SettingsError as exc:
        raise target.error(str(exc), attr="attest",
                           hint="e.g. attest: {sbom: true, provenance: false}") from None


def _attest(target: Target, ctx: AnalysisContext) -> dict[str, bool]:
    from graphbuild.attest import settings

    own = _plain_attest(target)
    return settings.check(own, "attest") if own is not None else dict(ctx.ws.attest)


def _plain_attest(target: Target):
    from graphbuild.engine.yamlpos import plain

    value = target.attrs.get("attest")  # a mapping attribute keeps its values Pos-wrapped
    return {k: plain(v) for k, v in value.items()} if isinstance(value, dict) else value


def _split_tags(tags: list[str]) -> tuple[list[str], list[str]]:
    templated = [t for t in tags if any(k in t for k in TEMPLATE_KEYS)]
    return templated, [t for t in tags if t not in templated]


def _expand(tag: str, plat: platforms.Platform, target: Target) -> str:
    out = image_inputs.expand_tag(tag, plat)
    check_tag(target, tag, out)
    return out


def _index_action(target: Target, provider: Provider, tags: list[str]) -> Action:
    """A plain tag on a multi-platform image names an index over its platforms (as bake does)."""
    nodes = list(provider.nodes.values())
    return Action(
        label=target.label, platform=None, rule="image", rule_version=2, mnemonic="Index",
        progress=f"Indexing {target.label}", deps=nodes, key_data={"media_type": "oci"},
        run=lambda rc, n=nodes: image_run.run_index(rc, n), check_cached=image_run.check_cached,
        tags=tags,
    )

