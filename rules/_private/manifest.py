"""The `manifest` rule: an OCI image index (or Docker manifest list) over per-platform images,
assembled once every one of them has built — `docker manifest create/annotate`, declared."""

from __future__ import annotations

from typing import ClassVar

from graphbuild import platforms
from graphbuild.engine.yamlpos import Pos, plain
from graphbuild.errors import did_you_mean
from graphbuild.rule_api import (
    Action,
    AnalysisContext,
    Attr,
    NodeId,
    Outcome,
    Provider,
    Rule,
    RunContext,
    Target,
)

from .image_inputs import check_tag
from .image_run import check_cached

OVERRIDE_KEYS = {"os", "arch", "variant", "os_version", "os_features", "annotations", "force"}
MEDIA_TYPES = ("oci", "docker")


class ManifestRule(Rule):
    name = "manifest"
    version = 2  # 2: outcomes carry the images' records
    mnemonic = "Manifest"
    doc = "An image index over the per-platform images of `images`."
    attrs: ClassVar[dict[str, Attr]] = {
        "images": Attr("image_list", "image targets; an entry may pick one platform: "
                       "//x:img[linux/arm64]", required=True),
        "tags": Attr("string_list", "tags naming the index", default=[]),
        "annotations": Attr("string_dict", "index-level annotations", default={}),
        "platform_annotations": Attr("mapping", "per entry of `images` (as written): os, arch, "
                                     "variant, os_version, os_features, annotations, force",
                                     default={}),
        "require_platforms": Attr("platforms", "platforms the index must contain", default=[]),
        "media_type": Attr("string", "oci (default) or docker (manifest list v2)", default="oci"),
    }

    def check(self, target: Target) -> None:
        a = target.attrs
        if a["media_type"] not in MEDIA_TYPES:
            raise target.error(f"media_type must be oci or docker, not {a['media_type']!r}",
                               "media_type", did_you_mean(str(a["media_type"]), MEDIA_TYPES)
                               or "oci for an OCI image index, docker for a manifest list v2")
        if a["media_type"] == "docker" and a["annotations"]:
            raise target.error("a Docker manifest list cannot carry annotations", "annotations",
                               "use media_type: oci, or drop 'annotations'")
        for tag in a["tags"]:
            check_tag(target, tag)
        written = [w for _, _, w in a["images"]]
        for key, pos in a["platform_annotations"].items():
            if key not in written:
                raise target.error(f"platform_annotations key '{key}' is not an entry of 'images'",
                                   "platform_annotations", did_you_mean(key, written)
                                   or "keys must match an entry of images exactly as written",
                                   line=pos.line)
            _check_override(target, key, pos)

    def analyze(self, target: Target, ctx: AnalysisContext) -> Provider:
        entries = _entries(target, ctx)
        provider = Provider(self.name, data={"manifest": True})
        if entries is None:  # --platform dropped some of its platforms: never publish a partial index
            ctx.note(target, "left out of this build: --platform keeps only some of its "
                     "platforms, and a partial index is never made")
            return provider
        _check_platforms(target, entries, ctx)
        nodes = [node for _, node, _ in entries]
        overrides = {w: plain(p) for w, p in target.attrs["platform_annotations"].items()}
        action = Action(
            label=target.label, platform=None, rule=self.name, rule_version=self.version,
            mnemonic=self.mnemonic, progress=f"Assembling {target.label}",
            deps=nodes + [n for n in ctx.nodes_for(target.attrs["deps"]) if n not in nodes],
            key_data={"entries": [[w, n] for w, n, _ in entries], "overrides": overrides,
                      "annotations": target.attrs["annotations"],
                      "media_type": target.attrs["media_type"]},
            run=lambda rc, e=entries, o=overrides, t=target: _run(rc, t, e, o),
            check_cached=check_cached, tags=list(target.attrs["tags"]),
        )
        provider.nodes[None] = ctx.declare(action)
        return provider


def _check_override(target: Target, key: str, pos: Pos) -> None:
    if not isinstance(pos.value, dict):
        raise target.error(f"platform_annotations['{key}'] must be a mapping",
                           "platform_annotations", f"e.g. \"{key}\": {{arch: arm64, variant: v8}}",
                           line=pos.line)
    for field, val in pos.value.items():
        if field not in OVERRIDE_KEYS:
            raise target.error(f"unknown field '{field}' in platform_annotations['{key}']",
                               "platform_annotations", did_you_mean(field, OVERRIDE_KEYS)
                               or f"fields: {', '.join(sorted(OVERRIDE_KEYS))}", line=val.line)
        problem = _override_type_problem(field, plain(val))
        if problem:
            raise target.error(f"platform_annotations['{key}'].{field} must be {problem}",
                               "platform_annotations", f"e.g. {OVERRIDE_EXAMPLES[field]}",
                               line=val.line)
    ov = plain(pos)
    # What the override names can be checked now; a variant alone is checked once the entry's
    # own platform is known (_check_platforms), as `docker manifest annotate --variant` allows.
    if "arch" in ov or "os" in ov:
        variant = ov.get("variant", "") if "arch" in ov else ""
        _check_platform(target, pos, str(ov.get("os", "linux")), str(ov.get("arch", "amd64")),
                        str(variant))


