"""Converting and checking BUILD.yaml attribute values by their declared kind."""

from __future__ import annotations

from typing import Any

from . import platforms
from .engine.yamlpos import Pos, plain
from .labels import Label, LabelError, parse_label, split_node
from .rule_api import Attr

KIND_NAMES = {
    "string": "a string", "bool": "true or false", "int": "an integer",
    "string_list": "a list of strings", "string_dict": "a mapping of names to strings",
    "label": "a label", "label_list": "a list of labels", "platforms": "a list of platforms",
    "image_list": "a list of image labels", "contexts": "a mapping of names to labels, image "
    "references or paths", "mapping": "a mapping",
}


class AttrError(ValueError):
    """A bad value; ``line`` points at the offending element when it is not the attribute's."""

    def __init__(self, message: str, hint: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.line = line


def convert(attr: Attr, pos: Pos, package: str) -> Any:
    """The Python value of an attribute; raises AttrError."""
    conv = _CONVERTERS[attr.kind]
    return conv(pos, package)


def _type_error(pos: Pos, kind: str) -> AttrError:
    return AttrError(f"must be {KIND_NAMES[kind]}, not {_describe(plain(pos))}", line=pos.line)


def _describe(v: Any) -> str:
    names = {dict: "a mapping", list: "a list", bool: "a boolean", int: "a number",
             float: "a number", type(None): "empty (null)"}
    return names.get(type(v), f"the string {v!r}" if isinstance(v, str) else repr(v))


def _string(pos: Pos, _pkg: str) -> str:
    if not isinstance(pos.value, str):
        raise _type_error(pos, "string")
    return pos.value


def _bool(pos: Pos, _pkg: str) -> bool:
    if not isinstance(pos.value, bool):
        raise _type_error(pos, "bool")
    return pos.value


def _int(pos: Pos, _pkg: str) -> int:
    if not isinstance(pos.value, int) or isinstance(pos.value, bool):
        raise _type_error(pos, "int")
    return pos.value


def _list(pos: Pos, kind: str) -> list[Pos]:
    if isinstance(pos.value, str) and kind in ("string_list", "label_list", "platforms", "image_list"):
        return [pos]  # one value stands for a one-element list
    if not isinstance(pos.value, list):
        raise _type_error(pos, kind)
    return pos.value


def _string_list(pos: Pos, _pkg: str) -> list[str]:
    out = []
    for item in _list(pos, "string_list"):
        if not isinstance(item.value, str):
            raise AttrError(f"items must be strings, not {_describe(item.value)}", line=item.line)
        out.append(item.value)
    return out


def _scalar_text(item: Pos) -> str:
    v = item.value
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    raise AttrError(f"values must be strings, not {_describe(v)}", line=item.line)


def _string_dict(pos: Pos, _pkg: str) -> dict[str, str]:
    if not isinstance(pos.value, dict):
        raise _type_error(pos, "string_dict")
    return {k: _scalar_text(v) for k, v in pos.value.items()}


def _label_at(item: Pos, pkg: str) -> Label:
    if not isinstance(item.value, str):
        raise AttrError(f"labels must be strings, not {_describe(item.value)}", line=item.line)
    try:
        return parse_label(item.value, pkg)
    except LabelError as exc:
        raise AttrError(str(exc), exc.hint, line=item.line) from None


def _label(pos: Pos, pkg: str) -> Label:
    return _label_at(pos, pkg)


def _label_list(pos: Pos, pkg: str) -> list[Label]:
    return [_label_at(item, pkg) for item in _list(pos, "label_list")]


def is_label_text(text: str) -> bool:
    return text.startswith(("//", ":"))


def _platform_list(pos: Pos, pkg: str) -> list:
    out: list = []
    for item in _list(pos, "platforms"):
        if isinstance(item.value, str) and is_label_text(item.value):
            out.append(_label_at(item, pkg))
            continue
        try:
            out.append(platforms.parse(item.value))
        except platforms.PlatformError as exc:
            raise AttrError(str(exc), exc.hint, line=item.line) from None
    return out


def _image_list(pos: Pos, pkg: str) -> list[tuple[Label, Any, str]]:
    """(label, platform or None, the entry exactly as written)."""
    out = []
    for item in _list(pos, "image_list"):
        if not isinstance(item.value, str):
            raise AttrError(f"images must be labels, not {_describe(item.value)}", line=item.line)
        base, plat_text = split_node(item.value)
        label = _label_at(Pos(base, item.line), pkg)
        plat = None
        if plat_text is not None:
            try:
                plat = platforms.parse(plat_text)
            except platforms.PlatformError as exc:
                raise AttrError(str(exc), exc.hint, line=item.line) from None
        out.append((label, plat, item.value))
    return out


def _contexts(pos: Pos, pkg: str) -> dict[str, Any]:
    """name -> Label, or a string (image reference such as docker-image://x, or a path)."""
    if not isinstance(pos.value, dict):
        raise _type_error(pos, "contexts")
    out: dict[str, Any] = {}
    for name, item in pos.value.items():
        if not isinstance(item.value, str):
            raise AttrError(f"context '{name}' must be a string, not {_describe(item.value)}",
                            line=item.line)
        out[name] = _label_at(item, pkg) if is_label_text(item.value) else item.value
    return out


def _mapping(pos: Pos, _pkg: str) -> dict:
    if not isinstance(pos.value, dict):
        raise _type_error(pos, "mapping")
    return pos.value  # kept Pos-wrapped so the rule can point at lines


_CONVERTERS = {
    "string": _string, "bool": _bool, "int": _int, "string_list": _string_list,
    "string_dict": _string_dict, "label": _label, "label_list": _label_list,
    "platforms": _platform_list, "image_list": _image_list, "contexts": _contexts,
    "mapping": _mapping,
}
