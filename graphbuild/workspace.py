"""The workspace: its root (nearest WORKSPACE.yaml upward) and its settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import platforms
from .engine import yamlpos
from .errors import UserError, did_you_mean
from .values import BUILTIN, NAME_RE, PLATFORM_KEYS, Values

WORKSPACE_FILE = "WORKSPACE.yaml"
BUILD_FILE = "BUILD.yaml"
KEYS = {
    "default_platforms": "list of platforms built when a target names none",
    "backend": "default image backend: native, buildx, buildah or auto",
    "jobs": "worker count (default: the CPU count)",
    "cache_dir": "cache and store directory (default .graphbuild under the root)",
    "remote_cache": "oci://host/repo",
    "registries": "per-host settings: insecure, mirror",
    "builders": "platform -> buildx builder name",
    "buildx": "buildx settings: cache_from, cache_to",
    "buildah": "buildah settings: storage_driver, isolation",
    "attest": "records attached to images: {sbom: bool, provenance: bool}",
    "signing": "{command: '... {ref} ... {digest} ...'}, run per pushed digest before tags move",
    "vars": "values used as {NAME} in tags, build_args, labels, annotations: NAME -> default",
}
BACKENDS = ("native", "buildx", "buildah", "auto")


@dataclass
class Workspace:
    root: Path
    default_platforms: list[platforms.Platform] = field(default_factory=list)
    backend: str = "native"
    jobs: int | None = None
    cache_dir: Path | None = None
    remote_cache: str | None = None
    registries: dict = field(default_factory=dict)
    builders: dict = field(default_factory=dict)
    buildx: dict = field(default_factory=dict)
    buildah: dict = field(default_factory=dict)
    attest: dict = field(default_factory=lambda: {"sbom": True, "provenance": True})
    signing: dict = field(default_factory=dict)
    var_defaults: dict[str, str] = field(default_factory=dict)  # `vars:`
    values: Values | None = None  # with --set and the environment applied (see load)

    def __post_init__(self) -> None:
        if self.cache_dir is None:
            self.cache_dir = self.root / ".graphbuild"

    @property
    def file(self) -> str:
        return WORKSPACE_FILE

    def platforms_default(self) -> list[platforms.Platform]:
        return self.default_platforms or [platforms.host()]

    def insecure(self, host: str) -> bool:
        """Plain HTTP for loopback hosts and hosts marked insecure."""
        from .registry.hosts import is_loopback

        if is_loopback(host):
            return True
        return bool(self.registries.get(host, {}).get("insecure"))

    def rel(self, path: Path) -> str:
        """A path relative to the root, POSIX style (what messages and cache keys use)."""
        return Path(os.path.relpath(path, self.root)).as_posix()


def find_root(start: Path) -> Path:
    """The nearest directory from ``start`` upward that holds WORKSPACE.yaml."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / WORKSPACE_FILE).is_file():
            return d
    raise UserError(f"no {WORKSPACE_FILE} in {start} or any parent directory",
                    hint=f"create an empty {WORKSPACE_FILE} at your repository root, or pass -C DIR")


def load(root_arg: str | None = None, cwd: Path | None = None,
         sets: list[str] | None = None) -> Workspace:
    """Find and read the workspace; ``root_arg`` is ``-C DIR``, ``sets`` the ``--set NAME=VALUE``
    overrides of its values."""
    ws = _load(root_arg, cwd)
    ws.values = Values(ws.root, ws.var_defaults, sets)
    return ws


def _load(root_arg: str | None, cwd: Path | None) -> Workspace:
    if root_arg is not None:
        root = Path(root_arg).resolve()
        if not (root / WORKSPACE_FILE).is_file():
            raise UserError(f"{root} has no {WORKSPACE_FILE}",
                            hint=f"-C must name the directory holding {WORKSPACE_FILE}")
    else:
        root = find_root(cwd or Path.cwd())
    doc = _parse(root)
    ws = Workspace(root=root)
    if doc is None:
        return ws
    if not isinstance(doc.value, dict):
        raise UserError(f"{WORKSPACE_FILE} must be a mapping of settings", path=WORKSPACE_FILE,
                        line=doc.line, hint=f"known keys: {', '.join(KEYS)}")
    for key, val in doc.value.items():
        _apply(ws, key, val)
    return ws


def _parse(root: Path) -> yamlpos.Pos | None:
    """WORKSPACE.yaml parsed, or as parsed before while the file keeps its stat stamp (parsing
    YAML means importing PyYAML, a tenth of a no-op build's start-up)."""
    from .engine.treecache import user_cache

    path = str(root / WORKSPACE_FILE)
    cache, key = user_cache(), ("workspace-file", path)
    hit = cache.get(key) if cache else None
    if hit is not None:
        return hit[0]
    doc = yamlpos.load(yamlpos.read_text(path, WORKSPACE_FILE), WORKSPACE_FILE)
    if cache:
        cache.put(key, [path], (doc,))
        cache.save_quietly()
    return doc


