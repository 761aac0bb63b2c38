"""What every subcommand does first: find the workspace, load and check what the patterns reach."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..labels import LabelError, Pattern, parse_pattern


@dataclass
class Loaded:
    ws: object
    loader: object
    tgraph: object
    analysis: object | None = None
    push_nodes: list | None = None


def workspace(args):
    from .. import workspace as wsmod

    sets = [*(getattr(args, "sets_top", None) or []), *(getattr(args, "sets", None) or [])]
    return wsmod.load(getattr(args, "workspace", None), sets=sets)


def patterns(texts: list[str]) -> list[Pattern]:
    out = []
    for text in texts:
        try:
            out.append(parse_pattern(text))
        except LabelError as exc:
            raise UserError(str(exc), hint=exc.hint) from None
    return out


def platform_filter(texts: list[str] | None):
    from .. import platforms

    if not texts:
        return None
    out = []
    for t in texts:
        try:
            out.append(platforms.parse(t))
        except platforms.PlatformError as exc:
            raise UserError(f"--platform: {exc}", hint=exc.hint) from None
    return out


def load(args, pattern_texts: list[str], *, analyze: bool = True, plat_texts=None,
         on_workspace=None) -> Loaded:
    """Load and check every package the patterns reach, their dependencies, and (optionally)
    analyse them into the action graph, so bad input is found before anything runs.
    ``on_workspace(ws)`` is called before the packages load (to start network work early)."""
    from ..engine.analysis import Analysis
    from ..engine.hashing import gc_paused
    from ..engine.loader import Loader
    from ..engine.target_graph import TargetGraph

    ws = workspace(args)
    _network_policy(ws, args)
    if on_workspace is not None:
        on_workspace(ws)
    pats = patterns(pattern_texts)
    loader = Loader(ws)
    try:
        with gc_paused():  # targets, providers and actions live as long as the command
            tgraph = TargetGraph(loader, pats)
            loaded = Loaded(ws, loader, tgraph)
            if analyze:
                loaded.analysis = Analysis(ws, tgraph, platform_filter(plat_texts))
    finally:
        loader.save_cache()
    return loaded


BUILDING_COMMANDS = ("run", "verify")


def _network_policy(ws, args) -> None:
    """Only building needs a registry to resolve base image tags: other commands (and a dry
    run) use the digests tags resolved to last time. ``run --pull`` insists on fresh ones."""
    from ..engine.remote import Remote

    remote = Remote.of(ws)
    remote.offline = (getattr(args, "command", "run") not in BUILDING_COMMANDS
                      or bool(getattr(args, "dry_run", False)))
    remote.fresh_tags = bool(getattr(args, "pull", False))


def output_file(flag: str, text: str, *, replaced: bool = False):
    """Check a file the command will write (``-o``, ``--events``, ``--profile``) before any work.

    ``replaced``: the file is written beside and renamed into place, so it must not be a device,
    pipe or socket (renaming over ``/dev/stdout`` would replace the device node)."""
    from pathlib import Path

    if not text:
        raise UserError(f"{flag}: needs a file name", hint=f"e.g. {flag} out.tar")
    path = Path(text)
    if path.is_dir():
        raise UserError(f"{flag}: {text} is a directory",
                        hint=f"name a file in it, e.g. {path / 'image.tar'}")
    if not path.resolve().parent.is_dir():
        raise UserError(f"{flag}: the directory of {text} does not exist",
                        hint="create it first, or name a file in an existing directory")
    if replaced and path.exists() and not path.is_file():
        raise UserError(f"{flag}: {text} is not a regular file",
                        hint="name a regular file; the archive is written beside it and renamed "
                        "into place")
    return path
