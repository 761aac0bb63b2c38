"""The interface between the engine and rules.

A rule declares documented attributes and, in ``analyze``, declares actions and returns a Provider
(what its dependents need). It never runs, caches or reports anything: the engine does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import UserError
from .labels import Label
from .platforms import Platform

if TYPE_CHECKING:
    from .workspace import Workspace

NodeId = str  # "//pkg:name" or "//pkg:name[linux/arm64]"


def node_id(label: Label | str, platform: Platform | str | None) -> NodeId:
    return f"{label}[{platform}]" if platform is not None else str(label)


@dataclass(frozen=True)
class Attr:
    """A rule attribute. Kinds: string, bool, int, string_list, string_dict, label, label_list,
    platforms (platform strings or labels of platform targets), image_list (labels, each with an
    optional ``[os/arch]``), contexts (name -> label, image ref or path), mapping (free-form, checked
    by the rule)."""

    kind: str
    doc: str
    required: bool = False
    default: Any = None


@dataclass
class Target:
    """One entry of a BUILD.yaml, attributes converted and checked, with their lines."""

    label: Label
    rule: str
    attrs: dict[str, Any]
    attr_lines: dict[str, int]
    line: int
    build_file: str  # workspace-relative path of its BUILD.yaml

    @property
    def package(self) -> str:
        return self.label.package

    def line_of(self, attr: str | None) -> int:
        return self.attr_lines.get(attr, self.line) if attr else self.line

    def error(self, message: str, attr: str | None = None, hint: str | None = None,
              line: int | None = None) -> UserError:
        """A user error located at this target (or one of its attributes)."""
        return UserError(message, path=self.build_file, line=line or self.line_of(attr),
                         label=str(self.label), hint=hint)


@dataclass
class Outcome:
    """What an action produced: the digest dependents key on, and JSON-able data for them."""

    digest: str | None
    data: dict = field(default_factory=dict)


@dataclass
class Action:
    """One node of the action graph: everything that determines its output, and how to run it."""

    label: Label
    platform: Platform | None
    rule: str
    rule_version: int
    mnemonic: str
    progress: str
    run: Callable[[RunContext], Outcome]
    deps: list[NodeId] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # workspace-relative files, hashed
    input_globs: list[str] = field(default_factory=list)  # for `affected`: deleted files count too
    key_data: dict = field(default_factory=dict)  # attributes that determine the output
    tool_version: str = ""
    # Called on a cache hit: True when the recorded outputs are still usable (restoring them if
    # needed); False makes the action run again.
    check_cached: Callable[[RunContext, Outcome], bool] | None = None
    build_file: str = ""
    line: int = 0
    tags: list[str] = field(default_factory=list)  # names for the output in the store (not keyed)
    cacheable: bool = True  # False: always runs (its effect lies outside, e.g. a registry)
    suffix: str = ""  # tells apart a second node of the same label and platform (" push")
    io_bound: bool = False  # waits on the network, not a CPU: runs outside -j (see build.py)
    # Actions with the same batch, runnable at once, start together and take one -j slot; their
    # runs may share work through RunContext.batch (graphbuild.engine.batch)
    batch: str = ""

    @property
    def node(self) -> NodeId:
        return node_id(self.label, self.platform) + self.suffix


@dataclass
class Provider:
    """What a target gives its dependents."""

    rule: str
    nodes: dict[str | None, NodeId] = field(default_factory=dict)  # platform text -> node
    platforms: list[Platform] = field(default_factory=list)
    platform: Platform | None = None  # for `platform` targets
    members: list[Label] = field(default_factory=list)  # for groups
    data: dict = field(default_factory=dict)


class AnalysisContext:
    """What a rule may consult while declaring actions (implemented by the engine)."""

    ws: Workspace
    # `run --platform`: the only platforms this run builds (None: all); a rule's hint may name it
    platform_filter: list[Platform] | None = None

    def provider(self, label: Label) -> Provider:  # pragma: no cover - interface
        raise NotImplementedError

    def resolve_platforms(self, target: Target, attr: str = "platforms", *,
                          limit: bool = True) -> list[Platform]:
        """The target's platforms; ``limit``: only those --platform asks for."""
        raise NotImplementedError  # pragma: no cover - interface

    def declare(self, action: Action) -> NodeId:
        raise NotImplementedError  # pragma: no cover - interface

    def glob(self, package: str, patterns: list[str], *, allow_empty: bool = True,
             attr: str = "srcs") -> list[str]:
        raise NotImplementedError  # pragma: no cover - interface

    def nodes_of(self, label: Label) -> list[NodeId]:
        """All nodes a label stands for, groups flattened."""
        raise NotImplementedError  # pragma: no cover - interface

    def nodes_for(self, labels: list[Label], platform: Platform | None = None) -> list[NodeId]:
        """Nodes of ``labels`` (groups flattened); per platform where the label fans out."""
        raise NotImplementedError  # pragma: no cover - interface

    def target(self, label: Label) -> Target:
        raise NotImplementedError  # pragma: no cover - interface

    def note(self, target: Target, text: str) -> None:
        """Something the user should know about the plan (printed before the build)."""
        raise NotImplementedError  # pragma: no cover - interface

    def explain(self, target: Target, text: str) -> None:
        """A choice analysis made for the target, and why (which backend ``auto`` took): shown
        by ``--explain`` once per target, and in the events."""
        raise NotImplementedError  # pragma: no cover - interface

    def remembered(self, key, compute: Callable[[list[str]], Any]):
        """``compute(walked)`` -- which appends each directory it lists and file it reads to
        ``walked`` -- or its answer from an earlier run while those paths keep their stat
        stamps. The answer must be picklable and depend only on the key and those paths."""
        raise NotImplementedError  # pragma: no cover - interface

    def run_memo(self, name: str) -> dict:  # pragma: no cover - interface
        """A dict under ``name`` shared by every rule of this analysis and gone with it: for
        what holds during one run but may not in the next (say, where a symlink points)."""
        raise NotImplementedError