def _err(msg: str, val: yamlpos.Pos, hint: str | None = None) -> UserError:
    return UserError(msg, path=WORKSPACE_FILE, line=val.line, hint=hint)


def _apply(ws: Workspace, key: str, val: yamlpos.Pos) -> None:
    plain = yamlpos.plain(val)
    if key not in KEYS:
        raise _err(f"unknown key '{key}'", val,
                   did_you_mean(key, KEYS) or f"known keys: {', '.join(KEYS)}")
    if key == "default_platforms":
        if not isinstance(plain, list) or not plain:
            raise _err("default_platforms must be a non-empty list", val, "e.g. [linux/amd64, linux/arm64]")
        ws.default_platforms = [_platform(p, val) for p in val.value]
    elif key == "backend":
        if plain not in BACKENDS:
            raise _err(f"unknown backend {plain!r}", val,
                       did_you_mean(str(plain), BACKENDS) or f"backends: {', '.join(BACKENDS)}")
        ws.backend = plain
    elif key == "jobs":
        if not isinstance(plain, int) or isinstance(plain, bool) or plain < 1:
            raise _err("jobs must be a positive integer", val, "e.g. jobs: 8")
        ws.jobs = plain
    elif key == "cache_dir":
        if not isinstance(plain, str) or not plain:
            raise _err("cache_dir must be a path", val, "e.g. cache_dir: .graphbuild")
        ws.cache_dir = (ws.root / plain).resolve()
    elif key == "remote_cache":
        if not isinstance(plain, str) or not plain.startswith("oci://"):
            raise _err("remote_cache must be oci://host/repo", val,
                       "e.g. remote_cache: oci://127.0.0.1:5000/cache")
        from .registry.reference import ReferenceError, parse_reference

        try:
            ref = parse_reference(plain.removeprefix("oci://"))
        except ReferenceError as exc:
            raise _err(f"remote_cache {plain!r}: {exc}", val,
                       "e.g. remote_cache: oci://127.0.0.1:5000/cache") from None
        if ref.tag or ref.digest or plain[6:].split("/")[0] != ref.registry:
            raise _err(f"remote_cache {plain!r} must name a registry and a repository, "
                       "without a tag or digest", val,
                       "e.g. remote_cache: oci://127.0.0.1:5000/cache")
        ws.remote_cache = f"oci://{ref.registry}/{ref.repository}"
    elif key == "attest":
        from .attest import settings

        try:
            ws.attest = settings.check(plain, "attest")
        except settings.SettingsError as exc:
            raise _err(str(exc), val, "e.g. attest: {sbom: true, provenance: true}") from None
    elif key == "vars":
        ws.var_defaults = _vars(val)
    elif key == "signing":
        command = plain.get("command") if isinstance(plain, dict) else None
        if not isinstance(command, str) or not command.strip() or set(plain) != {"command"}:
            raise _err("signing must be {command: '...'}", val,
                       "e.g. signing: {command: 'cosign sign --yes {ref}@{digest}'}")
        ws.signing = plain
    else:
        if not isinstance(plain, dict):
            raise _err(f"{key} must be a mapping", val, KEYS[key])
        setattr(ws, key, plain)
        if key == "builders":
            for p in val.value.values():
                names = p.value if isinstance(p.value, list) else [p]
                if not names or not all(isinstance(n.value, str) and n.value for n in names):
                    raise _err("builder names must be strings (a list of them is a pool)", p,
                               "e.g. builders: {linux/arm64: arm-builder} or "
                               "{linux/arm64: [arm-1, arm-2]}")
            for name, p in val.value.items():
                _platform(yamlpos.Pos(name, p.line), p)


def _vars(val: yamlpos.Pos) -> dict[str, str]:
    if not isinstance(val.value, dict):
        raise _err("vars must map names to default values", val,
                   "e.g. vars: {REGISTRY: 127.0.0.1:5000, VERSION: dev}")
    out = {}
    for name, pos in val.value.items():
        if not NAME_RE.fullmatch(name):
            raise _err(f"vars: '{name}' is not a name", pos,
                       "names are letters, digits and _, not starting with a digit")
        if name in BUILTIN or name in PLATFORM_KEYS:
            raise _err(f"vars: '{name}' is built in", pos,
                       f"choose another name; built in: {', '.join([*BUILTIN, *PLATFORM_KEYS])}")
        v = pos.value
        if isinstance(v, bool):
            v = "true" if v else "false"
        if v is None:
            v = ""
        if not isinstance(v, (str, int, float)):
            raise _err(f"vars: '{name}' must be a string", pos, "e.g. VERSION: '1.4'")
        out[name] = str(v)
    return out


def _platform(p: yamlpos.Pos, where: yamlpos.Pos) -> platforms.Platform:
    try:
        return platforms.parse(p.value)
    except platforms.PlatformError as exc:
        raise UserError(str(exc), path=WORKSPACE_FILE, line=p.line or where.line, hint=exc.hint) from None
