"""Analysis: every target's rule declares its actions; the result is the action graph.

Nodes are NodeIds carrying their Action; edges point from a dependency to its dependent.
"""

from __future__ import annotations

from ..errors import UserError
from ..labels import Label
from ..platforms import Platform
from ..rule_api import Action, AnalysisContext, NodeId, Provider, Target
from ..workspace import Workspace
from . import globs, rule_registry
from .target_graph import TargetGraph


class Analysis(AnalysisContext):
    def __init__(self, ws: Workspace, tgraph: TargetGraph,
                 platform_filter: list[Platform] | None = None) -> None:
        from .digraph import DiGraph

        self.ws = ws
        self.tgraph = tgraph
        self.platform_filter = platform_filter
        self.providers: dict[Label, Provider] = {}
        self.actions: dict[NodeId, Action] = {}
        self.graph = DiGraph()
        self.target_of: dict[NodeId, Target] = {}
        self.notes: list[str] = []
        self.explanations: dict[str, list[str]] = {}  # label -> what --explain says of it
        self._current: Target | None = None
        self._memos: dict[str, dict] = {}
        for target in tgraph.build_order():
            self._current = target
            self.providers[target.label] = rule_registry.get(target.rule).analyze(target, self)
        self._current = None

    # -- AnalysisContext -----------------------------------------------------------------------
    def provider(self, label: Label) -> Provider:
        return self.providers[label]

    def note(self, target: Target, text: str) -> None:
        self.notes.append(f"{target.build_file}:{target.line}: {target.label}: {text}")

    def explain(self, target: Target, text: str) -> None:
        self.explanations.setdefault(str(target.label), []).append(text)

    def target(self, label: Label) -> Target:
        return self.tgraph.targets[label]

    def resolve_platforms(self, target: Target, attr: str = "platforms", *,
                          limit: bool = True) -> list[Platform]:
        """The target's platforms (labels resolved; workspace default), limited by --platform
        unless ``limit`` is False."""
        written = target.attrs.get(attr) or []
        plats: list[Platform] = []
        for item in written:
            if isinstance(item, Label):
                prov = self.providers[item]
                if prov.platform is None:
                    raise target.error(f"{item} in '{attr}' is a {prov.rule}, not a platform",
                                       attr, "name platform targets or strings like linux/arm64")
                item = prov.platform
            if any(p.same_as(item) for p in plats):
                raise target.error(f"platform {item} is listed twice in '{attr}'", attr,
                                   "list each platform once (linux/arm64 and linux/arm64/v8 "
                                   "are the same)")
            plats.append(item)
        if not written:
            plats = list(self.ws.platforms_default())
        if self.platform_filter is not None and limit:
            kept = [p for p in plats if any(p.same_as(f) for f in self.platform_filter)]
            if plats and not kept and attr == "platforms":
                self.note(target, "builds none of the --platform platforms (it builds "
                          f"{', '.join(map(str, plats))}): nothing to do for it")
            plats = kept
        return plats

    def declare(self, action: Action) -> NodeId:
        node = action.node
        if node in self.actions:
            raise UserError(f"two actions declared for {node}")
        action.build_file = action.build_file or (self._current.build_file if self._current else "")
        action.line = action.line or (self._current.line if self._current else 0)
        self.actions[node] = action
        self.graph.add_node(node)
        if self._current is not None:
            self.target_of[node] = self._current
        for dep in action.deps:
            self.graph.add_edge(dep, node)
        return node

    def glob(self, package: str, patterns: list[str], *, allow_empty: bool = True,
             attr: str = "srcs") -> list[str]:
        """Workspace-relative files under ``package`` matched by ``patterns`` (with ``**``),
        and the workspace files that symlinks among them lead to. Unless ``allow_empty``, a
        pattern matching nothing is exit 2 (Bazel's ``allow_empty = False``)."""
        for pat in patterns:
            if pat.startswith("/") or ".." in pat.split("/"):
                raise self._current.error(f"glob '{pat}' leaves the package", attr,
                                          "globs are relative to the package directory; a file "
                                          "of another directory is a filegroup there, in deps")
        root = f"{self.ws.root}/{package}" if package else str(self.ws.root)

        def compute(walked: list[str]) -> tuple[list[str], list[str], list[str]]:
            unmatched: list[str] = []
            found = globs.match_files(root, patterns, walked, unmatched)
            return found, unmatched, globs.link_targets(str(self.ws.root), root, found)

        found, unmatched, targets = self.remembered(("glob", 2, root, tuple(patterns)), compute)
        if unmatched and not allow_empty:
            where = f"in {package}/" if package else "at the workspace root"
            raise self._current.error(
                f"'{attr}' pattern '{unmatched[0]}' matches no files", attr,
                f"patterns are relative to the package directory (files {where}); fix or remove "
                "it. A file of another directory is declared by a filegroup target there and "
                "listed in deps")
        out = [f"{package}/{m}" if package else m for m in found]
        seen = set(out)
        return out + [t for t in dict.fromkeys(targets) if t not in seen]

    def remembered(self, key, compute):
        """``compute(walked)``, or its earlier answer while every directory it listed and file
        it read (it appends them to ``walked``) is unchanged: walks and Dockerfile reads cost
        a no-op build most."""
        trees = self.tgraph.loader.trees
        hit = trees.get(key)
        if hit is not None:
            return hit
        walked: list[str] = []
        result = compute(walked)
        trees.put(key, walked, result)
        return result

    def run_memo(self, name: str) -> dict:
        return self._memos.setdefault(name, {})

    # -- helpers for rules and the engine ------------------------------------------------------
    def nodes_of(self, label: Label) -> list[NodeId]:
        """All nodes a label stands for, groups flattened."""
        prov = self.providers[label]
        out = list(prov.nodes.values())
        for member in prov.members:
            out.extend(self.nodes_of(member))
        return out

    def nodes_for(self, labels: list[Label], platform: Platform | None = None) -> list[NodeId]:
        """The nodes ``labels`` stand for; a fanned-out label gives only ``platform``'s node when
        it builds that platform (dependencies line up per platform)."""
        seen: dict[NodeId, None] = {}
        for lab in labels:
            prov = self.providers[lab]
            if platform is not None and str(platform) in prov.nodes:
                seen[prov.nodes[str(platform)]] = None
            else:
                seen.update(dict.fromkeys(prov.nodes.values()))
            seen.update(dict.fromkeys(self.nodes_for(prov.members, platform)))
        return list(seen)
