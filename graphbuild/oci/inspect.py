"""Print manifests exactly as ``docker manifest inspect [--verbose]`` does (docker/cli).

What the Docker CLI does, from ``cli/command/manifest/inspect.go`` and the docker/distribution
types it prints:

* an image manifest: its raw bytes re-indented by Go's ``json.Indent(buf, raw, "", "\\t")`` (key
  order, escapes and numbers kept as in the bytes), then a newline;
* an index or manifest list: not the raw bytes, but a list rebuilt by
  ``manifestlist.FromDescriptors`` from each child's media type, size, digest and the index
  entry's platform, marshalled with a *three-space* indent; its media type is the OCI index type
  when the first child is an OCI manifest, else the Docker manifest list type;
* ``--verbose``: ``json.MarshalIndent(v, "", "\\t")`` of an ``ImageManifest`` (or, for an index,
  a list of them): ``Ref``, ``Descriptor`` (with the platform: from the image config for a lone
  manifest, from the index entry for an index's children), ``Raw`` (base64 of the manifest
  bytes) and ``SchemaV2Manifest`` or ``OCIManifest`` (the manifest re-encoded in Go struct order).

Go's encoder escapes ``<``, ``>``, ``&``, U+2028 and U+2029, omits ``omitempty`` fields that are
empty, and writes struct fields in declaration order but map keys sorted; all reproduced here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

from graphbuild.oci import mediatypes as mt

Fetch = Callable[[str], bytes]

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}


# -- Go's encoding/json, the parts docker's output depends on ----------------------------------


def go_indent(src: bytes, prefix: str, indent: str) -> str:
    """Go's ``json.Indent``: drop insignificant whitespace, then break after ``{ [ ,`` and put
    one space after ``:``; empty ``{}``/``[]`` stay closed; string contents are copied verbatim;
    whitespace after the top-level value is kept (Go copies trailing space through)."""
    text = src.decode("utf-8")
    json.loads(text)  # refuse invalid JSON, as Go's scanner does
    out: list[str] = []
    depth, need_indent, in_string, escaped, ended = 0, False, False, False, False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch in " \t\r\n":
            if ended:
                out.append(ch)
            continue
        if need_indent and ch not in "}]":
            need_indent = False
            depth += 1
            out.append("\n" + prefix + indent * depth)
        if ch in "{[":
            need_indent = True
            out.append(ch)
        elif ch == ",":
            out.append(",\n" + prefix + indent * depth)
        elif ch == ":":
            out.append(": ")
        elif ch in "}]":
            if need_indent:
                need_indent = False
            else:
                depth -= 1
                out.append("\n" + prefix + indent * depth)
            out.append(ch)
            ended = depth == 0
        else:
            in_string = ch == '"'
            out.append(ch)
    return "".join(out)


def go_marshal(value: Any) -> bytes:
    """Compact JSON as Go's ``json.Marshal`` writes it; dicts keep their (struct) order."""
    return _go_encode(value).encode("utf-8")


