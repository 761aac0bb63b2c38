"""Go's embedded build information (what `go version -m` prints), read from a binary's bytes.

Since Go 1.18 the linker writes a 32-byte header starting with ``\\xff Go buildinf:`` whose flags
byte has bit 2 set ("inline strings"), followed by two varint-length strings: the Go version and
the module information. The module information is framed by 16-byte sentinels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAGIC = b"\xff Go buildinf:"
_HEADER = 32
_INLINE = 0x2


@dataclass
class GoModule:
    path: str
    version: str
    sum: str = ""


@dataclass
class GoBuildInfo:
    go_version: str
    path: str = ""  # the main package
    main: GoModule | None = None
    deps: list[GoModule] = field(default_factory=list)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise ValueError("bad varint")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    length, pos = _varint(data, pos)
    end = pos + length
    if end > len(data):
        raise ValueError("string past the end")
    return data[pos:end].decode("utf-8", "replace"), end


def read_buildinfo(data: bytes) -> GoBuildInfo | None:
    """The build info of a Go binary, or None (not Go, pre-1.18 layout, or damaged)."""
    at = data.find(MAGIC)
    while at >= 0:
        info = _parse_at(data, at)
        if info is not None:
            return info
        at = data.find(MAGIC, at + 1)
    return None


def _parse_at(data: bytes, at: int) -> GoBuildInfo | None:
    if at + _HEADER > len(data) or not data[at + 15] & _INLINE:
        return None
    try:
        version, pos = _string(data, at + _HEADER)
        modinfo, _ = _string(data, pos)
    except ValueError:
        return None
    if not version.startswith("go"):
        return None
    if len(modinfo) >= 33 and modinfo[-17] == "\n":
        modinfo = modinfo[16:-16]
    return _parse_modinfo(version, modinfo)


def _parse_modinfo(version: str, text: str) -> GoBuildInfo:
    info = GoBuildInfo(version)
    last: GoModule | None = None
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if kind == "path":
            info.path = rest
        elif kind in ("mod", "dep") and len(fields) >= 2:
            last = GoModule(fields[0], fields[1], fields[2] if len(fields) > 2 else "")
            if kind == "mod":
                info.main = last
            else:
                info.deps.append(last)
        elif kind == "=>" and last is not None and len(fields) >= 2:  # a replacement
            last.version = fields[1]
            last.sum = fields[2] if len(fields) > 2 else ""
    return info
