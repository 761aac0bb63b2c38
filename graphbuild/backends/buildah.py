"""The buildah backend: one daemonless ``buildah bud`` per (image, platform) node; runs RUN.

    buildah --root C/buildah/root-vfs --runroot C/buildah/run-vfs --storage-driver vfs bud
        --format oci --layers=false --pull=never --disable-compression=false
        --platform linux/amd64 --isolation chroot --timestamp 0
        -f /ws/app/Dockerfile [--ignorefile F] [--target T] [--build-arg K=V]... [--label K=V]...
        [--build-context NAME=/dir | NAME=docker-image://oci:NAME-1234abcd5678]...
        --tag oci:out /ws/app

It runs in the action's scratch directory: each named context that is an image in the store is
exported there as a small OCI layout (blobs hard-linked) under a name made of the context's name
and digest, because buildah writes that name into the image history: a stable name keeps the
result reproducible. The image goes straight to the OCI layout ``out`` (nothing is tagged in
buildah's storage) and is imported into the store by digest (``oci_import``): every blob is
checked, base layers are the stored ones, the manifest is ours.

- Storage: ``<cache_dir>/buildah`` (``--root``/``--runroot``), one root per storage driver.
  As root the defaults are ``--storage-driver vfs --isolation chroot``, which work inside a
  container and need no kernel features; otherwise buildah's own defaults. WORKSPACE.yaml
  ``buildah: {storage_driver: overlay, isolation: oci}`` overrides them.
- ``--pull=never``: graphbuild owns registry traffic. Base images named by reference are pulled
  (pinned by digest) into the store by the engine and handed to buildah as named contexts under
  the name the Dockerfile uses, so buildah never goes to the network.
- ``--disable-compression=false``: buildah gzips the layers as it writes them, on every core
  and overlapped with the commit (measured: no slower than writing them uncompressed), instead
  of graphbuild gzipping them afterwards. The base image layers it compresses anew are dropped
  at import for the stored ones with the same diff_id.
- ``--layers=false``: one new layer per stage. graphbuild caches whole images itself, and with
  vfs every cached intermediate layer would be a full copy of the root filesystem.
- ``--timestamp`` is SOURCE_DATE_EPOCH (0 when unset, as the native backend's ``created``):
  buildah then pins the history dates and the file times in the new layer, so the same inputs
  give the same digest.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import threading
from functools import lru_cache
from pathlib import Path

from .. import __version__, platforms
from ..errors import ActionFailed, UserError
from . import external, oci_import
from .base import BuildRequest, BuildResult

NAME = "buildah"
SETTINGS = {"storage_driver": "--storage-driver for buildah (root: vfs)",
            "isolation": "--isolation for RUN: oci, chroot or rootless (root: chroot)"}
ROOT_DEFAULTS = {"storage_driver": "vfs", "isolation": "chroot"}
_STEP_RE = re.compile(r"^(?:\[(\d+)/\d+\] )?STEP (\d+)/\d+: (.*)$")
_ERROR_RE = re.compile(r'^Error: building at STEP "(.*)": (.*)$', re.DOTALL)
MISSING_HINT = ("install buildah (Debian/Ubuntu: apt-get install buildah), or use "
                "backend: buildx or native")


def _exe() -> str | None:
    return shutil.which("buildah")


def missing() -> str | None:
    """Why this backend cannot run here, or None."""
    return None if _exe() else "buildah is not installed (no `buildah` on PATH)"


def version() -> str:
    exe = _exe()
    return f"{NAME}/{__version__}/{_tool_version(exe) if exe else 'unavailable'}"


HEREDOCS_SINCE = (1, 33)  # buildah reads Dockerfile heredocs from this version on


def supports_heredocs() -> bool:
    """Whether this buildah builds COPY/RUN heredocs (Debian 12's 1.28 takes ``<<EOT`` for a
    file name and fails at build time)."""
    exe = _exe()
    found = re.match(r"(\d+)\.(\d+)", _tool_version(exe)) if exe else None
    return found is None or tuple(map(int, found.groups())) >= HEREDOCS_SINCE


@lru_cache(maxsize=8)
def _tool_version(exe: str) -> str:
    return external.tool_version([exe, "--version"], r"buildah version (\S+)")


def settings(raw: dict | None) -> dict[str, str]:
    """WORKSPACE.yaml ``buildah:`` over the defaults for this user."""
    raw = dict(raw or {})
    for key, value in raw.items():
        if key not in SETTINGS:
            raise UserError(f"unknown buildah setting '{key}'", path="WORKSPACE.yaml",
                            hint="buildah settings: " + "; ".join(f"{k}: {v}"
                                                                  for k, v in SETTINGS.items()))
        if not isinstance(value, str) or not value:
            raise UserError(f"buildah {key} must be a non-empty string", path="WORKSPACE.yaml",
                            hint=f"{key}: {SETTINGS[key]}")
    defaults = ROOT_DEFAULTS if os.geteuid() == 0 else {}
    return {**defaults, **raw}


def global_args(state_dir: Path, opts: dict[str, str]) -> list[str]:
    """``--root``/``--runroot``/``--storage-driver``: one storage per driver under state_dir."""
    driver = opts.get("storage_driver")
    suffix = driver or "default"
    args = ["--root", str(state_dir / f"root-{suffix}"), "--runroot", str(state_dir / f"run-{suffix}")]
    return args + (["--storage-driver", driver] if driver else [])


def command(req: BuildRequest, exe: str, state_dir: Path, context_args: list[str],
            opts: dict[str, str], out: str = "out", ignorefile: Path | None = None,
            dockerfile: Path | None = None) -> list[str]:
    """The buildah command line for one node (run in the scratch directory); ``ignorefile``
    replaces the context's .dockerignore; ``dockerfile`` is the copy to read (``dockerfile()``)."""
    from .plan import dockerignore_path

    argv = [exe, *global_args(state_dir, opts), "bud", "--format", "oci", "--layers=false",
            "--pull=never", "--disable-compression=false", "--platform", str(req.platform)]
    if opts.get("isolation"):
        argv += ["--isolation", opts["isolation"]]
    argv += ["--timestamp", str(req.source_date_epoch), "-f", str(dockerfile or req.dockerfile)]
    ignore = ignorefile or dockerignore_path(req.context_dir, req.dockerfile)
    if ignore:
        argv += ["--ignorefile", str(ignore)]
    argv += external.dockerfile_flags(_retargeted(req), context_args, build_args(req))
    argv += external.secret_flags(req)
    return argv + ["--tag", f"oci:{out}", str(req.context_dir)]


