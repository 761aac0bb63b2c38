"""The `platform` rule: a named target platform."""

from __future__ import annotations

from typing import ClassVar

from graphbuild import platforms
from graphbuild.rule_api import AnalysisContext, Attr, Provider, Rule, Target


class PlatformRule(Rule):
    name = "platform"
    doc = "A target platform, usable wherever a platform string is."
    attrs: ClassVar[dict[str, Attr]] = {
        "os": Attr("string", "operating system, a Go GOOS value (linux, windows)", required=True),
        "arch": Attr("string", "architecture, a Go GOARCH value (amd64, arm64, arm)", required=True),
        "variant": Attr("string", "CPU variant (v7 for arm, v8 for arm64)", default=""),
        "os_version": Attr("string", "OS version (Windows images)", default=""),
        "os_features": Attr("string_list", "required OS features", default=[]),
        "builder": Attr("string", "buildx builder instance for this platform", default=""),
    }

    def check(self, target: Target) -> None:
        a = target.attrs
        try:
            platforms.check(a["os"], a["arch"], a["variant"])
        except platforms.PlatformError as exc:
            attr = "variant" if "variant" in str(exc) else "arch" if "architecture" in str(exc) else "os"
            raise target.error(str(exc), attr, exc.hint) from None

    def analyze(self, target: Target, ctx: AnalysisContext) -> Provider:
        a = target.attrs
        plat = platforms.parse("/".join(p for p in (a["os"], a["arch"], a["variant"]) if p))
        plat = platforms.Platform(plat.os, plat.arch, plat.variant, a["os_version"],
                                  tuple(a["os_features"]))
        return Provider(self.name, platform=plat, data={"builder": a["builder"]})
