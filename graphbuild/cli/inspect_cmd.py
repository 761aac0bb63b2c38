"""`graphbuild inspect`: a manifest list or image as `docker manifest inspect` prints it."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="LABEL|REF", help="//pkg:target, a tag in the store, or a "
                   "registry reference")
    p.add_argument("-v", "--verbose", action="store_true", help="add each image's config")
    p.add_argument("--referrers", action="store_true",
                   help="list the records (SBOM, provenance) attached to a built image or to "
                        "each image of an index, as the OCI referrers API lists them")


def main(args) -> int:
    from ..oci.inspect import format_manifest_inspect

    if args.referrers:
        return _referrers(args)
    raw, media_type, fetch, name = _resolve(args)
    if args.verbose:
        print(_verbose(name, raw, media_type, fetch), end="")
    else:
        print(format_manifest_inspect(raw, media_type), end="")
    return 0


def _referrers(args) -> int:
    """The referrers index of a label's image, or of each image of its index."""
    import json

    from ..attest.records import referrers_in_store
    from ..engine.remote_cache import open_store
    from ..errors import UserError
    from ..oci import mediatypes as mt
    from .lookup import descriptor, load_label

    if not args.ref.startswith("//"):
        raise UserError("--referrers takes a label (//pkg:target) built into the store",
                        hint="for a registry, ask its referrers API or the sha256-<hex> tag")
    loaded, node = load_label(args, args.ref)
    store = open_store(loaded.ws)
    desc = descriptor(store, node)
    from ..attest.sbom_store import ensure_all

    ensure_all(store, loaded.ws.cache_dir, desc)
    subjects = [desc]
    if mt.is_index(desc.get("mediaType")):
        subjects = store.read_json(desc["digest"]).get("manifests", [])
    manifests = []
    for subject in subjects:
        for record in referrers_in_store(store, subject["digest"]):
            if len(subjects) > 1 or subject is not desc:
                record["annotations"] = {"dev.graphbuild.subject": subject["digest"]}
            manifests.append(record)
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    print(json.dumps(doc, indent=2))
    return 0


def _verbose(name: str, raw: bytes, media_type: str, fetch) -> str:
    """`docker manifest inspect --verbose`, each image with its config added (`Config`, after
    the manifest). A label without a tag has no reference: its Ref is the label@digest."""
    import base64
    import json

    from ..oci.inspect import RawJSON, format_verbose, go_indent, go_marshal

    ref = name if not name.startswith("//") else "example.invalid/untagged"
    doc = json.loads(format_verbose(ref, raw, media_type, fetch))
    for image in doc if isinstance(doc, list) else [doc]:
        manifest_raw = base64.b64decode(image["Raw"])
        key = "OCIManifest" if "OCIManifest" in image else "SchemaV2Manifest"
        image[key] = RawJSON(manifest_raw)  # the bytes as docker prints them, key order kept
        image["Config"] = RawJSON(fetch(json.loads(manifest_raw)["config"]["digest"]))
        if name.startswith("//"):
            digest = image["Ref"].partition("@")[2]
            image["Ref"] = f"{name}@{digest}" if digest else name
    return go_indent(go_marshal(doc), "", "\t") + "\n"


def _resolve(args):
    """(raw manifest bytes, media type, blob fetcher, reference) from the store or a registry."""
    from ..engine.remote_cache import open_store
    from .common import workspace
    from .lookup import descriptor, load_label, tags_of

    if args.ref.startswith("//"):
        loaded, node = load_label(args, args.ref)
        store = open_store(loaded.ws)
        desc = descriptor(store, node)
        tags = tags_of(store, node)
        return (store.read_bytes(desc["digest"]), desc["mediaType"], store.read_bytes,
                tags[0] if tags else node)
    ws = workspace(args)
    store = open_store(ws)
    desc = store.lookup(args.ref) if (ws.cache_dir / "oci" / "index.json").exists() else None
    if desc is not None:
        from ..engine import run_lock

        run_lock.hold(ws.cache_dir)  # reading a remote-only blob writes it: not beside gc
        return store.read_bytes(desc["digest"]), desc["mediaType"], store.read_bytes, args.ref
    from ..engine.remote_inspect import fetch_remote

    return fetch_remote(ws, args.ref)
