"""The buildx backend: one ``docker buildx build`` per (image, platform) node, exported as an OCI
archive and imported into the store.

    docker buildx build [--builder NAME] --platform linux/arm64 --file /ws/app/Dockerfile
        [--target T] [--build-arg K=V]... [--label K=V]...
        [--build-context NAME=/dir | NAME=oci-layout:///scratch/NAME-1234abcd5678@sha256:...]...
        [--cache-from SPEC]... [--cache-to SPEC]... --progress plain
        --output type=oci,dest=/scratch/image.tar,tar=true /ws/app

- The builder for a platform: the ``builder`` attribute of the ``platform`` target the image
  lists, else WORKSPACE.yaml ``builders: {linux/arm64: arm-builder}``, else the current builder.
  A builder named for a platform is taken to be native to it (no emulation note).
- The current builder may use the ``docker`` driver, which cannot export OCI; then graphbuild
  uses (and first creates, like ``docker buildx create --driver docker-container``) a builder
  named ``graphbuild``. It passes ``--builder graphbuild`` instead of ``--use``, so the user's
  current builder is left alone.
- WORKSPACE.yaml ``buildx: {cache_from: SPEC | [SPEC...], cache_to: ...}``; ``{os}``,
  ``{arch}``, ``{variant}`` and ``{platform}`` (``linux-arm64``) in a SPEC are filled in per node,
  so platforms do not overwrite each other's cache.
- SOURCE_DATE_EPOCH (0 when unset) is passed in the environment, which buildx forwards to
  BuildKit for the image's dates, and the OCI exporter gets ``rewrite-timestamp=true`` so the
  files' dates in the layers are clamped to it too: two cold builds give the same digest.
- BuildKit's own attestations are off (``--provenance=false --sbom=false``): graphbuild attaches
  its own SLSA provenance and SBOM as OCI referrers (docs/supply-chain.md), and an attestation
  manifest in the image's index would be an ``unknown/unknown`` entry that is not a platform.
- ``secrets`` and ``ssh`` of the image go to ``--secret id=ID,src=PATH|env=NAME`` and ``--ssh``;
  only their ids and sources are part of the action key, never a secret's value.
- Without a ``docker`` CLI, the ``docker-buildx`` plugin binary runs standalone, as it can. Its
  version is remembered per executable identity (path, size, mtime of the CLI and the plugin),
  so a no-op runs no ``docker buildx version``.
- ``backend: auto`` asks ``probe`` whether a builder works (``docker buildx inspect``). The
  answer is remembered beside the version, keyed also by the environment, buildx's and Docker's
  configuration files and the stamps of the unix sockets they name (a daemon that starts or
  stops makes its socket anew or removes it): a working builder until a build finds it down, a
  failing one for ``DOWN_RECHECK_S``. So a no-op asks nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__, platforms
from ..errors import ActionFailed, UserError
from . import external, oci_import
from .base import BuildRequest, BuildResult

NAME = "buildx"
DEFAULT_BUILDER = "graphbuild"
NO_OCI_DRIVERS = frozenset({"docker"})  # BuildKit in dockerd: exports to the daemon, not OCI
SETTINGS = {"cache_from": "--cache-from specs (a string or a list)",
            "cache_to": "--cache-to specs (a string or a list)"}
ARCHIVE = "image.tar"
DAEMON_ERRORS = ("Cannot connect to the Docker daemon", "Is the docker daemon running",
                 "error during connect", "permission denied while trying to connect",
                 "failed to connect to the docker API")
DOWN_RECHECK_S = 600  # a builder found not working is asked again after this long
NO_PLUGIN_HINT = ("install the buildx plugin (Debian/Ubuntu: apt-get install docker-buildx, or "
                  "docker-buildx-plugin from Docker's repository), or use backend: buildah")
NO_DOCKER_HINT = ("install the Docker CLI with the buildx plugin (or the docker-buildx binary "
                  "alone, on PATH), or use backend: buildah (daemonless)")
DAEMON_HINT = ("start Docker (systemctl start docker), check DOCKER_HOST or `docker context "
               "ls`, or use backend: buildah (daemonless)")

_lock = threading.Lock()
_memory_lock = threading.Lock()
_create_lock = threading.Lock()
_versions: dict[tuple, tuple[int, str]] = {}
_builders: dict[tuple, Builder] = {}


@dataclass
class Builder:
    name: str
    exists: bool
    driver: str = ""
    status: str = ""
    platforms: list[str] = field(default_factory=list)
    endpoint: str = ""
    buildkit: str = ""  # the BuildKit version its node reports
    error: str = ""  # why buildx could not load it (its Docker endpoint does not answer)


@dataclass
class Probe:
    """Whether buildx can build on a builder here; ``text`` says which answers, or why none."""

    ok: bool
    text: str


class DockerUnavailable(ActionFailed):
    """Docker, its daemon or the buildx plugin is missing."""


class BuilderDown(ActionFailed):
    """A named builder exists but its BuildKit does not answer."""


# -- the buildx executable --------------------------------------------------------------------

PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
               "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")


def _docker() -> str | None:
    return shutil.which("docker")


def tool() -> tuple[str, ...] | None:
    """The buildx command. With a Docker CLI: the plugin it would run, run alone (buildx reads
    the same config, contexts and environment either way, and the CLI in between costs ~45 ms
    of CPU per build), or ``docker buildx`` when the plugin is where we do not look. Without
    one: ``docker-buildx`` on PATH."""
    exe = _docker()
    if exe is not None:
        plugin = _plugin()
        return (plugin,) if plugin else (exe, "buildx")
    alone = shutil.which("docker-buildx")
    return (alone,) if alone else None


def _docker_config() -> str:
    return os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")


def _plugin() -> str | None:
    """The plugin file the Docker CLI would run, looked for where and in the order it looks:
    config.json's ``cliPluginsExtraDirs``, the config dir, the system's directories."""
    config = _docker_config()
    for d in (*_extra_plugin_dirs(config), os.path.join(config, "cli-plugins"), *PLUGIN_DIRS):
        path = os.path.join(d, "docker-buildx")
        if os.path.isfile(path):
            return os.path.realpath(path)
    return None


def _extra_plugin_dirs(config: str) -> list[str]:
    try:
        with open(os.path.join(config, "config.json"), encoding="utf-8") as f:
            dirs = json.load(f).get("cliPluginsExtraDirs") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [os.path.expanduser(d) for d in dirs if isinstance(d, str)]


def _stamp(path: str | None) -> tuple | None:
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (path, st.st_mtime_ns, st.st_size, st.st_ino) if st else None


def _key(exe: tuple[str, ...]) -> tuple:
    """What a cached answer depends on: the executables and where they point."""
    env = tuple(os.environ.get(k) for k in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG",
                                            "BUILDX_BUILDER", "BUILDX_CONFIG"))
    return (exe, _stamp(exe[0]), _stamp(_plugin()) if len(exe) > 1 else None, env)


def _memory() -> Path:
    """What is remembered across runs: versions (by executable identity) and probes."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "graphbuild" / "buildx-version.json"


