"""Target platforms: parsing, the OCI/Go vocabulary, and the spelling users get wrong.

A platform string is ``os/arch[/variant]``. ``linux/arm64`` and ``linux/arm64/v8`` are the same
platform (v8 is arm64's baseline, as in containerd); it prints as ``linux/arm64`` and is written
into configs and indexes with ``variant: v8``, as BuildKit and Docker Hub's official images do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

OSES = frozenset(
    ["aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js", "linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows"]
)
ARCHES = frozenset(
    ["386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le", "ppc64", "ppc64le", "riscv64", "s390x", "wasm"]
)
VARIANTS: dict[str, tuple[str, ...]] = {
    "arm": ("v5", "v6", "v7", "v8"),
    "arm64": ("v8",) + tuple(f"v8.{i}" for i in range(10)) + ("v9",)
    + tuple(f"v9.{i}" for i in range(6)),
    "amd64": ("v1", "v2", "v3", "v4"),
}
# arm64's baseline variant: written out, never part of the printed name.
DEFAULT_VARIANT = {"arm64": "v8"}

# Common misspellings (uname -m, Debian and distro names) and their OCI spelling.
ARCH_ALIASES = {
    "x86_64": "amd64", "x86-64": "amd64", "x64": "amd64", "aarch64": "arm64", "armv8": "arm64",
    "arm64v8": "arm64", "i386": "386", "i686": "386", "x86": "386", "ppc64el": "ppc64le",
    "armv7": "arm/v7", "armv7l": "arm/v7", "armhf": "arm/v7", "arm32v7": "arm/v7",
    "armv6": "arm/v6", "armv6l": "arm/v6", "armel": "arm/v6", "arm32v6": "arm/v6",
    "armv5": "arm/v5", "riscv": "riscv64",
}
OS_ALIASES = {"win": "windows", "macos": "darwin", "osx": "darwin", "Linux": "linux"}


class PlatformError(ValueError):
    """A platform string outside the vocabulary; ``hint`` names the right spelling."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    arch: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        # kept once made: node ids, events and keys ask for it thousands of times a build
        text = self.__dict__.get("_str")
        if text is None:
            parts = [self.os, self.arch]
            if self.variant and self.variant != DEFAULT_VARIANT.get(self.arch):
                parts.append(self.variant)
            text = "/".join(parts)
            object.__setattr__(self, "_str", text)
        return text

    @property
    def oci_variant(self) -> str:
        """The variant as written into configs and index entries."""
        return self.variant or DEFAULT_VARIANT.get(self.arch, "")

    def oci(self) -> dict:
        """The OCI descriptor ``platform`` object."""
        out = {"architecture": self.arch, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.oci_variant:
            out["variant"] = self.oci_variant
        return out

    def build_args(self) -> dict[str, str]:
        """TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT as BuildKit sets them."""
        return {"TARGETPLATFORM": str(self), "TARGETOS": self.os, "TARGETARCH": self.arch,
                "TARGETVARIANT": self.variant}

    def same_as(self, other: Platform) -> bool:
        """Equal os/arch/variant after defaulting (the index-versus-config check)."""
        return (self.os, self.arch, self.oci_variant) == (other.os, other.arch, other.oci_variant)


def _suggest_arch(os_: str, word: str) -> str | None:
    fixed = ARCH_ALIASES.get(word) or ARCH_ALIASES.get(word.lower())
    return f"{os_}/{fixed}" if fixed else None


def check(os_: str, arch: str, variant: str = "") -> Platform:
    """Validate the parts of a platform against the vocabulary; raise PlatformError with a hint."""
    written = "/".join(p for p in (os_, arch, variant) if p)
    if os_ not in OSES:
        fixed = OS_ALIASES.get(os_) or OS_ALIASES.get(os_.lower())
        if fixed is None and os_.lower() in OSES:
            fixed = os_.lower()
        hint = f"use '{'/'.join(p for p in (fixed, arch, variant) if p)}'" if fixed else (
            "operating systems are Go's GOOS values, e.g. linux, windows")
        raise PlatformError(f"unknown operating system '{os_}' in platform '{written}'", hint)
    if arch not in ARCHES:
        fixed = _suggest_arch(os_, arch)
        hint = f"the OCI spelling is '{fixed}'" if fixed else (
            "architectures are Go's GOARCH values, e.g. amd64, arm64, arm, 386, ppc64le, s390x")
        raise PlatformError(f"unknown architecture '{arch}' in platform '{written}'", hint)
    if variant:
        allowed = VARIANTS.get(arch, ())
        if variant not in allowed:
            if allowed:
                hint = f"variants of {arch} are {', '.join(allowed[:6])}"
                if arch == "arm" and variant.startswith("v") and variant >= "v8":
                    hint += f"; for 64-bit ARM use '{os_}/arm64'"
            else:
                hint = f"{arch} takes no variant: use '{os_}/{arch}'"
            raise PlatformError(f"unknown variant '{variant}' for {arch} in platform '{written}'", hint)
    return Platform(os_, arch, variant)


def parse(text: str) -> Platform:
    """Parse ``os/arch[/variant]``; ``linux/arm64/v8`` equals ``linux/arm64``."""
    if not isinstance(text, str) or not text:
        raise PlatformError(f"a platform must be a string like 'linux/amd64', not {text!r}",
                            "write os/arch[/variant], e.g. 'linux/arm/v7'")
    parts = text.split("/")
    if len(parts) == 1:
        word = parts[0]
        fixed = ARCH_ALIASES.get(word, word if word in ARCHES else None)
        hint = f"write 'linux/{fixed}'" if fixed else "write os/arch, e.g. 'linux/amd64'"
        raise PlatformError(f"platform '{text}' has no operating system", hint)
    if len(parts) > 3 or not all(parts):
        raise PlatformError(f"malformed platform '{text}'", "write os/arch[/variant], e.g. 'linux/arm/v7'")
    plat = check(*parts)
    if plat.variant == DEFAULT_VARIANT.get(plat.arch):
        plat = Platform(plat.os, plat.arch)
    return plat


def from_oci(obj: dict) -> Platform:
    """A Platform from an OCI ``platform`` object or an image config (no vocabulary check)."""
    variant = obj.get("variant", "") or ""
    arch = obj.get("architecture", "")
    if variant == DEFAULT_VARIANT.get(arch):
        variant = ""
    return Platform(
        obj.get("os", ""), arch, variant, obj.get("os.version", "") or "",
        tuple(obj.get("os.features", ()) or ()),
    )


@lru_cache(maxsize=1)
def host() -> Platform:
    """The platform of this machine, in OCI spelling."""
    import sys

    # os.uname, not platform.machine(): importing `platform` costs a no-op build 1.5 ms
    machine = os.uname().machine if hasattr(os, "uname") else __import__("platform").machine()
    arch = ARCH_ALIASES.get(machine, machine.lower())
    variant = ""
    if "/" in arch:
        arch, variant = arch.split("/")
    os_ = {"darwin": "linux", "win32": "windows"}.get(sys.platform, "linux")
    return Platform(os_, arch, variant)
