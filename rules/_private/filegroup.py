"""The `filegroup` rule: files of its package, named by a label, as inputs of other targets."""

from __future__ import annotations

from typing import ClassVar

from graphbuild.rule_api import AnalysisContext, Attr, Provider, Rule, Target


class FilegroupRule(Rule):
    name = "filegroup"
    doc = ("Files of this package (globs, each matching at least one file) that other targets "
           "use: a command with this label in `deps` hashes them as its inputs, so editing one "
           "reruns the command. A filegroup builds nothing itself.")
    attrs: ClassVar[dict[str, Attr]] = {
        "srcs": Attr("string_list", "globs relative to the package (** allowed)", required=True),
    }

    def analyze(self, target: Target, ctx: AnalysisContext) -> Provider:
        files = ctx.glob(target.package, target.attrs["srcs"], allow_empty=False)
        patterns = [f"{target.package}/{g}".lstrip("/") for g in target.attrs["srcs"]]
        for lab in target.attrs["deps"]:  # a filegroup of filegroups
            data = ctx.provider(lab).data
            files += [f for f in data.get("files", ()) if f not in files]
            patterns += data.get("globs", [])
        return Provider(self.name, data={"files": files, "globs": patterns})
