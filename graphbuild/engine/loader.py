"""Finding packages and loading BUILD.yaml files into checked Targets.

Parsed packages are cached by (path, size, mtime) so a no-op build does not re-parse YAML.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace

from .. import __version__, values
from ..attrs import AttrError, convert
from ..errors import UserError, did_you_mean
from ..labels import Label, Pattern, check_name
from ..rule_api import Target
from ..values import Values
from ..workspace import BUILD_FILE, Workspace
from . import rule_registry, yamlpos
from .hashing import read_pickle, write_pickle

PARSE_CACHE = "parse-cache.pickle"
PARSE_FORMAT = 2  # 2: entries carry each target's {NAME} references
TREE_CACHE = "tree-cache.pickle"


class Loader:
    """Loads packages on demand and resolves labels to Targets."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.values = ws.values or Values(ws.root, ws.var_defaults)
        self.packages: dict[str, dict[str, Target]] = {}
        self._cache_path = ws.cache_dir / PARSE_CACHE
        self._cache: dict = self._read_cache()
        self._cache_dirty = False
        from .treecache import TreeCache

        self.trees = TreeCache(ws.cache_dir / TREE_CACHE)

    # -- parse cache --------------------------------------------------------------------------
    def _read_cache(self) -> dict:
        # Parsed targets depend on the installed rules too (their names, attributes, defaults):
        # a plugin installed, removed or upgraded invalidates the cache.
        version = (__version__, _rules_fingerprint(), PARSE_FORMAT)
        data = read_pickle(self._cache_path)
        return data if data.get("version") == version else {"version": version}

    def save_cache(self) -> None:
        """Write the parse and tree caches back, atomically, if anything changed."""
        self.trees.save()
        if self._cache_dirty:
            write_pickle(self._cache_path, self._cache)
            self._cache_dirty = False

    # -- discovery ------------------------------------------------------------------------------
    def find_packages(self, under: str = "") -> list[str]:
        """Every package at or below ``under`` (skipping hidden dirs and the cache dir)."""
        root = str(self.ws.root)
        top = f"{root}/{under}" if under else root
        if not os.path.isdir(top):
            return []
        found = self.trees.get(("packages", top))
        if found is None:
            walked: list[str] = []
            found = self._walk_packages(root, top, walked)
            self.trees.put(("packages", top), walked, found)
        return found

    def _walk_packages(self, root: str, top: str, walked: list[str]) -> list[str]:
        skip = str(self.ws.cache_dir.resolve())
        found: list[str] = []
        stack = [top]
        while stack:  # strings, not Paths: this walks the whole tree on every `//...`
            d = stack.pop()
            try:
                with os.scandir(d) as it:
                    entries = list(it)
            except OSError:
                continue
            walked.append(d)
            for e in entries:
                if e.name == BUILD_FILE and e.is_file():
                    found.append(d[len(root) + 1:])
                elif (not e.name.startswith(".") and e.name != "node_modules"
                      and e.is_dir(follow_symlinks=False) and e.path != skip):
                    stack.append(e.path)
        return sorted(found)

    def build_file(self, package: str) -> str:
        return f"{package}/{BUILD_FILE}" if package else BUILD_FILE

    # -- loading --------------------------------------------------------------------------------
    def package(self, package: str) -> dict[str, Target] | None:
        """The targets of a package, or None when it has no BUILD.yaml."""
        if package in self.packages:
            return self.packages[package]
        rel = self.build_file(package)
        path = self.ws.root / rel
        try:
            st = path.stat()
        except OSError:
            return None
        # ctime too: tar, rsync -t and cp -p restore an old mtime on new content
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        hit = self._cache.get(rel)
        if hit and hit[0] == stamp:
            targets, refs = hit[1], hit[2]
        else:
            targets, refs = self._parse(package, rel, yamlpos.read_text(path, rel))
            self._cache[rel] = (stamp, targets, refs)
            self._cache_dirty = True
        if refs:  # values change from run to run: the cache keeps targets as written
            targets = {name: self._with_values(t, refs.get(name)) for name, t in targets.items()}
        self.packages[package] = targets
        return targets

    def _with_values(self, target: Target, refs: list[tuple[str, int, str]] | None) -> Target:
        """``target`` with its {NAME} references expanded, then checked by its rule."""
        if not refs:
            return target
        attrs = dict(target.attrs)
        expansions = []
        for attr, line, text in refs:
            try:
                expanded = self.values.expand(text)
            except values.UnknownValue as exc:
                raise UserError(f"unknown value {{{exc.name}}} in '{attr}'",
                                path=target.build_file, line=line, label=str(target.label),
                                hint=exc.hint) from None
            except values.NoGitValue as exc:
                raise UserError(f"{{{exc.name}}} has no value: {exc.why}", path=target.build_file,
                                line=line, label=str(target.label),
                                hint=f"run in a git checkout, or give it: --set {exc.name}=VALUE "
                                f"or {values.ENV_PREFIX}{exc.name}=VALUE") from None
            attrs[attr] = _replace_text(attrs[attr], text, expanded)
            expansions.append((attr, line, text, expanded))
        out = replace(target, attrs=attrs)
        try:
            rule_registry.get(out.rule).check(out)
        except UserError as exc:
            self._point_at_value(exc, out, expansions)
            raise
        return out

    def _point_at_value(self, exc: UserError, target: Target, expansions: list) -> None:
        """An error about an expanded text: point at its line and say where its values came
        from (the rule's check knows only the attribute)."""
        for attr, line, text, expanded in expansions:
            if exc.line in (line, target.line_of(attr)) and repr(expanded) in exc.message:
                exc.line = line
                exc.message += f" ({self.values.describe(values.references(text))})"
                return

    def _parse(self, package: str, rel: str,
               text: str) -> tuple[dict[str, Target], dict[str, list]]:
        try:
            doc = yamlpos.load(text, rel)
        except yamlpos.DuplicateKey as exc:
            name = exc.keys[0]
            what = "target name" if len(exc.keys) == 1 else "key"
            raise UserError(exc.message.replace("duplicate key", f"duplicate {what}", 1),
                            path=rel, line=exc.line, hint=exc.hint,
                            label=None if check_name(name) else str(Label(package, name))) from None
        except UserError as exc:
            if exc.label is None and exc.line:
                exc.label = _target_near(text, exc.line, package)
            raise
        if doc is None:
            return {}, {}
        if not isinstance(doc.value, dict):
            raise UserError("a BUILD.yaml must map target names to their attributes",
                            path=rel, line=doc.line, hint="e.g.\n  server:\n    rule: image")
        targets = {}
        refs: dict[str, list[tuple[str, int, str]]] = {}  # name -> (attr, line, text)
        for name, body in doc.value.items():
            targets[name] = self._target(package, rel, name, body)
            found = [(attr, line, text) for attr in values.ATTRS if attr in body.value
                     for line, text in values.strings_with_references(body.value[attr],
                                                                      body.value[attr].line)]
            if found:
                refs[name] = sorted(found, key=lambda ref: ref[1])  # the first in the file first
        for name, t in targets.items():
            if name not in refs:  # the others are checked once their values are in
                rule_registry.get(t.rule).check(t)
        return targets, refs

    def _target(self, package: str, rel: str, name: str, body: yamlpos.Pos) -> Target:
        label = Label(package, name)
        problem = check_name(name)
        if problem:
            raise UserError(problem, path=rel, line=body.line, label=f"//{package}:{name}",
                            hint="rename the target")
        if not isinstance(body.value, dict):
            raise UserError("a target must be a mapping of attributes", path=rel, line=body.line,
                            label=str(label), hint="add at least `rule: <rule name>`")
        rule_pos = body.value.get("rule")
        if rule_pos is None:
            raise UserError("missing 'rule'", path=rel, line=body.line, label=str(label),
                            hint=f"rules: {', '.join(rule_registry.names())}")
        rule = rule_registry.get(rule_pos.value) if isinstance(rule_pos.value, str) else None
        if rule is None:
            raise UserError(f"unknown rule {rule_pos.value!r}", path=rel, line=rule_pos.line,
                            label=str(label), hint=did_you_mean(str(rule_pos.value),
                                                                 rule_registry.names())
                            or f"rules: {', '.join(rule_registry.names())}")
        return self._convert_attrs(rule, label, rel, body)

    def _convert_attrs(self, rule, label: Label, rel: str, body: yamlpos.Pos) -> Target:
        declared = rule.all_attrs()
        attrs, lines = {}, {}
        for key, pos in body.value.items():
            if key == "rule":
                continue
            lines[key] = pos.line
            if key not in declared:
                raise UserError(f"unknown attribute '{key}' for rule '{rule.name}'", path=rel,
                                line=pos.line, label=str(label),
                                hint=did_you_mean(key, declared) or
                                f"{rule.name} takes: {', '.join(sorted(declared))}")
            try:
                attrs[key] = convert(declared[key], pos, label.package)
            except AttrError as exc:
                raise UserError(f"attribute '{key}': {exc}", path=rel, line=exc.line or pos.line,
                                label=str(label), hint=exc.hint or declared[key].doc) from None
        for key, attr in declared.items():
            if key in attrs:
                continue
            if attr.required:
                raise UserError(f"missing required attribute '{key}' for rule '{rule.name}'",
                                path=rel, line=body.line, label=str(label), hint=attr.doc)
            attrs[key] = attr.default
        return Target(label, rule.name, attrs, lines, body.line, rel)

    def resolve(self, label: Label, where: Target | None = None, attr: str | None = None) -> Target:
        """The target of ``label``; a missing package or target is a UserError at ``where``."""
        pkg = self.package(label.package)
        loc = {} if where is None else {"path": where.build_file, "line": where.line_of(attr),
                                         "label": str(where.label)}
        if pkg is None:
            raise UserError(f"no package '//{label.package}' for label {label} "
                            f"(no {self.build_file(label.package)})", **loc,
                            hint="check the path, or create that BUILD.yaml")
        if label.name not in pkg:
            raise UserError(f"no target '{label.name}' in package '//{label.package}' "
                            f"(label {label})", **loc, hint=did_you_mean(label.name, pkg)
                            or f"targets there: {', '.join(sorted(pkg)) or 'none'}")
        return pkg[label.name]

    def expand(self, pattern: Pattern) -> list[Target]:
        """The targets a pattern names."""
        if pattern.recursive:
            pkgs = self.find_packages(pattern.package)
            if not pkgs:
                raise UserError(f"no packages match {pattern}",
                                hint="packages are directories holding a BUILD.yaml")
            return [t for p in pkgs for t in self.package(p).values()]
        if pattern.name is None:
            pkg = self.package(pattern.package)
            if pkg is None:
                raise UserError(f"no package '//{pattern.package}' "
                                f"(no {self.build_file(pattern.package)})",
                                hint="check the path, or create that BUILD.yaml")
            return list(pkg.values())
        return [self.resolve(Label(pattern.package, pattern.name))]


def _rules_fingerprint() -> tuple:
    """The installed rules: entry-point name, object and distribution version."""
    return rule_registry.fingerprint()


def _replace_text(value, text: str, expanded: str):
    """An attribute's value (a string, list or mapping of strings) with ``text`` replaced."""
    if isinstance(value, str):
        return expanded if value == text else value
    if isinstance(value, list):
        return [_replace_text(v, text, expanded) for v in value]
    if isinstance(value, dict):
        return {k: _replace_text(v, text, expanded) for k, v in value.items()}
    return value


_TOP_KEY = re.compile(r"([A-Za-z0-9][A-Za-z0-9._+-]*)\s*:")


def _target_near(text: str, line: int, package: str) -> str | None:
    """The label of the target whose block holds ``line`` (for YAML syntax errors), if any."""
    lines = text.splitlines()
    for src in reversed(lines[:line]):
        m = _TOP_KEY.match(src)
        if m and check_name(m.group(1)) is None:
            return str(Label(package, m.group(1)))
    return None
