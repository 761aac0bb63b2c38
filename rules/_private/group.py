"""The `group` rule: a named set of targets."""

from __future__ import annotations

from typing import ClassVar

from graphbuild.rule_api import AnalysisContext, Attr, Provider, Rule, Target


class GroupRule(Rule):
    name = "group"
    doc = "A named set of targets; building it builds them all."
    attrs: ClassVar[dict[str, Attr]] = {"targets": Attr("label_list", "the targets in the group", required=True)}

    def analyze(self, target: Target, ctx: AnalysisContext) -> Provider:
        return Provider(self.name, members=list(target.attrs["targets"]) + list(target.attrs["deps"]))