def _retargeted(req: BuildRequest) -> BuildRequest:
    """The request with the stage buildah is to build: when the target is only ``FROM
    <stage>`` (no instructions, so the same image as that stage's), that stage, which buildah
    1.28 can commit ("image not known" otherwise)."""
    plan = req.plan
    idx = plan.target_index
    while (not plan.stages[idx].commands and plan.bases[idx].kind == "stage"
           and plan.stages[plan.bases[idx].value].name):  # --target takes a name
        idx = plan.bases[idx].value
    if idx == plan.target_index:
        return req
    return dataclasses.replace(req, target=plan.stages[idx].original.split()[-1])


def build_args(req: BuildRequest) -> dict[str, str]:
    """The image's build args over TARGET* and BUILD* from graphbuild's own target and host
    platform, as BuildKit predefines them: buildah 1.28 leaves $BUILDPLATFORM empty in a FROM
    line, and spells an arm64 host linux/arm64/v8 where BuildKit writes linux/arm64."""
    from ..dockerfile.instructions import platform_args

    return {**platform_args(req.platform, platforms.host()), **req.build_args}


def dockerfile(req: BuildRequest, scratch: Path) -> Path:
    """The Dockerfile for buildah: the image's own, or a copy in ``scratch`` whose FROM lines
    (of the stages to build) name literally the platform and image graphbuild resolved, on the
    same lines, when a stage to build says FROM --platform or expands its FROM word.

    buildah 1.28 reads such FROM lines differently from BuildKit: it expands none of the
    automatic platform ARGs there, and a stage's --platform stays in force for the stages after
    it, so a later FROM looks its image up for the wrong platform. Each FROM of the copy names
    its platform, and a context or reference read for two platforms its image for this one
    (``name::os/arch``, the key analysis gave it)."""
    plan = req.plan
    if not any(plan.stages[i].platform_flag is not None
               or plan.stages[i].base != plan.stages[i].base_raw for i in plan.order):
        return req.dockerfile
    from .plan import stage_platforms

    lines = req.dockerfile.read_text(encoding="utf-8").split("\n")
    for idx, plat in stage_platforms(plan, req.platform).items():
        stage = plan.stages[idx]
        lines[stage.line - 1:stage.end_line] = ([from_line(req, idx, plat)]
                                                 + [""] * (stage.end_line - stage.line))
    folder = scratch / "dockerfile"
    folder.mkdir(exist_ok=True)
    path = folder / req.dockerfile.name
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def from_line(req: BuildRequest, idx: int, plat: platforms.Platform) -> str:
    """``FROM --platform=os/arch WORD [AS name]`` for stage ``idx`` built for ``plat``: WORD is
    the stage, scratch, or the name of the build context holding the image for ``plat``."""
    from .plan import context_key

    stage, base = req.plan.stages[idx], req.plan.bases[idx]
    word = stage.base
    if base.kind == "context":
        key = context_key(base.value, plat)
        word = key if key in req.contexts else base.value
    elif base.kind == "ref":
        ref = f"ref:{base.value}"
        word = (req.contexts.get(context_key(ref, plat)) or req.contexts[ref]).name
    name = f" AS {stage.original.split()[-1]}" if stage.name else ""  # as the user spelt it
    return f"FROM --platform={plat} {word}{name}"


