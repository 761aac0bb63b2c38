"""Image backends by name. Each builds one image for one platform into the store."""

from __future__ import annotations

import importlib

MODULES = {"native": "native", "buildx": "buildx", "buildah": "buildah"}
NEEDS_MORE = {"RUN": "runs commands inside the image", "ADD <url>": "downloads at build time"}
EXTERNAL = ("buildx", "buildah")  # auto's order when the Dockerfile needs more than native


def names() -> list[str]:
    return [*MODULES, "auto"]


def get(name: str):
    """The backend module (with ``version()`` and ``build(req, store, scratch, cancelled)``)."""
    return importlib.import_module(f".{MODULES[name]}", __name__)


_VERSIONS: dict[str, str] = {}


def version(name: str) -> str:
    """A backend's version string (part of every image's action key), asked once per process."""
    if name not in _VERSIONS:
        _VERSIONS[name] = get(name).version()
    return _VERSIONS[name]


def missing(name: str) -> str | None:
    """Why a backend's external tool cannot run on this machine, or None when it can."""
    if name == "native":
        return None
    return get(name).missing()


def installed(name: str) -> bool:
    """Whether a backend's external tool is on this machine (for buildx: ``docker buildx
    version`` works, not merely a ``docker`` executable)."""
    return missing(name) is None


def auto(builders: list[str]) -> tuple[str | None, str]:
    """The backend ``auto`` takes for a Dockerfile that needs more than native, and why: buildx
    when it has a working builder for each of ``builders`` (the builder, pool ``a,b`` or ""
    for the current builder, of each platform), else buildah when installed. Neither: (None,
    both reasons)."""
    why = missing("buildx")
    if why is None:
        reached = []
        for wanted in builders:
            probe = get("buildx").probe(wanted)
            if not probe.ok:
                why = f"buildx has no working builder: {probe.text}"
                break
            reached.append(probe.text)
        else:
            return "buildx", "; ".join(dict.fromkeys(reached))
    other = missing("buildah")
    if other is None:
        return "buildah", why
    return None, f"{why}; {other}"


def request_options(ws, spec) -> dict:
    """The BuildRequest fields that come from the workspace rather than the Dockerfile: the
    buildx builder chosen at analysis, WORKSPACE.yaml's section for the backend, and the
    directory it keeps state in (buildah's storage)."""
    backend = spec.backend
    if backend not in EXTERNAL:
        return {}
    return {"builder": getattr(spec, "builder", ""), "settings": dict(getattr(ws, backend) or {}),
            "state_dir": ws.cache_dir / backend}
