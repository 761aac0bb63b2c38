"""Why a node must run: compare its input snapshot with the one of its last build."""

from __future__ import annotations


def snapshot(action, inputs: dict[str, str], deps: dict[str, str | None], resolved: dict) -> dict:
    """Everything that went into an action key, in a form worth comparing."""
    return {
        "rule": f"{action.rule}@{action.rule_version}",
        "platform": str(action.platform) if action.platform else None,
        "inputs": inputs,
        "deps": deps,
        "data": action.key_data,
        "resolved": resolved,
        "tool": action.tool_version,
    }


def _changed_keys(old: dict, new: dict) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def _which(old, new) -> str:
    """For a mapping attribute (build_args, labels), the keys that changed: ' (VERSION)'."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = _changed_keys(old, new)
        if keys:
            return f" ({', '.join(keys)})"
    return ""


def reason(old: dict | None, new: dict, limit: int = 5) -> str:
    """A short human reason, most specific first."""
    if old is None:
        return "no previous build"
    parts: list[str] = []
    files = _changed_keys(old.get("inputs", {}), new["inputs"])
    for path in files[:limit]:
        if path not in new["inputs"]:
            parts.append(f"input removed: {path}")
        elif path not in old.get("inputs", {}):
            parts.append(f"input added: {path}")
        else:
            parts.append(f"input changed: {path}")
    if len(files) > limit:
        parts.append(f"and {len(files) - limit} more inputs")
    for dep in _changed_keys(old.get("deps", {}), new["deps"]):
        parts.append(f"dependency changed: {dep}")
    old_data = old.get("data", {})
    for attr in _changed_keys(old_data, new["data"]):
        parts.append(f"attribute changed: {attr}{_which(old_data.get(attr), new['data'].get(attr))}")
    for key in _changed_keys(old.get("resolved", {}), new.get("resolved", {})):
        parts.append(f"resolved changed: {key}")
    for key in ("rule", "platform", "tool"):
        if old.get(key) != new.get(key):
            parts.append(f"{key} changed: {old.get(key)} -> {new.get(key)}")
    return "; ".join(parts) or "outputs missing from the cache"
