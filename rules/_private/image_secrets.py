"""An image's ``secrets`` and ``ssh``: checked at load, handed to the backend at build time.

    secrets:
      npmrc: {src: ~/.npmrc}          # a file (relative to the package, ~ expanded)
      token: {env: GITHUB_TOKEN}      # an environment variable of the graphbuild process
    ssh: [default, "github=~/.ssh/id_ed25519"]

As in BuildKit, a secret's value is not a build input: the action key holds each id and where
its value comes from, so a changed value does not rebuild (change the id or the Dockerfile).
"""

from __future__ import annotations

import os
import re

from graphbuild.backends.base import Secret, SshAgent
from graphbuild.rule_api import Target

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SECRET_HINT = "e.g. secrets: {npmrc: {src: ~/.npmrc}, token: {env: GITHUB_TOKEN}}"
SSH_HINT = 'e.g. ssh: [default] ($SSH_AUTH_SOCK) or ssh: ["github=~/.ssh/id_ed25519"]'


def check(target: Target) -> None:
    """Load-time checks of the attributes' shape (exit 2 at the offending line)."""
    secrets(target, "")
    ssh(target, "")


def secrets(target: Target, package_dir: str) -> list[Secret]:
    value = target.attrs.get("secrets") or {}
    out = []
    for sid, pos in value.items():
        if not ID_RE.match(str(sid)):
            raise target.error(f"secret id '{sid}' is not a plain name", "secrets", SECRET_HINT,
                               line=pos.line)
        spec = pos.value
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("src", "env"):
            raise target.error(f"secret '{sid}' must be {{src: PATH}} or {{env: NAME}}",
                               "secrets", SECRET_HINT, line=pos.line)
        kind, src = next(iter(spec.items()))
        if not isinstance(src.value, str) or not src.value:
            raise target.error(f"secret '{sid}': {kind} must be a non-empty string", "secrets",
                               SECRET_HINT, line=src.line)
        source = src.value
        if kind == "src":
            source = os.path.join(package_dir, os.path.expanduser(source))
        out.append(Secret(str(sid), kind, source,
                          f"{target.build_file}:{pos.line}: {target.label}"))
    return out


def ssh(target: Target, _package_dir: str) -> list[SshAgent]:
    out = []
    for item in target.attrs.get("ssh") or []:
        sid, _, paths = item.partition("=")
        if not ID_RE.match(sid):
            raise target.error(f"ssh entry '{item}' must be ID or ID=PATH[,PATH]", "ssh", SSH_HINT)
        out.append(SshAgent(sid, [os.path.expanduser(p) for p in paths.split(",") if p]))
    return out


def key_data(target: Target) -> dict:
    """What of them is part of the action key: ids and sources as written, never values."""
    from graphbuild.engine.yamlpos import plain

    out: dict = {}
    if target.attrs.get("secrets"):
        out["secrets"] = {k: plain(v) for k, v in target.attrs["secrets"].items()}
    if target.attrs.get("ssh"):
        out["ssh"] = list(target.attrs["ssh"])
    return out
