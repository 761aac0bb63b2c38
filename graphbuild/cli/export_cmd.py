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
    from ..engine.remote_cache import open_store
    from ..errors import UserError, is_no_space
    from ..oci.export import (
        ExportError,
        export_docker_archive,
        export_oci_archive,
        image_platforms,
    )
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
    store = open_store(loaded.ws)
    desc = descriptor(store, node)
    tags = tags_of(store, node)
    chosen = ""
    try:
        if args.format == "oci":
            export_oci_archive(store, desc, args.output, tags[0] if tags else None)
        else:
            chosen = _platform_choice(store, desc, node, args.platform)
            export_docker_archive(store, desc, args.output, tags, args.platform)
    except ExportError as exc:
        plats = ", ".join(map(str, image_platforms(store, desc)))
        raise UserError(str(exc), hint=f"pass --platform with one of: {plats}" if plats else
                        "pass --platform os/arch to pick one image") from None
    except OSError as exc:
        if is_no_space(exc) or exc.filename is None or Path(exc.filename).parent != out.parent:
            raise  # a full disk (exit 1, one line) or a store problem, reported as it is
        raise UserError(f"-o: cannot write {args.output}: {exc.strerror}",
                        hint="name a file in an existing, writable directory") from None
    print(f"wrote {args.output} ({args.format}{chosen}) for {node} {desc['digest']}")
    return 0


def _platform_choice(store, desc: dict, node: str, platform: str | None) -> str:
    """A docker archive holds one platform. Without --platform, a multi-platform image gives
    the host's platform, as `docker save` does; say so, and which others there are."""
    import sys

    from .. import platforms
    from ..oci.export import image_platforms

    plats = image_platforms(store, desc)
    if platform is not None:
        return f", {platforms.parse(platform)}"
    if len(plats) < 2:
        return f", {plats[0]}" if plats else ""
    host = platforms.host()
    if any(p.same_as(host) for p in plats):
        print(f"note: {node} has {len(plats)} platforms ({', '.join(map(str, plats))}); a "
              f"docker archive holds one: {host}, the host's (--platform picks another)",
              file=sys.stderr)
    return f", {host}"
