"""Packages found in an image's final filesystem: Debian (dpkg), Alpine (apk), Python
(``*.dist-info/METADATA``) and Go binaries (embedded build info), each with a package URL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from .layer_scan import LayerScan


@dataclass(frozen=True, order=True)
class Package:
    purl: str
    name: str
    version: str
    kind: str  # deb, apk, pypi, golang
    source: str = ""  # where it was found (a path in the image)


def final_view(scans: list[LayerScan]) -> tuple[dict[str, str], dict[str, dict]]:
    """The package databases and Go build infos that the last layer leaves, whiteouts applied."""
    texts: dict[str, str] = {}
    go: dict[str, dict] = {}
    for scan in scans:
        for removed in scan.removed:
            prefix = removed if removed.endswith("/") else removed + "/"
            for table in (texts, go):
                for path in [p for p in table if p == removed or p.startswith(prefix)]:
                    del table[path]
        texts.update(scan.texts)
        go.update(scan.go)
    return texts, go


def find_packages(scans: list[LayerScan]) -> list[Package]:
    texts, go = final_view(scans)
    distro = _distro(texts)
    found: set[Package] = set()
    for path, text in texts.items():
        if path == "var/lib/dpkg/status" or path.startswith("var/lib/dpkg/status.d/"):
            found.update(_dpkg(text, distro or "debian", path))
        elif path == "lib/apk/db/installed":
            found.update(_apk(text, distro or "alpine", path))
        elif path.endswith(".dist-info/METADATA"):
            found.update(_python(text, path))
    for path, info in go.items():
        found.update(_golang(info, path))
    first: dict[str, Package] = {}  # one package per purl, named after where it is first found
    for pkg in sorted(found):
        first.setdefault(pkg.purl, pkg)
    return list(first.values())


def _distro(texts: dict[str, str]) -> str:
    text = texts.get("etc/os-release") or texts.get("usr/lib/os-release") or ""
    match = re.search(r'^ID="?([A-Za-z0-9._-]+)"?\s*$', text, re.MULTILINE)
    return match.group(1).lower() if match else ""


def _paragraphs(text: str, sep: str) -> list[dict[str, str]]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t") or sep not in line:
                continue
            key, _, value = line.partition(sep)
            fields[key.strip()] = value.strip()
        if fields:
            out.append(fields)
    return out


def _dpkg(text: str, distro: str, source: str) -> list[Package]:
    out = []
    for p in _paragraphs(text, ":"):
        name, version = p.get("Package"), p.get("Version")
        if not name or not version or "installed" not in p.get("Status", "install ok installed"):
            continue
        arch = p.get("Architecture", "")
        purl = f"pkg:deb/{distro}/{quote(name)}@{quote(version)}" + (f"?arch={arch}" if arch else "")
        out.append(Package(purl, name, version, "deb", source))
    return out


def _apk(text: str, distro: str, source: str) -> list[Package]:
    out = []
    for p in _paragraphs(text, ":"):
        name, version = p.get("P"), p.get("V")
        if name and version:
            arch = p.get("A", "")
            purl = f"pkg:apk/{distro}/{quote(name)}@{quote(version)}" + (
                f"?arch={arch}" if arch else "")
            out.append(Package(purl, name, version, "apk", source))
    return out


def _python(text: str, source: str) -> list[Package]:
    head = text.split("\n\n", 1)[0]
    fields = {k.strip(): v.strip() for k, _, v in
              (line.partition(":") for line in head.splitlines() if ":" in line)}
    name, version = fields.get("Name"), fields.get("Version")
    if not name or not version:
        return []
    norm = re.sub(r"[-_.]+", "-", name).lower()
    return [Package(f"pkg:pypi/{norm}@{quote(version)}", name, version, "pypi", source)]


def _golang(info: dict, source: str) -> list[Package]:
    out = [Package(f"pkg:golang/stdlib@{quote(info['go_version'])}", "stdlib",
                   info["go_version"], "golang", source)]
    if not info.get("main") and info.get("path"):  # built without modules: only its path
        out.append(Package(f"pkg:golang/{info['path']}", info["path"], "", "golang", source))
    for mod in [info["main"], *info["deps"]] if info.get("main") else info["deps"]:
        version = mod["version"]
        out.append(Package(f"pkg:golang/{mod['path']}@{quote(version)}", mod["path"], version,
                           "golang", source))
    return out
