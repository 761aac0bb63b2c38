"""`graphbuild inspect`: a manifest list or image as `docker manifest inspect` prints it."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="LABEL|REF", help="//pkg:target, a tag in the store, or a "
                   "registry reference")
    p.add_argument("-v", "--verbose", action="store_true", help="add each image's config")


def main(args) -> int:
    from ..oci.inspect import format_manifest_inspect, format_verbose

    raw, media_type, fetch, name = _resolve(args)
    if args.verbose:
        print(format_verbose(name, raw, media_type, fetch))
    else:
        print(format_manifest_inspect(raw, media_type))
    return 0


def _resolve(args):
    """(raw manifest bytes, media type, blob fetcher, reference) from the store or a registry."""
    from ..oci.store import Store
    from .common import workspace
    from .lookup import descriptor, load_label

    if args.ref.startswith("//"):
        loaded, node = load_label(args, args.ref)
        store = Store(loaded.ws.cache_dir / "oci")
        desc = descriptor(store, node)
        return store.read_bytes(desc["digest"]), desc["mediaType"], store.read_bytes, node
    ws = workspace(args)
    store = Store(ws.cache_dir / "oci")
    desc = store.lookup(args.ref) if (ws.cache_dir / "oci" / "index.json").exists() else None
    if desc is not None:
        return store.read_bytes(desc["digest"]), desc["mediaType"], store.read_bytes, args.ref
    from ..remote_inspect import fetch_remote

    return fetch_remote(ws, args.ref)