class RunContext:
    """What a running action may use (implemented by the engine)."""

    ws: Workspace
    action: Action
    deps: dict[NodeId, Outcome]
    cancelled: threading.Event
    batch = None  # the graphbuild.engine.batch.Batch this action started in, if any

    def out_dir(self, node: NodeId) -> Path:  # pragma: no cover - interface
        """Where a node's directory output lives (stable, under the cache dir)."""
        raise NotImplementedError

    def scratch_dir(self) -> Path:  # pragma: no cover - interface
        """A fresh directory for this action, removed afterwards."""
        raise NotImplementedError

    @property
    def cas(self):  # pragma: no cover - interface
        raise NotImplementedError

    def publish_dir(self, src: Path, node: NodeId, digest: str) -> None:  # pragma: no cover
        """Move a finished directory output into place for ``node``."""
        raise NotImplementedError

    def ensure_dir(self, node: NodeId, digest: str) -> bool:  # pragma: no cover - interface
        """Make sure ``node``'s directory output holds tree ``digest``, restoring it if needed."""
        raise NotImplementedError

    @property
    def store(self):  # pragma: no cover - interface
        raise NotImplementedError

    def run_process(self, argv: list[str], *, cwd: Path, env: dict[str, str] | None = None,
                    stdin: bytes | None = None) -> tuple[int, str]:
        raise NotImplementedError  # pragma: no cover - interface

    def log(self, text: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def note(self, text: str) -> None:  # pragma: no cover - interface
        """A remark shown with the node's result (e.g. why a cache hit could not be used)."""
        raise NotImplementedError

    def input_digests(self) -> dict[str, str]:  # pragma: no cover - interface
        """Each of the action's input files (workspace-relative) -> its digest, as keyed."""
        raise NotImplementedError


class Rule:
    """Base of every rule. Subclasses set ``name``, ``doc``, ``mnemonic``, ``attrs``."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    doc: ClassVar[str] = ""
    mnemonic: ClassVar[str] = ""
    attrs: ClassVar[dict[str, Attr]] = {}

    def all_attrs(self) -> dict[str, Attr]:
        return {**self.attrs, "deps": Attr("label_list", "labels that must be built first", default=[])}

    def check(self, target: Target) -> None:
        """Cross-attribute checks, run at load time."""

    def dep_labels(self, target: Target) -> list[tuple[Label, str]]:
        """Every (label, attribute) this target depends on; default: its label-typed attributes."""
        out: list[tuple[Label, str]] = []
        for name, attr in self.all_attrs().items():
            value = target.attrs.get(name)
            if value is None:
                continue
            if attr.kind == "label":
                out.append((value, name))
            elif attr.kind in ("label_list", "image_list"):
                out.extend((v[0] if isinstance(v, tuple) else v, name) for v in value)
            elif attr.kind == "platforms":
                out.extend((v, name) for v in value if isinstance(v, Label))
            elif attr.kind == "contexts":
                out.extend((v, name) for v in value.values() if isinstance(v, Label))
        return out

    def analyze(self, target: Target, ctx: AnalysisContext) -> Provider:
        raise NotImplementedError  # pragma: no cover - interface
