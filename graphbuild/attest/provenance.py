"""SLSA v1 provenance, as an in-toto Statement, taken from what the graph knows of a build.

It holds no host path, user name, time or secret value, so two runners that build the same
inputs write the same bytes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from .. import __version__

MEDIA_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
BUILD_TYPE = "https://graphbuild.dev/buildtypes/image/v1"
DEFAULT_BUILDER = "https://graphbuild.dev/builders/local"
# Build args whose names say they hold a secret: their values are left out.
_SECRET_NAME = re.compile(r"(?i)(secret|token|passw|credential|private|api_?key|auth)")


@dataclass
class BuildFacts:
    """What one image node's provenance says (all workspace-relative or content digests)."""

    label: str
    platform: str
    dockerfile: str
    target: str
    backend: str
    backend_version: str
    build_args: dict[str, str] = field(default_factory=dict)
    secret_ids: list[str] = field(default_factory=list)  # names only: values never enter
    inputs: dict[str, str] = field(default_factory=dict)  # path -> "sha256:…" digest
    bases: dict[str, str] = field(default_factory=dict)  # reference -> digest
    git: dict | None = None  # {"commit": sha, "dirty": bool}


def builder_id(environ: dict[str, str] | None = None) -> str:
    """The builder's identity: ``GRAPHBUILD_BUILDER_ID`` (a CI sets it to its workflow's URI)."""
    return (environ if environ is not None else os.environ).get(
        "GRAPHBUILD_BUILDER_ID", DEFAULT_BUILDER)


def _sha256(digest: str) -> dict[str, str]:
    return {"sha256": digest.split(":", 1)[1].split("+", 1)[0]}


def build_provenance(subject_name: str, subject_digest: str, facts: BuildFacts,
                     builder: str) -> bytes:
    args = {k: ("" if _SECRET_NAME.search(k) else v) for k, v in sorted(facts.build_args.items())}
    redacted = sorted(k for k in facts.build_args if _SECRET_NAME.search(k))
    external = {
        "target": facts.label, "platform": facts.platform, "dockerfile": facts.dockerfile,
        "stage": facts.target, "buildArgs": args,
    }
    if redacted:
        external["redactedBuildArgs"] = redacted
    if facts.secret_ids:
        external["secrets"] = sorted(facts.secret_ids)
    deps = []
    if facts.git:
        deps.append({"name": "git", "digest": {"gitCommit": facts.git["commit"]},
                     "annotations": {"dirty": facts.git["dirty"]}})
    deps += [{"name": path, "digest": _sha256(d)} for path, d in sorted(facts.inputs.items())]
    deps += [{"name": ref, "digest": _sha256(d)} if ref.startswith("//") else
             {"uri": f"docker-image://{ref}", "digest": _sha256(d)}
             for ref, d in sorted(facts.bases.items()) if d]
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": _sha256(subject_digest)}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE, "externalParameters": external,
                "internalParameters": {"backend": facts.backend,
                                       "backendVersion": facts.backend_version},
                "resolvedDependencies": deps,
            },
            "runDetails": {"builder": {"id": builder, "version": {"graphbuild": __version__}},
                           "metadata": {}},
        },
    }
    return (json.dumps(statement, sort_keys=True, indent=1) + "\n").encode()
