"""Finding what a label (or a tag) names in the store, for inspect and export."""

from __future__ import annotations

from ..errors import UserError
from ..labels import LabelError, parse_label, split_node


def node_for_label(loaded, text: str) -> str:
    """The node whose output a label names: a manifest's index, a multi-platform image's index,
    a single-platform image, or ``//x:img[os/arch]`` for one platform."""
    from .. import platforms

    base, plat_text = split_node(text)
    try:
        label = parse_label(base)
    except LabelError as exc:
        raise UserError(str(exc), hint=exc.hint) from None
    prov = loaded.analysis.providers[label]
    target = loaded.tgraph.targets[label]
    if prov.data.get("tree"):  # a command's outputs are a directory tree, not an image
        raise target.error(f"{label} is a {prov.rule} and has no image output", None,
                           "inspect and export take image and manifest targets; a command's "
                           "outputs are fed to images through contexts")
    if plat_text is not None:
        try:
            plat = platforms.parse(plat_text)
        except platforms.PlatformError as exc:
            raise UserError(str(exc), hint=exc.hint) from None
        node = prov.nodes.get(str(plat))
        if node is None and None in prov.nodes:
            raise target.error(f"{label} is a {prov.rule}: it is not built per platform", None,
                               f"name {label} itself, or one platform of an image it lists")
        if node is None:
            raise target.error(f"{label} does not build {plat}", "platforms",
                               f"it builds: {', '.join(map(str, prov.platforms)) or 'nothing'}")
        return node
    if "index" in prov.data:
        return prov.data["index"]
    if len(prov.nodes) == 1:
        return next(iter(prov.nodes.values()))
    raise target.error(f"{label} is a {prov.rule} and has no image output", None,
                       "inspect and export take image and manifest targets")


def select_nodes(loaded, texts: list[str]) -> None:
    """Narrow the action graph to what ``texts`` name: ``//x:img[os/arch]`` one node, any other
    pattern every node of its targets; each with everything it needs."""
    from ..labels import parse_pattern

    analysis = loaded.analysis
    wanted: set[str] = set()
    plain_labels = set()
    for text in texts:
        if split_node(text)[1] is not None:
            wanted.add(node_for_label(loaded, text))
        else:
            plain_labels.update(t.label for t in loaded.loader.expand(parse_pattern(text)))
    wanted.update(n for n, t in analysis.target_of.items() if t.label in plain_labels)
    narrow(analysis, wanted)


def narrow(analysis, wanted: set[str]) -> None:
    """Keep ``wanted`` and everything it needs in the action graph."""
    keep = set(wanted)
    for node in wanted:
        keep |= analysis.graph.ancestors(node)
    analysis.graph = analysis.graph.subgraph(keep)
    analysis.actions = {n: a for n, a in analysis.actions.items() if n in keep}


def load_label(args, text: str):
    """Load the workspace for one label and return (loaded, node); the cache directory stays
    locked (shared) until the command ends, so gc deletes nothing it reads or adds."""
    from ..engine import run_lock
    from .common import load

    base, _ = split_node(text)
    loaded = load(args, [base])
    run_lock.hold(loaded.ws.cache_dir)
    return loaded, node_for_label(loaded, text)


def descriptor(store, node: str) -> dict:
    desc = store.lookup(node)
    if desc is None:
        raise UserError(f"{node} has not been built yet",
                        hint=f"run `graphbuild run {split_node(node)[0]}` first")
    return desc


def tags_of(store, node: str) -> list[str]:
    from ..oci import mediatypes as mt

    return sorted(e["annotations"][mt.REF_NAME] for e in store.entries()
                  if e.get("annotations", {}).get(mt.LABEL) == node
                  and mt.REF_NAME in e.get("annotations", {}))


def image_manifest(args, text: str, platform: str | None):
    """(store, node, image manifest descriptor) for a label (an image, or an index whose image
    for ``platform`` is wanted); several images and no platform is exit 2 listing them."""
    from .. import platforms
    from ..engine.remote_cache import open_store
    from ..oci import mediatypes as mt

    want = None
    if platform is not None:
        from .common import platform_filter

        want = platform_filter([platform])[0]  # a bad spelling is exit 2 with the right one
    loaded, node = load_label(args, text)
    store = open_store(loaded.ws)
    desc = descriptor(store, node)
    if not mt.is_index(desc.get("mediaType")):
        return store, node, desc
    images = [c for c in store.read_json(desc["digest"]).get("manifests", [])
              if mt.is_manifest(c.get("mediaType"))]
    if want is not None:
        images = [c for c in images if platforms.parse(_platform_text(c)) == want]
        if not images:
            raise UserError(f"{node} has no image for {want}",
                            hint="graphbuild inspect " + split_node(text)[0] + " lists them")
    if len(images) != 1:
        plats = ", ".join(_platform_text(c) for c in images)
        raise UserError(f"{node} has an image for each of {plats}",
                        hint="pick one with --platform os/arch")
    return store, node, images[0]


def _platform_text(desc: dict) -> str:
    p = desc.get("platform", {})
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
