"""`graphbuild load`: an image from the store into a local Docker or Podman, to run it."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENGINE_TIMEOUT = 600


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("label", metavar="LABEL", help="an image or manifest target (built already)")
    p.add_argument("--platform", metavar="P",
                   help="which image of a multi-platform target (default: this machine's)")


def main(args) -> int:
    from .. import platforms
    from ..engine.remote_cache import open_store
    from ..errors import BuildError, UserError
    from ..oci.export import ExportError, export_docker_archive
    from .common import platform_filter
    from .lookup import descriptor, load_label, tags_of

    plat = platform_filter([args.platform])[0] if args.platform else platforms.host()
    loaded, node = load_label(args, args.label)
    store = open_store(loaded.ws)
    desc = descriptor(store, node)
    if args.platform and not _is_index(desc):
        _check_platform(store, desc, node, plat)
    engine = local_engine()
    with tempfile.TemporaryDirectory(prefix="graphbuild-load-") as tmp:
        archive = Path(tmp) / "image.tar"
        try:
            export_docker_archive(store, desc, archive, tags_of(store, node), plat)
        except ExportError as exc:
            raise UserError(str(exc), hint="pass --platform os/arch to pick one image") from None
        proc = subprocess.run([engine, "load", "-i", str(archive)], capture_output=True,
                              text=True, timeout=ENGINE_TIMEOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise BuildError(f"{Path(engine).name} load failed (exit {proc.returncode}): {tail}")
    print(proc.stdout.strip() or proc.stderr.strip())
    print(f"loaded {node} ({plat}) into {Path(engine).name}", file=sys.stderr)
    return 0


def _is_index(desc: dict) -> bool:
    from ..oci import mediatypes as mt

    return mt.is_index(desc.get("mediaType"))


def _check_platform(store, desc: dict, node: str, plat) -> None:
    """A single image is loaded whatever its platform, unless --platform asks for another."""
    from .. import platforms
    from ..errors import UserError

    config = store.read_json(store.read_json(desc["digest"])["config"]["digest"])
    own = platforms.parse("/".join(x for x in (config.get("os"), config.get("architecture"),
                                               config.get("variant")) if x))
    if own != plat:
        raise UserError(f"{node} is an image for {own}, not {plat}",
                        hint=f"drop --platform, or build {node.split('[')[0]} for {plat}")


def local_engine() -> str:
    """Docker where a daemon answers, else Podman where it is installed, else exit 2."""
    from ..errors import UserError

    docker = shutil.which("docker")
    if docker and _answers([docker, "info", "--format", "{{.ServerVersion}}"]):
        return docker
    podman = shutil.which("podman")
    if podman:
        return podman
    raise UserError("no local container engine: no Docker daemon answers and Podman is not "
                    "installed",
                    hint="start Docker, or install Podman (apt-get install podman); or use "
                         "`graphbuild export LABEL -o FILE` and load the archive elsewhere")


def _answers(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