def _go_encode(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{_go_string(k)}:{_go_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_go_encode(v) for v in value) + "]"
    if isinstance(value, str):
        return _go_string(value)
    return json.dumps(value)  # bool, int, None


def _go_string(s: str) -> str:
    # Python escapes quote, backslash and C0 controls like Go 1.22+ (\b \f \n \r \t, else
    # \u00XX in lowercase); Go additionally escapes HTML-significant characters and U+2028/9.
    text = json.dumps(s, ensure_ascii=False)
    for raw, esc in _GO_ESCAPES.items():
        text = text.replace(raw, esc)
    return text


def _go_map(m: Any) -> dict | None:
    """A Go ``map[string]string``: keys sorted; None (omitted) when empty."""
    return {k: m[k] for k in sorted(m)} if m else None


def _struct(*fields: tuple[str, Any, bool]) -> dict:
    """Ordered struct fields ``(json name, value, omitempty)``; empty omitempty fields dropped."""
    return {name: value for name, value, omit in fields
            if not (omit and value in (None, False, "", 0, [], {}))}


# -- the types docker prints --------------------------------------------------------------------


def _platform_spec(p: dict) -> dict:
    """docker/distribution ``manifestlist.PlatformSpec`` as docker/cli fills it from OCI."""
    return _struct(("architecture", p.get("architecture", ""), False),
                   ("os", p.get("os", ""), False),
                   ("os.version", p.get("os.version", ""), True),
                   ("os.features", p.get("os.features") or None, True),
                   ("variant", p.get("variant", ""), True))


def _oci_platform(p: dict) -> dict:
    """image-spec v1.1 ``ocispec.Platform`` (same fields and order, no ``features``)."""
    return _platform_spec(p)


def _dist_descriptor(d: dict) -> dict:
    """docker/distribution ``distribution.Descriptor``: size and digest are omitempty too."""
    return _struct(("mediaType", d.get("mediaType", ""), True),
                   ("size", d.get("size", 0), True),
                   ("digest", d.get("digest", ""), True),
                   ("urls", d.get("urls") or None, True),
                   ("annotations", _go_map(d.get("annotations")), True),
                   ("platform", _oci_platform(d["platform"]) if d.get("platform") else None,
                    True))


def _oci_descriptor(d: dict, platform: dict | None) -> dict:
    """image-spec v1.1 ``ocispec.Descriptor`` as docker/cli's registry client builds it."""
    return _struct(("mediaType", d["mediaType"], False),
                   ("digest", d["digest"], False),
                   ("size", d["size"], False),
                   ("platform", _oci_platform(platform) if platform is not None else None, True))


def _manifest_struct(doc: dict) -> dict:
    """``schema2.Manifest`` / ``ocischema.Manifest`` (docker/distribution v2.8) in field order."""
    layers = doc.get("layers")
    fields = [("schemaVersion", doc.get("schemaVersion", 0), False),
              ("mediaType", doc.get("mediaType", ""), True),
              ("config", _dist_descriptor(doc.get("config", {})), False),
              ("layers", None if layers is None else [_dist_descriptor(x) for x in layers], False)]
    if doc.get("mediaType") == mt.OCI_MANIFEST:
        fields.append(("annotations", _go_map(doc.get("annotations")), True))
    return _struct(*fields)


# -- public -------------------------------------------------------------------------------------


def format_manifest_inspect(raw: bytes, media_type: str) -> str:
    """What ``docker manifest inspect REF`` prints for a manifest or index with bytes ``raw``."""
    if mt.is_index(media_type):
        entries = json.loads(raw).get("manifests") or []
        rebuilt = _struct(("schemaVersion", 2, False),
                          ("mediaType", _list_media_type(entries), True),
                          ("manifests", [_list_entry(e) for e in entries], False))
        return go_indent(go_marshal(rebuilt), "", "   ") + "\n"
    _check_manifest(media_type)
    return go_indent(raw, "", "\t") + "\n"


def format_verbose(ref: str, raw: bytes, media_type: str, fetch: Fetch) -> str:
    """What ``docker manifest inspect --verbose REF`` prints.

    ``ref`` is the reference as the user typed it (normalised here as docker does, e.g.
    ``myapp:v1`` → ``docker.io/library/myapp:v1``); ``fetch(digest)`` returns a blob's bytes
    (child manifests and image configs), e.g. ``Store.read_bytes``.
    """
    named = normalize_reference(ref)
    if mt.is_index(media_type):
        entries = json.loads(raw).get("manifests") or []
        value: Any = [_child_image(named, e, fetch) for e in entries]
    else:
        value = _lone_image(named, raw, media_type, fetch)
    return go_indent(go_marshal(value), "", "\t") + "\n"


def normalize_reference(ref: str) -> str:
    """distribution/reference ``ParseNormalizedNamed`` + ``TagNameOnly``, as a string."""
    name, sep, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"
                     and first.lower() == first):
        first, rest = "docker.io", name
    if first == "index.docker.io":
        first = "docker.io"
    if first == "docker.io" and "/" not in rest:
        rest = "library/" + rest
    full = f"{first}/{rest}"
    if not sep and ":" not in rest.rsplit("/", 1)[-1]:
        full += ":latest"
    return full + (sep + digest)


def _list_media_type(entries: list[dict]) -> str:
    if entries and entries[0].get("mediaType") == mt.OCI_MANIFEST:
        return mt.OCI_INDEX
    return mt.DOCKER_MANIFEST_LIST


def _list_entry(entry: dict) -> dict:
    _check_manifest(entry.get("mediaType", ""))
    return _struct(("mediaType", entry["mediaType"], True),
                   ("size", entry["size"], True),
                   ("digest", entry["digest"], True),
                   ("platform", _platform_spec(entry.get("platform") or {}), False))


def _lone_image(named: str, raw: bytes, media_type: str, fetch: Fetch) -> dict:
    doc = _parse_manifest(raw, media_type)
    config = json.loads(fetch(doc["config"]["digest"]))
    desc = {"mediaType": media_type, "digest": _sha256(raw), "size": len(raw)}
    return _image(named, desc, _config_platform(config), raw, doc)


def _child_image(named: str, entry: dict, fetch: Fetch) -> dict:
    _check_manifest(entry.get("mediaType", ""))
    raw = fetch(entry["digest"])
    doc = _parse_manifest(raw, entry["mediaType"])
    desc = {"mediaType": entry["mediaType"], "digest": _sha256(raw), "size": len(raw)}
    # docker/cli replaces the config's platform with the index entry's.
    ref = named.split("@", 1)[0] + "@" + entry["digest"]
    return _image(ref, desc, entry.get("platform") or {}, raw, doc)


def _image(ref: str, desc: dict, platform: dict, raw: bytes, doc: dict) -> dict:
    key = "OCIManifest" if desc["mediaType"] == mt.OCI_MANIFEST else "SchemaV2Manifest"
    return {"Ref": ref, "Descriptor": _oci_descriptor(desc, platform),
            "Raw": base64.b64encode(raw).decode("ascii"), key: _manifest_struct(doc)}


def _config_platform(config: dict) -> dict:
    keys = ("architecture", "os", "os.version", "os.features", "variant")
    return {k: config[k] for k in keys if k in config}


def _parse_manifest(raw: bytes, media_type: str) -> dict:
    _check_manifest(media_type)
    doc = json.loads(raw)
    if doc.get("mediaType") != media_type:
        # docker/distribution's unmarshallers insist the document names its own type.
        raise ValueError(f"mediaType in manifest should be '{media_type}' not "
                         f"'{doc.get('mediaType')}'")
    return doc


def _check_manifest(media_type: str) -> None:
    if not mt.is_manifest(media_type):
        raise ValueError(f"docker manifest inspect cannot show a {media_type or 'untyped'} here")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
