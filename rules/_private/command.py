"""The `command` rule: a shell action, fanned out per platform, with directory outputs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

from graphbuild.errors import ActionFailed
from graphbuild.labels import Label
from graphbuild.platforms import Platform
from graphbuild.rule_api import (
    Action,
    AnalysisContext,
    Attr,
    NodeId,
    Outcome,
    Provider,
    Rule,
    RunContext,
    Target,
)

# Host variables a command sees besides its own `env`; nothing else leaks in (hermeticity).
PASSTHROUGH_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "USER", "LOGNAME")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CommandRule(Rule):
    name = "command"
    version = 1
    mnemonic = "Command"
    doc = ("A shell command run with `sh -c` in its package directory. With `platforms` it runs "
           "once per platform with TARGETPLATFORM/TARGETOS/TARGETARCH/TARGETVARIANT set. It writes "
           "its outputs under $OUT; its dependencies' outputs are under $DEPS/<label path>/.")
    attrs: ClassVar[dict[str, Attr]] = {
        "cmd": Attr("string", "the shell command (sh -c)", required=True),
        "srcs": Attr("string_list", "input globs, relative to the package (** allowed)", default=[]),
        "outs": Attr("string_list", "paths that must exist under $OUT afterwards", default=[]),
        "platforms": Attr("platforms", "fan out once per platform", default=None),
        "env": Attr("string_dict", "extra environment variables", default={}),
    }

    def check(self, target: Target) -> None:
        if "\0" in target.attrs["cmd"]:
            raise target.error("cmd contains a NUL character", "cmd", "remove it: sh cannot run it")
        for name, value in target.attrs["env"].items():
            if not ENV_NAME.fullmatch(name):
                raise target.error(f"invalid environment variable name {name!r} in env", "env",
                                   "names are letters, digits and _, not starting with a digit")
            if "\0" in value:
                raise target.error(f"env {name} contains a NUL character", "env",
                                   "environment values cannot hold NUL")
        for out in target.attrs["outs"]:
            if out.startswith("/") or ".." in Path(out).parts:
                raise target.error(f"output '{out}' must be a relative path inside $OUT", "outs",
                                   "outs are paths relative to $OUT, e.g. bin/app")

    def analyze(self, target: Target, ctx: AnalysisContext) -> Provider:
        fanned = target.attrs["platforms"] is not None
        plats: list[Platform | None] = ctx.resolve_platforms(target) if fanned else [None]
        srcs = ctx.glob(target.package, target.attrs["srcs"], allow_empty=False)
        extra, extra_globs = _filegroup_files(ctx, target.attrs["deps"])
        own = set(srcs)
        srcs += [f for f in extra if f not in own]
        provider = Provider(self.name, platforms=[p for p in plats if p], data={"tree": True})
        for plat in plats:
            mounts = _mounts(target, ctx, plat)
            action = Action(
                label=target.label, platform=plat, rule=self.name, rule_version=self.version,
                mnemonic=self.mnemonic, progress=f"Running {target.label}",
                deps=ctx.nodes_for(target.attrs["deps"], plat), inputs=srcs,
                input_globs=[f"{target.package}/{g}".lstrip("/") for g in target.attrs["srcs"]]
                + extra_globs,
                key_data={"cmd": target.attrs["cmd"], "env": target.attrs["env"],
                          "outs": sorted(target.attrs["outs"]), "mounts": mounts},
                run=lambda rc, t=target, p=plat, m=mounts: _run(rc, t, p, m),
                check_cached=_check_cached,
            )
            provider.nodes[str(plat) if plat else None] = ctx.declare(action)
        return provider


def _flatten(ctx: AnalysisContext, labels: list[Label]) -> list[Label]:
    out: list[Label] = []
    for lab in labels:
        prov = ctx.provider(lab)
        out.append(lab)
        out.extend(_flatten(ctx, prov.members))
    return out


def _filegroup_files(ctx: AnalysisContext, labels: list[Label]) -> tuple[list[str], list[str]]:
    """The files (and their globs) of the filegroups among ``labels``, groups flattened: inputs
    of the command like its own srcs."""
    files: dict[str, None] = {}
    patterns: list[str] = []
    for lab in _flatten(ctx, labels):
        data = ctx.provider(lab).data
        files.update(dict.fromkeys(data.get("files", ())))
        patterns += data.get("globs", [])
    return list(files), patterns


def _mounts(target: Target, ctx: AnalysisContext, plat: Platform | None) -> dict[str, NodeId]:
    """$DEPS-relative path -> node, for each directory-producing dependency."""
    mounts: dict[str, NodeId] = {}
    for lab in _flatten(ctx, target.attrs["deps"]):
        prov = ctx.provider(lab)
        if not prov.data.get("tree"):
            continue
        if None in prov.nodes:
            mounts[lab.path] = prov.nodes[None]
        elif plat is not None:
            node = prov.nodes.get(str(plat))
            if node is None:
                raise target.error(f"dependency {lab} does not build {plat}", "deps",
                                   f"add {plat} to the platforms of {lab}")
            mounts[lab.path] = node
        else:
            for ptext, node in prov.nodes.items():
                mounts[f"{lab.path}/{ptext}"] = node
    return mounts


def _env(target: Target, plat: Platform | None, out: Path, deps: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env.update(target.attrs["env"])
    if plat is not None:
        env.update(plat.build_args())
    env["OUT"] = str(out)
    env["DEPS"] = str(deps)
    return env


def _run(rc: RunContext, target: Target, plat: Platform | None, mounts: dict) -> Outcome:
    scratch = rc.scratch_dir()
    out, deps = scratch / "out", scratch / "deps"
    out.mkdir()
    deps.mkdir()
    for rel, node in mounts.items():
        link = deps / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(rc.out_dir(node), link)
    code, log = rc.run_process(["sh", "-c", target.attrs["cmd"]], cwd=rc.ws.root / target.package,
                               env=_env(target, plat, out, deps))
    if code != 0:
        raise ActionFailed(f"command exited with status {code}", log)
    if not out.is_dir():
        raise ActionFailed("$OUT is no longer a directory: the command removed or replaced it", log)
    missing = [o for o in target.attrs["outs"] if not (out / o).exists()]
    if missing:
        raise ActionFailed(f"declared outputs missing under $OUT: {', '.join(missing)}", log)
    digest = rc.cas.put_tree(out)
    rc.publish_dir(out, rc.action.node, digest)
    return Outcome(digest, {"tree": digest})


def _check_cached(rc: RunContext, outcome: Outcome) -> bool:
    return rc.ensure_dir(rc.action.node, outcome.digest)
