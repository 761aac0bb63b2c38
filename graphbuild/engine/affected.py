"""Which targets' inputs changed since a git commit (BUILD.yaml edits included), plus dependents."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import UserError
from ..labels import Label
from . import globs, yamlpos


def _git(root: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              errors="replace", check=False)
    except FileNotFoundError:
        raise UserError("git is not installed", hint="affected needs git") from None
    if proc.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed: {proc.stderr.strip()}",
                        hint="--since takes a commit, branch or tag of this repository")
    return proc.stdout


def changed_files(root: Path, since: str) -> set[str]:
    """Workspace-relative paths changed between ``since`` and the working tree (untracked too)."""
    _git(root, "rev-parse", "--verify", "--quiet", since + "^{commit}")
    top = Path(_git(root, "rev-parse", "--show-toplevel").strip()).resolve()
    prefix = root.resolve().relative_to(top).as_posix()
    # -z: paths verbatim (git quotes non-ASCII and special characters otherwise)
    names = _git(root, "diff", "-z", "--name-only", "--no-renames", since, "--", ".").split("\0")
    names += _git(root, "ls-files", "-z", "--others", "--exclude-standard", "--full-name",
                  ".").split("\0")
    out = set()
    for name in filter(None, names):
        if prefix in ("", "."):
            out.add(name)
        elif name.startswith(prefix + "/"):
            out.add(name[len(prefix) + 1:])
    return out


def _old_definition(root: Path, since: str, build_file: str, name: str):
    try:
        text = _git(root, "show", f"{since}:./{build_file}")
    except UserError:
        return None  # the file did not exist then
    try:
        doc = yamlpos.load(text, build_file)
    except UserError:
        return None
    if doc is None or not isinstance(doc.value, dict) or name not in doc.value:
        return None
    return yamlpos.plain(doc.value[name])


def _new_definition(root: Path, build_file: str, name: str):
    doc = yamlpos.load((root / build_file).read_text(), build_file)
    return yamlpos.plain(doc.value[name])


def directly_affected(loaded, since: str) -> set[Label]:
    root = loaded.ws.root
    cache = loaded.ws.rel(loaded.ws.cache_dir) + "/"
    changed = {p for p in changed_files(root, since) if not p.startswith(cache)}
    hits: set[Label] = set()
    for label, target in loaded.tgraph.targets.items():
        if target.build_file in changed and (
                _old_definition(root, since, target.build_file, label.name)
                != _new_definition(root, target.build_file, label.name)):
            hits.add(label)
    for action in loaded.analysis.actions.values():
        if action.label in hits:
            continue
        if changed.intersection(action.inputs) or any(
                globs.regex(g).match(path) for g in action.input_globs for path in changed):
            hits.add(action.label)
    return hits