def contexts(req: BuildRequest, store, scratch: Path) -> list[str]:
    """``NAME=VALUE`` for each named context; images are exported as layouts into scratch."""
    out = []
    for key, ctx in sorted(req.contexts.items()):
        name = ctx.name if key.startswith("ref:") else key
        if ctx.kind == "dir":
            out.append(f"{name}={ctx.path}")
            continue
        rel = external.layout_name(name, ctx.descriptor["digest"])
        oci_import.export_layout(store, ctx.descriptor, scratch / rel)
        out.append(f"{name}=docker-image://oci:{rel}")
    return out


def build(req: BuildRequest, store, scratch: Path, cancelled: threading.Event) -> BuildResult:
    exe = _exe()
    if exe is None:
        raise ActionFailed(f"{missing()}; {MISSING_HINT}")
    opts = settings(req.settings)
    external.check_secrets(req)
    state_dir = req.state_dir or store.root.parent / NAME
    state_dir.mkdir(parents=True, exist_ok=True)
    (scratch / "tmp").mkdir(exist_ok=True)
    argv = command(req, exe, state_dir, contexts(req, store, scratch), opts,
                   ignorefile=external.ignore_file(req, scratch),
                   dockerfile=dockerfile(req, scratch))
    log = scratch / "buildah.log"
    env = {**os.environ, "TMPDIR": str(scratch / "tmp")}
    code = external.run_tool(argv, cwd=scratch, log_path=log, cancelled=cancelled, env=env)
    if code != 0:
        raise failure(req, log.read_text(errors="replace"), code, external.tail(log))
    reuse = oci_import.known_layers(store, [c.descriptor for c in req.contexts.values()
                                            if c.kind == "image"])
    desc = oci_import.import_layout(store, scratch / "out", req.platform, tool=NAME, reuse=reuse)
    note = external.emulation_note(req)
    return BuildResult(desc, [*([note] if note else []), *dropped(log.read_text(errors="replace"))])


_WARNING_RE = re.compile(r'level=warning msg="(.*(?:not supported|will be ignored).*)"$')


def dropped(output: str) -> list[str]:
    """buildah's warnings that the image differs from the Dockerfile (HEALTHCHECK, SHELL and
    ONBUILD are left out of the OCI format), for the user to see: not a failure."""
    notes = []
    for line in output.splitlines():
        m = _WARNING_RE.search(line)
        if m:
            notes.append("buildah: " + m.group(1).replace('\\"', '"'))
    return list(dict.fromkeys(notes))


def failure(req: BuildRequest, output: str, code: int, log_tail: str) -> ActionFailed:
    """The error for a failed ``buildah bud``, at the Dockerfile line its output names."""
    lines = output.splitlines()
    error = next((ln for ln in reversed(lines) if ln.startswith("Error:")), "")
    step = None
    for ln in lines:
        m = _STEP_RE.match(ln)
        if m:
            step = m
    where = req.dockerfile_rel
    m = _ERROR_RE.match(error)
    if m and step is not None:
        stage = int(step.group(1)) - 1 if step.group(1) else req.plan.target_index
        line = external.instruction_line(req.plan, stage, int(step.group(2)), m.group(1))
        where = f"{req.dockerfile_rel}:{line}" if line else where
        message = f"{where}: {req.label}: `{m.group(1)}` failed: {m.group(2)} (buildah)"
    else:
        detail = error.removeprefix("Error: ") or f"buildah exited with status {code}"
        message = f"{where}: {req.label}: {detail}"
    if "exec format error" in output and external.emulated(req.platform):
        message += f"\n  hint: {external.no_emulator_hint(req.platform)}"
    return external.ToolFailed(message, log_tail)


def reclaim(state_dir: Path) -> int:
    """Remove every working container and image from graphbuild's buildah storage (each
    ``root-<driver>`` under ``state_dir``); how many. Nothing to do without buildah or its
    storage."""
    import subprocess

    exe = shutil.which("buildah")
    roots = sorted(state_dir.glob("root-*")) if state_dir.is_dir() else []
    if exe is None or not roots:
        return 0
    removed = 0
    for root in roots:
        driver = root.name.removeprefix("root-")
        args = global_args(state_dir, {} if driver == "default" else {"storage_driver": driver})
        for what in (["rm", "--all"], ["rmi", "--all", "--force"]):
            proc = subprocess.run([exe, *args, *what], capture_output=True, text=True,
                                  check=False, timeout=300)
            removed += sum(1 for line in proc.stdout.splitlines() if line.strip())
    return removed