def _check_platform(target: Target, pos: Pos, os_: str, arch: str, variant: str) -> None:
    try:
        platforms.check(os_, arch, variant)
    except platforms.PlatformError as exc:
        raise target.error(str(exc), "platform_annotations", exc.hint, line=pos.line) from None


OVERRIDE_EXAMPLES = {
    "os": "os: linux", "arch": "arch: arm64", "variant": "variant: v7",
    "os_version": "os_version: 10.0.17763.1879", "os_features": "os_features: [win32k]",
    "annotations": "annotations: {org.example.note: text}", "force": "force: true",
}


def _override_type_problem(field: str, value) -> str | None:
    """What a platform_annotations field must be, if ``value`` is not that; else None."""
    if field == "force":
        return None if isinstance(value, bool) else "true or false"
    if field == "os_features":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "a list of strings"
    if field == "annotations":
        ok = isinstance(value, dict) and all(
            isinstance(v, (str, int, float, bool)) for v in value.values())
        return None if ok else "a mapping of names to text"
    return None if isinstance(value, str) else "a string"


def _entries(target: Target, ctx: AnalysisContext) -> list[tuple[str, NodeId, object]] | None:
    """(as written, node, platform) per per-platform image; None if --platform cut some off."""
    out = []
    for label, plat, written in target.attrs["images"]:
        prov = ctx.provider(label)
        if not prov.data.get("image") and prov.rule != "pull":
            raise target.error(f"{label} is a {prov.rule}, not an image", "images",
                               "images lists image or pull targets")
        declared = ctx.target(label).attrs.get("platforms")
        if plat is not None:
            node = prov.nodes.get(str(plat))
            if node is None:
                if _declares(ctx, label, plat, declared):
                    return None
                raise target.error(f"{written}: {label} does not build {plat}", "images",
                                   f"it builds: {', '.join(map(str, prov.platforms)) or 'nothing'}")
            out.append((written, node, plat))
            continue
        if len(prov.nodes) < len(_all_platforms(ctx, label, declared)):
            return None
        out.extend((written if len(prov.nodes) == 1 else f"{written}[{p}]", prov.nodes[str(p)], p)
                   for p in prov.platforms)
    return out


def _all_platforms(ctx, label, declared) -> list:
    """The platforms a target builds without any --platform filter."""
    if not declared:
        return list(ctx.ws.platforms_default())
    return declared


def _declares(ctx, label, plat, declared) -> bool:
    plats = [p if isinstance(p, platforms.Platform) else ctx.provider(p).platform
             for p in _all_platforms(ctx, label, declared)]
    return any(p.same_as(plat) for p in plats)


def _check_platforms(target: Target, entries, ctx) -> None:
    """Duplicate platforms and require_platforms, known before anything runs."""
    positions = target.attrs["platform_annotations"]
    seen: dict[str, str] = {}
    for written, _, plat in entries:
        pos = positions.get(written.split("[")[0], positions.get(written))
        ov = plain(pos) if pos is not None else {}
        final = platforms.Platform(ov.get("os", plat.os), ov.get("arch", plat.arch),
                                   ov.get("variant", plat.variant))
        if "variant" in ov:
            _check_platform(target, pos, final.os, final.arch, final.variant)
        if not ov.get("force") and (final.os, final.arch) != (plat.os, plat.arch):
            raise target.error(f"platform_annotations for {written} set {final} but the image is "
                               f"built for {plat}", "platform_annotations",
                               "set force: true to publish a platform that differs from the "
                               "image config on purpose")
        key = str(platforms.Platform(final.os, final.arch,
                                     "" if final.variant == platforms.DEFAULT_VARIANT.get(final.arch)
                                     else final.variant))
        if key in seen:
            raise target.error(f"{written} and {seen[key]} both provide platform {key}", "images",
                               "an index holds one image per platform")
        seen[key] = written
    for req in ctx.resolve_platforms(target, "require_platforms") if target.attrs[
            "require_platforms"] else []:
        if str(req) not in seen:
            raise target.error(f"required platform {req} is missing from the index",
                               "require_platforms", f"the index has: {', '.join(sorted(seen))}")


def _run(rc: RunContext, target: Target, entries, overrides: dict) -> Outcome:
    from graphbuild.oci.index import IndexEntry, build_index

    items = []
    for written, node, _ in entries:
        ov = dict(overrides.get(written, overrides.get(written.split("[")[0], {})))
        annotations = ov.pop("annotations", {}) or {}
        force = bool(ov.pop("force", False))
        items.append(IndexEntry(rc.deps[node].data["descriptor"], written, ov, force,
                                {k: str(v) for k, v in annotations.items()}))
    desc = build_index(rc.store, items, media_type=target.attrs["media_type"],
                       annotations=target.attrs["annotations"])
    children = rc.store.read_json(desc["digest"])["manifests"]
    forced = [m["digest"] for m, item in zip(children, items) if item.force]
    from .image_run import children_records

    records = children_records(rc, [node for _, node, _ in entries])
    return Outcome(desc["digest"], {"descriptor": desc, "forced": forced, **records})

