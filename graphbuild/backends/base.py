"""What a backend is: something that builds one image for one platform into the store.

The engine owns everything else (graph, cache, store, manifest lists, registry traffic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..platforms import Platform


@dataclass
class NamedContext:
    """A buildx-style named context: a directory, or an image already in the store."""

    name: str
    kind: str  # "dir" | "image"
    path: Path | None = None  # for dir
    descriptor: dict | None = None  # for image: the manifest descriptor in the store


@dataclass
class Secret:
    """A build secret: where its value comes from (``src`` a file, ``env`` a variable)."""

    id: str
    kind: str  # "src" | "env"
    source: str
    where: str = ""  # "path/BUILD.yaml:LINE: //label", for messages


@dataclass
class SshAgent:
    """An SSH agent socket or keys forwarded to ``RUN --mount=type=ssh``; no paths: $SSH_AUTH_SOCK."""

    id: str
    paths: list[str] = field(default_factory=list)


@dataclass
class BuildRequest:
    label: str
    node: str
    platform: Platform
    context_dir: Path
    dockerfile: Path
    dockerfile_rel: str  # workspace-relative, for messages
    plan: Any  # graphbuild.backends.plan.DockerfilePlan for this platform
    build_args: dict[str, str]
    target: str | None
    labels: dict[str, str]
    contexts: dict[str, NamedContext] = field(default_factory=dict)
    source_date_epoch: int = 0
    # For backends that drive an external tool (buildx, buildah):
    builder: str = ""  # buildx builder instance for this platform; "" = the default builder
    settings: dict = field(default_factory=dict)  # WORKSPACE.yaml's section for this backend
    state_dir: Path | None = None  # state kept across builds (buildah storage): <cache_dir>/<name>
    secrets: list[Secret] = field(default_factory=list)
    ssh: list[SshAgent] = field(default_factory=list)
    # context-relative paths that are never part of the context (the cache directory)
    exclude: tuple[str, ...] = ()
    # the platforms of one image started together (graphbuild.engine.batch.Batch): a backend
    # that can build them in one go offers its request there; others ignore it
    batch: Any = None


@dataclass
class BuildResult:
    descriptor: dict  # the image manifest descriptor, already in the store
    notes: list[str] = field(default_factory=list)
