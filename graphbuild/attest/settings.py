"""`attest: {sbom: bool, provenance: bool}` — per image, defaulting to the workspace's."""

from __future__ import annotations

DEFAULT = {"sbom": True, "provenance": True}
KEYS = tuple(DEFAULT)


class SettingsError(Exception):
    """A bad ``attest`` value; the message names what is wrong."""


def check(value, where: str) -> dict[str, bool]:
    """The settings in ``value`` over the defaults; raise SettingsError naming what is wrong."""
    if value is None:
        return dict(DEFAULT)
    if isinstance(value, bool):  # `attest: false` turns both off
        return dict.fromkeys(KEYS, value)
    if not isinstance(value, dict):
        raise SettingsError(f"{where} must be a mapping like {{sbom: true, provenance: true}}")
    out = dict(DEFAULT)
    for key, flag in value.items():
        if key not in KEYS:
            raise SettingsError(f"{where}: unknown record {key!r} (known: {', '.join(KEYS)})")
        if not isinstance(flag, bool):
            raise SettingsError(f"{where}.{key} must be true or false")
        out[key] = flag
    return out