def _read_memory() -> dict:
    try:
        known = json.loads(_memory().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _write_memory(change) -> None:
    """``change(known)`` applied to the remembered answers, written atomically."""
    from ..engine.hashing import write_json

    with _memory_lock:
        try:
            known = _read_memory()
            known = known if len(known) < 64 else {}
            change(known)
            write_json(_memory(), known)
        except OSError:  # a read-only home only costs the next run one more question
            pass


def _remembered(ident: tuple) -> tuple[int, str] | None:
    found = _read_memory().get(_ident_hash(ident))
    return (0, found) if isinstance(found, str) else None


def _remember(ident: tuple, out: str) -> None:
    _write_memory(lambda known: known.__setitem__(_ident_hash(ident), out))


def _ident_hash(ident: tuple) -> str:
    return hashlib.sha256(repr(ident[:3]).encode()).hexdigest()[:32]


def _buildx_version(exe: tuple[str, ...]) -> tuple[int, str]:
    key = _key(exe)
    with _lock:
        if key not in _versions:
            found = _remembered(key)
            if found is None:
                found = external.capture([*exe, "version"], timeout=30)
                if found[0] == 0:
                    _remember(key, found[1])
            _versions[key] = found
        return _versions[key]


def missing() -> str | None:
    """Why this backend cannot run here (no docker, no buildx plugin), or None."""
    exe = tool()
    if exe is None:
        return "Docker is not installed (no `docker` or `docker-buildx` on PATH)"
    code, out = _buildx_version(exe)
    if code != 0:
        first = out.splitlines()[0] if out else f"exit status {code}"
        return f"the Docker CLI has no buildx plugin (`docker buildx version`: {first})"
    return None


def version() -> str:
    exe = tool()
    ver = "unavailable"
    if exe is not None:
        code, out = _buildx_version(exe)
        m = re.search(r"\bv?(\d+\.\d+\S*)", out) if code == 0 else None
        ver = m.group(0) if m else ver
    return f"{NAME}/{__version__}/{ver}"


def require() -> tuple[str, ...]:
    """The buildx command, when buildx works; else DockerUnavailable with what to do."""
    why = missing()
    if why is not None:
        hint = NO_DOCKER_HINT if tool() is None else NO_PLUGIN_HINT
        raise DockerUnavailable(f"{why}\n  hint: {hint}")
    exe = tool()
    assert exe is not None
    return exe


def _daemon_error(out: str) -> str | None:
    for line in out.splitlines():
        if any(p in line for p in DAEMON_ERRORS):  # "ERROR: …", or inspect's "Error:  …"
            return re.sub(r"^(?:ERROR|Error):\s*", "", line.strip())
    return None


# -- builder instances ------------------------------------------------------------------------

def inspect(exe: tuple[str, ...], name: str = "", *, fresh: bool = False) -> Builder:
    """``docker buildx inspect [NAME]``: whether the builder exists, its driver, status,
    platforms and BuildKit version."""
    key = (_key(exe), name)
    with _lock:
        if not fresh and key in _builders:
            return _builders[key]
    code, out = external.capture([*exe, "inspect", *([name] if name else [])])
    daemon = _daemon_error(out)
    if daemon:
        raise DockerUnavailable(f"the Docker daemon is not reachable ({daemon})\n  hint: "
                                f"{DAEMON_HINT}")
    if code != 0:
        if "no builder" in out or "not found" in out:
            found = Builder(name, False)
        else:
            raise ActionFailed(f"`docker buildx inspect {name}` failed: {out or code}".rstrip())
    else:
        found = _parse_inspect(name, out)
    with _lock:
        _builders[key] = found
    return found


def _parse_inspect(name: str, out: str) -> Builder:
    fields: dict[str, str] = {}
    for line in out.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() not in fields:
            fields[k.strip()] = v.strip()
    plats = [p.strip().rstrip("*") for p in fields.get("Platforms", "").split(",") if p.strip()]
    return Builder(fields.get("Name", name), True, fields.get("Driver", ""),
                   fields.get("Status", ""), plats, fields.get("Endpoint", ""),
                   fields.get("BuildKit version") or fields.get("BuildKit", ""),
                   fields.get("Error", ""))


def create(exe: tuple[str, ...], name: str, plats: list[str] | None = None) -> Builder:
    """``docker buildx create --name NAME --driver docker-container [--platform ...]``."""
    argv = [*exe, "create", "--name", name, "--driver", "docker-container"]
    if plats:
        argv += ["--platform", ",".join(plats)]
    code, out = external.capture(argv, timeout=120)
    daemon = _daemon_error(out)
    if daemon:
        raise DockerUnavailable(f"the Docker daemon is not reachable ({daemon})\n  hint: "
                                f"{DAEMON_HINT}")
    if code != 0:
        raise ActionFailed(f"could not create the buildx builder '{name}': {out or code}")
    return inspect(exe, name, fresh=True)


def _usable(exe: tuple[str, ...], wanted: str, *, fresh: bool = False) -> Builder:
    """A named builder that exists, can export OCI and is running; else ActionFailed naming it.
    Its status is asked afresh once per run: a remote node that is down would otherwise cost
    BuildKit's 20 s connection timeout."""
    b = inspect(exe, wanted, fresh=fresh)
    if not b.exists:
        raise ActionFailed(
            f"the buildx builder '{wanted}' does not exist\n  hint: create it with `docker "
            f"buildx create --name {wanted} --driver docker-container [ENDPOINT]` (a native "
            "node: ssh://host, tcp://host:1234 or a docker context), or run `graphbuild "
            "builders --create`")
    if b.driver in NO_OCI_DRIVERS:
        raise ActionFailed(f"the buildx builder '{wanted}' uses the {b.driver} driver, which "
                           "cannot export an OCI image\n  hint: use a docker-container, "
                           "kubernetes or remote builder")
    if b.error:
        raise BuilderDown(f"the buildx builder '{wanted}' does not answer ({b.error})\n  hint: "
                          f"check `docker buildx inspect {wanted}` and the daemon its driver "
                          "talks to, or route its platform to another builder (WORKSPACE.yaml "
                          "builders)")
    if b.driver == "remote" and b.status.lower() not in ("running", ""):
        raise BuilderDown(f"the buildx builder '{wanted}' is not running (status "
                          f"{b.status or 'unknown'}, endpoint {b.endpoint or '?'})\n  hint: "
                          f"start the BuildKit daemon at {b.endpoint or 'its endpoint'}, check "
                          f"`docker buildx inspect {wanted}`, or route its platform to another "
                          "builder (WORKSPACE.yaml builders)")
    return b


def resolve_builder(exe: tuple[str, ...], wanted: str) -> str:
    """The ``--builder`` value for a node ("" = the current builder), creating the
    ``graphbuild`` docker-container builder when the current one cannot export OCI.

    ``wanted`` may be a pool, ``a,b,c`` in the node's order of preference: the first that is
    running builds it, so a target's BuildKit cache stays on one node while it is up."""
    if wanted:
        pool = wanted.split(",")
        for i, name in enumerate(pool):
            try:
                _usable(exe, name)
                return name
            except BuilderDown:
                if i == len(pool) - 1:
                    raise
        raise AssertionError("unreachable")
    current = inspect(exe)
    if current.driver == "remote" and current.status.lower() not in ("running", ""):
        name = current.name or "default"
        raise BuilderDown(f"the current buildx builder '{name}' is not running (status "
                          f"{current.status}, endpoint {current.endpoint or '?'})\n  hint: start "
                          f"the BuildKit daemon at {current.endpoint or 'its endpoint'}, check "
                          f"`docker buildx inspect {name}`, or choose another builder "
                          "(`docker buildx use NAME`, or WORKSPACE.yaml builders)")
    if current.driver not in NO_OCI_DRIVERS:
        return ""
    with _create_lock:
        if not inspect(exe, DEFAULT_BUILDER).exists:
            create(exe, DEFAULT_BUILDER)
    return DEFAULT_BUILDER


def probe(wanted: str) -> Probe:
    """Whether buildx can build on ``wanted`` here (a builder, a pool ``a,b`` of which one
    must answer, or "" for the current builder), for ``backend: auto``; buildx itself must be
    installed (``missing()``). The answer is remembered across runs (see the module doc)."""
    exe = tool()
    assert exe is not None
    found = _recall(_probe_key(exe, wanted))
    if found is not None:
        return found
    answer = _ask(exe, wanted)
    # the state after asking is what the next run sees (buildx writes its `current` file
    # the first time it runs)
    _write_memory(lambda known: known.__setitem__(_probe_key(exe, wanted), {
        "ok": answer.ok, "text": answer.text, "at": time.time()}))
    return answer


def _ask(exe: tuple[str, ...], wanted: str) -> Probe:
    if wanted:
        downs = []
        for name in wanted.split(","):
            try:
                _usable(exe, name, fresh=True)
            except ActionFailed as exc:
                downs.append(str(exc).splitlines()[0])
                continue
            return Probe(True, f"builder {name} reachable")
        return Probe(False, "; ".join(downs))
    try:
        b = inspect(exe, fresh=True)
    except ActionFailed as exc:
        return Probe(False, str(exc).splitlines()[0])
    name = b.name or "default"
    if b.error:
        return Probe(False, f"the current builder '{name}' does not answer ({b.error})")
    if b.driver == "remote" and b.status.lower() != "running":
        return Probe(False, f"the current builder '{name}' is not running (status "
                            f"{b.status or 'unknown'}, endpoint {b.endpoint or '?'})")
    if b.driver in NO_OCI_DRIVERS:
        return Probe(True, f"builder {name} reachable; with its {b.driver} driver graphbuild "
                           f"builds on the docker-container builder '{DEFAULT_BUILDER}'")
    return Probe(True, f"builder {name} reachable")


def _recall(key: str) -> Probe | None:
    found = _read_memory().get(key)
    if not isinstance(found, dict) or not isinstance(found.get("text"), str):
        return None
    if not found.get("ok") and not 0 <= time.time() - found.get("at", 0) < DOWN_RECHECK_S:
        return None
    return Probe(bool(found.get("ok")), found["text"])


def forget_working() -> None:
    """Drop the remembered working builders: a build found one down, so the next run asks."""
    def drop(known: dict) -> None:
        for key in [k for k, v in known.items() if k.startswith("probe:")
                    and isinstance(v, dict) and v.get("ok")]:
            del known[key]

    if any(k.startswith("probe:") for k in _read_memory()):
        _write_memory(drop)


_UNIX_RE = re.compile(r'unix://(/[^"\s,]+)')


def _probe_key(exe: tuple[str, ...], wanted: str) -> str:
    """What a probe's answer depends on: the executables and environment (``_key``), buildx's
    and Docker's configuration files, and the unix sockets they name (their stamps change when
    a daemon starts or stops). Not buildx's ``activity`` files: every build touches them."""
    config = _docker_config()
    bx = os.environ.get("BUILDX_CONFIG") or os.path.join(config, "buildx")
    files = [os.path.join(config, "config.json"), os.path.join(bx, "current")]
    for folder in (os.path.join(bx, "instances"), os.path.join(bx, "defaults")):
        files += _listing(folder)
    meta = os.path.join(config, "contexts", "meta")
    files += [os.path.join(meta, d, "meta.json") for d in _listing(meta, names=True)]
    sockets = {"/var/run/docker.sock", *_UNIX_RE.findall(os.environ.get("DOCKER_HOST") or "")}
    for path in files[1:]:
        try:
            with open(path, errors="replace") as f:
                sockets.update(_UNIX_RE.findall(f.read(65536)))
        except OSError:
            continue
    ident = (_key(exe), wanted, [_stamp(f) for f in files],
             [(s, _stamp(s)) for s in sorted(sockets)])
    return "probe:" + hashlib.sha256(repr(ident).encode()).hexdigest()[:32]


def _listing(folder: str, *, names: bool = False) -> list[str]:
    try:
        found = sorted(os.listdir(folder))
    except OSError:
        return []
    return found if names else [os.path.join(folder, n) for n in found]


def builder_for(ws_builders: dict, plat: platforms.Platform, declared: str = "",
                label: str = "") -> str:
    """The builder named for ``plat``: the platform target's ``builder`` attribute, else
    WORKSPACE.yaml ``builders``; "" when neither names one. A pool (a list of names, or
    ``a,b`` in a ``builder`` attribute) comes back as ``a,b`` in ``label``'s order."""
    names = declared
    if not names:
        for key, value in (ws_builders or {}).items():
            if platforms.parse(key).same_as(plat):
                names = value if isinstance(value, str) else ",".join(value)
                break
    pool = [n.strip() for n in names.split(",") if n.strip()]
    return ",".join(spread(pool, label))


def spread(pool: list[str], label: str) -> list[str]:
    """``pool`` in rendezvous-hash order for ``label``: each target prefers one node (its
    BuildKit cache stays there), targets spread evenly, and a node's loss moves only its own."""
    return sorted(pool, key=lambda n: hashlib.sha256(f"{label}\0{n}".encode()).hexdigest())


def declared_builder(target, provider_of, plat: platforms.Platform) -> str:
    """The ``builder`` attribute of the platform target ``target`` lists for ``plat``."""
    from ..labels import Label

    for item in target.attrs.get("platforms") or []:
        if isinstance(item, Label):
            prov = provider_of(item)
            if prov.platform is not None and prov.platform.same_as(plat):
                return (prov.data or {}).get("builder", "")
    return ""


def node_builder(target, ctx, plat: platforms.Platform) -> str:
    """The builder (or pool, in this target's order) an image node for ``plat`` uses, decided
    at analysis."""
    return builder_for(ctx.ws.builders, plat, declared_builder(target, ctx.provider, plat),
                       str(target.label))


# -- one build --------------------------------------------------------------------------------

def settings(raw: dict | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in (raw or {}).items():
        if key not in SETTINGS:
            raise UserError(f"unknown buildx setting '{key}'", path="WORKSPACE.yaml",
                            hint="buildx settings: " + "; ".join(f"{k}: {v}"
                                                                 for k, v in SETTINGS.items()))
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise UserError(f"buildx {key} must be a string or a list of strings",
                            path="WORKSPACE.yaml",
                            hint=f"e.g. {key}: type=registry,ref=registry.example/cache:{{arch}}")
        out[key] = values
    return out


def shares_builds(raw: dict | None) -> bool:
    """Whether WORKSPACE.yaml's buildx settings let an image's platforms share one build: not
    when ``cache_to`` names a destination per platform, which a joint build would fill with
    every platform's cache."""
    return not any("{" in spec for spec in settings(raw).get("cache_to", []))


def _fill(spec: str, plat: platforms.Platform) -> str:
    return (spec.replace("{platform}", str(plat).replace("/", "-")).replace("{os}", plat.os)
            .replace("{arch}", plat.arch).replace("{variant}", plat.variant))


def context_name(key: str, ctx) -> str:
    """The name BuildKit looks a context up by: for a base image reference, its familiar form
    without ``:latest`` (dockerui NamedContext), e.g. ``alpine:3.19``."""
    if not key.startswith("ref:"):
        return key
    name = ctx.name
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/",
                   "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.removesuffix(":latest")


def _layout_arg(name: str, desc: dict, store, scratch: Path) -> str:
    """``NAME=oci-layout://DIR@DIGEST`` for an image (or index) from the store."""
    digest = desc["digest"]
    layout = oci_import.export_layout(store, desc, scratch / external.layout_name(name, digest))
    return f"{name}=oci-layout://{layout}@{digest}"


def command(reqs: list[BuildRequest], exe: tuple[str, ...], builder: str,
            context_args: list[str], opts: dict[str, list[str]], dest: Path,
            dockerfile: Path | None = None) -> list[str]:
    """One build of ``reqs``, the platforms of one image (alike but for the platform);
    ``dockerfile``: the Dockerfile to name (a copy with its own .dockerignore). Cache specs
    are filled in for each platform: a joint build reads and writes each platform's."""
    req = reqs[0]
    argv = [*exe, "build"]
    if builder:
        argv += ["--builder", builder]
    argv += ["--platform", ",".join(str(r.platform) for r in reqs),
             "--file", str(dockerfile or req.dockerfile)]
    argv += external.dockerfile_flags(req, context_args)
    argv += external.secret_flags(req)
    for key, flag in (("cache_from", "--cache-from"), ("cache_to", "--cache-to")):
        for spec in dict.fromkeys(_fill(spec, r.platform) for spec in opts.get(key, [])
                                  for r in reqs):
            argv += [flag, spec]
    return argv + ["--provenance=false", "--sbom=false", "--progress", "plain", "--output",
                   f"type=oci,dest={dest},tar=true,rewrite-timestamp=true", str(req.context_dir)]


def build(req: BuildRequest, store, scratch: Path, cancelled: threading.Event) -> BuildResult:
    require()
    external.check_secrets(req)
    if req.batch is not None and len(req.batch.members) > 1:
        done = req.batch.together(req.node, (req, scratch),
                                  lambda offers: _build_together(offers, store, cancelled))
        if done is not None:
            return done
        with req.batch.serial:  # one at a time: the batch holds one -j slot
            return _build([req], context_args([req], store, scratch), store, scratch,
                          cancelled)[0]
    return _build([req], context_args([req], store, scratch), store, scratch, cancelled)[0]


def _build(reqs: list[BuildRequest], contexts: list[str], store, scratch: Path,
           cancelled: threading.Event) -> list[BuildResult]:
    """One ``docker buildx build`` of ``reqs`` (an image's platforms, alike but for the
    platform), imported into the store: a result per request, in their order."""
    exe = require()
    lead = reqs[0]
    builder = _builder(exe, lead)
    dest = scratch / ARCHIVE
    argv = command(reqs, exe, builder, contexts, settings(lead.settings), dest,
                   external.dockerfile_with_ignore(lead, scratch))
    _run(argv, lead, builder, scratch, dest, cancelled)
    descs = oci_import.import_archive_platforms(
        store, dest, [(r.platform, _base_layers(store, r)) for r in reqs], tool=NAME)
    dest.unlink()
    return [_result(r, d) for r, d in zip(reqs, descs)]


def _builder(exe: tuple[str, ...], req: BuildRequest) -> str:
    try:
        return resolve_builder(exe, req.builder)
    except (BuilderDown, DockerUnavailable):
        forget_working()  # so `auto` asks again next run
        raise


def _run(argv: list[str], req: BuildRequest, builder: str, scratch: Path, dest: Path,
         cancelled: threading.Event) -> None:
    """Run one ``docker buildx build``; its failure as the error that names the line."""
    log = scratch / "buildx.log"
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(req.source_date_epoch)}
    code = external.run_tool(argv, cwd=scratch, log_path=log, cancelled=cancelled, env=env)
    if code != 0:
        error = failure(req, log.read_text(errors="replace"), code, external.tail(log), builder)
        if isinstance(error, (BuilderDown, DockerUnavailable)):
            forget_working()
        raise error
    if not dest.is_file():
        raise ActionFailed(f"{req.dockerfile_rel}: {req.label}: docker buildx build exited 0 "
                           f"but wrote no OCI archive at {dest}", external.tail(log))


def _base_layers(store, req: BuildRequest) -> dict[str, dict]:
    return oci_import.known_layers(store, [c.descriptor for c in req.contexts.values()
                                           if c.kind == "image"])


def _result(req: BuildRequest, desc: dict) -> BuildResult:
    note = external.emulation_note(req, native_builder=bool(req.builder))
    return BuildResult(desc, [note] if note else [])


# -- an image's platforms in one build ---------------------------------------------------------

def _build_together(offers: dict[str, tuple[BuildRequest, Path]], store,
                    cancelled: threading.Event) -> dict[str, BuildResult | None]:
    """One ``docker buildx build --platform a,b`` for the platforms of one image, as bake
    builds them (one client and one solve instead of one per platform). Requests that differ
    in more than their platform and its base images, or a build that fails for a reason other
    than its builder, answer None: each member then builds alone, so a failure is reported for
    the platform and Dockerfile line that failed."""
    reqs = sorted((req for req, _ in offers.values()), key=lambda r: str(r.platform))
    scratch = next(iter(offers.values()))[1] / "together"
    scratch.mkdir()
    contexts = None
    if len({_shared(r) for r in reqs}) == 1 and len({str(r.platform) for r in reqs}) == len(reqs):
        contexts = context_args(reqs, store, scratch)
    if contexts is None:
        return {}
    try:
        built = _build(reqs, contexts, store, scratch, cancelled)
    except (BuilderDown, DockerUnavailable):
        raise  # the same for every platform: said once for each, not tried again
    except ActionFailed:
        if cancelled.is_set():
            raise
        return {}
    return {r.node: res for r, res in zip(reqs, built)}


def _shared(req: BuildRequest) -> tuple:
    """What must be equal for requests to build in one invocation: all but the platform, the
    images of the named contexts and the cache sources filled in per platform (a joint build
    reads each; it writes one cache, so the destinations must be one)."""
    caches = tuple(_fill(spec, req.platform) for spec in settings(req.settings).get("cache_to", []))
    return (req.label, req.builder, str(req.dockerfile), str(req.context_dir),
            tuple(sorted(req.build_args.items())), req.target, tuple(sorted(req.labels.items())),
            tuple((s.id, s.kind, s.source) for s in req.secrets),
            tuple((a.id, tuple(a.paths)) for a in req.ssh), req.exclude, req.source_date_epoch,
            tuple(sorted(req.contexts)), repr(req.settings), caches)


def context_args(reqs: list[BuildRequest], store, scratch: Path) -> list[str] | None:
    """The ``--build-context`` values for building ``reqs`` (one request, or an image's
    platforms together): a directory as it is; an image that every platform shares as itself;
    an image that differs per platform as an index of each platform's image (BuildKit takes the
    platform it builds from it). None: the platforms cannot share one invocation (an image
    given for a platform other than its own); never for one request."""
    out = []
    for key in sorted(reqs[0].contexts):
        named = [r.contexts[key] for r in reqs]
        name = context_name(key, named[0])
        if all(c.kind == "dir" for c in named) and len({str(c.path) for c in named}) == 1:
            out.append(f"{name}={named[0].path}")
            continue
        if any(c.kind != "image" for c in named):
            return None
        if len({c.descriptor["digest"] for c in named}) == 1:
            out.append(_layout_arg(name, named[0].descriptor, store, scratch))
            continue
        if not all(_made_for(c.descriptor, r.platform) for c, r in zip(named, reqs)):
            return None
        from ..oci.index import IndexEntry, build_index

        desc = build_index(store, [IndexEntry(c.descriptor, r.node) for c, r in zip(named, reqs)])
        out.append(_layout_arg(name, desc, store, scratch))
    return out


def _made_for(desc: dict, plat: platforms.Platform) -> bool:
    return "platform" in desc and platforms.from_oci(desc["platform"]).same_as(plat)


_LOCATION_RE = re.compile(r"^(\S+):(\d+)$")


def failure(req: BuildRequest, output: str, code: int, log_tail: str,
            builder: str = "") -> ActionFailed:
    """The error for a failed build, at the Dockerfile line BuildKit's report names::

        Dockerfile:3
        --------------------
        ...
        ERROR: failed to solve: process "/bin/sh -c false" did not complete successfully: ...
    """
    lines = output.splitlines()
    daemon = _daemon_error(output)
    if daemon:
        return DockerUnavailable(f"{req.dockerfile_rel}: {req.label}: the Docker daemon is not "
                                 f"reachable ({daemon})\n  hint: {DAEMON_HINT}", log_tail)
    if "waiting for connection" in output and "context deadline exceeded" in output:
        name = f"buildx builder '{builder}'" if builder else "current buildx builder"
        return BuilderDown(f"{req.dockerfile_rel}: {req.label}: the {name} did not answer (its "
                           "BuildKit is down or unreachable)\n  hint: check `docker buildx "
                           f"inspect{' ' + builder if builder else ''}`, start its daemon, or route "
                           f"{req.platform} to another builder (WORKSPACE.yaml builders)",
                           log_tail)
    line = None
    for i, text in enumerate(lines[:-1]):
        m = _LOCATION_RE.match(text.strip())
        if m and lines[i + 1].startswith("-----"):
            line = int(m.group(2))
    error = next((ln for ln in reversed(lines) if ln.startswith("ERROR:")), "")
    detail = error.removeprefix("ERROR:").strip() or f"docker buildx build exited with status {code}"
    where = f"{req.dockerfile_rel}:{line}" if line else req.dockerfile_rel
    message = f"{where}: {req.label}: {detail} (buildx)"
    if "exec format error" in output and external.emulated(req.platform):
        message += f"\n  hint: {external.no_emulator_hint(req.platform)}"
    return external.ToolFailed(message, log_tail)
