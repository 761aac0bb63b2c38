"""`graphbuild export`: an image or index as an oci-archive or a `docker load` archive."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("label", metavar="LABEL", help="an image or manifest target (built already)")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--format", choices=("oci", "docker"), default="oci")
    p.add_argument("--platform", metavar="P",
                   help="with --format docker: the platform to take from a multi-platform image")


def main(args) -> int:
    from ..errors import UserError
    from ..oci.export import ExportError, export_docker_archive, export_oci_archive
    from ..oci.store import Store
    from .common import output_file
    from .lookup import descriptor, load_label, tags_of

    out = output_file("-o", args.output, replaced=True)
    if args.platform is not None:
        if args.format != "docker":
            raise UserError("--platform picks one image for --format docker; an oci archive "
                            "holds every platform", hint="drop --platform, or add --format docker")
        from .common import platform_filter

        platform_filter([args.platform])  # a bad spelling is exit 2 with the right one
    loaded, node = load_label(args, args.label)
    store = Store(loaded.ws.cache_dir / "oci")
    desc = descriptor(store, node)
    tags = tags_of(store, node)
    try:
        if args.format == "oci":
            export_oci_archive(store, desc, args.output, tags[0] if tags else None)
        else:
            export_docker_archive(store, desc, args.output, tags, args.platform)
    except ExportError as exc:
        raise UserError(str(exc), hint="pass --platform os/arch to pick one image") from None
    except OSError as exc:
        if exc.filename is None or Path(exc.filename).parent != out.parent:
            raise  # not the archive being written: a store problem, reported as it is
        raise UserError(f"-o: cannot write {args.output}: {exc.strerror}",
                        hint="name a file in an existing, writable directory") from None
    print(f"wrote {args.output} ({args.format}) for {node} {desc['digest']}")
    return 0
