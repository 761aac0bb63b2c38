"""`graphbuild sbom`: the SPDX SBOM attached to a built image, from the store."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("label", metavar="LABEL", help="an image target (built already)")
    p.add_argument("--platform", metavar="P", help="which platform's image, when it has several")


def main(args) -> int:
    from ..attest.records import record_content, referrers_in_store
    from ..attest.sbom_store import ensure
    from ..errors import UserError
    from .lookup import image_manifest

    store, node, manifest = image_manifest(args, args.label, args.platform)
    ensure(store, _cache_dir(store), manifest)
    sboms = [r for r in referrers_in_store(store, manifest["digest"])
             if r["artifactType"] == "application/spdx+json"]
    if not sboms:
        raise UserError(f"{node} has no SBOM in the store",
                        hint="SBOMs are made when the image builds with attest: {sbom: true} "
                             "(the default); rebuild it with `graphbuild run`")
    sys.stdout.write(record_content(store, sboms[0]).decode())
    return 0


def _cache_dir(store):
    return store.root.parent  # the store is <cache_dir>/oci
