"""The `pull` rule: an external base image pinned by digest, fetched once per platform into the
store with every digest verified (a second build downloads nothing)."""

from __future__ import annotations

from typing import ClassVar

from graphbuild.rule_api import (
    Action,
    AnalysisContext,
    Attr,
    Outcome,
    Provider,
    Rule,
    RunContext,
    Target,
)

from .image_run import check_cached


class PullRule(Rule):
    name = "pull"
    version = 1
    mnemonic = "Pull"
    doc = "An external image, pinned by @sha256: digest, fetched per platform into the store."
    attrs: ClassVar[dict[str, Attr]] = {
        "image": Attr("string", "a reference pinned by digest: host/repo[:tag]@sha256:...",
                      required=True),
        "platforms": Attr("platforms", "platforms to fetch (default: the workspace's)",
                          default=None),
    }

    def check(self, target: Target) -> None:
        from graphbuild.registry.reference import ReferenceError, parse_reference

        text = target.attrs["image"]
        try:
            ref = parse_reference(text)
        except ReferenceError as exc:
            raise target.error(str(exc), "image", "write host/repo@sha256:<64 hex digits>") from None
        if not ref.digest:
            raise target.error(f"'{text}' is not pinned by digest", "image",
                               f"pin it: {text}@sha256:... (`graphbuild inspect {text}` shows "
                               "the digest); unpinned base images make builds unrepeatable")

    def analyze(self, target: Target, ctx: AnalysisContext) -> Provider:
        plats = ctx.resolve_platforms(target)
        provider = Provider(self.name, platforms=plats, data={"image": True})
        ref = target.attrs["image"]
        for plat in plats:
            action = Action(
                label=target.label, platform=plat, rule=self.name, rule_version=self.version,
                mnemonic=self.mnemonic, progress=f"Pulling {ref} for {plat}",
                deps=ctx.nodes_for(target.attrs["deps"], plat),
                key_data={"image": ref}, run=lambda rc, p=plat: _run(rc, ref, p),
                check_cached=check_cached,
            )
            provider.nodes[str(plat)] = ctx.declare(action)
        return provider


def _run(rc: RunContext, ref: str, plat) -> Outcome:
    from graphbuild.engine.remote import Remote

    desc = Remote.of(rc.ws).pull(ref, plat, rc.store)
    return Outcome(desc["digest"], {"descriptor": desc, "source": ref})
