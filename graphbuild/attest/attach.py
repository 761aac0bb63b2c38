"""Making an image node's records when it builds: called by the image rule after its backend
stored the image. The records are part of the node's outcome, so they are cached with its
action key and a no-op makes nothing."""

from __future__ import annotations

from . import provenance, records, sbom_store
from .git_state import git_state


def make_records(rc, spec, descriptor: dict) -> list[dict]:
    """The records made with the image: its provenance (its SBOM is noted, and made on first
    use)."""
    wanted = spec.attest
    if not any(wanted.values()):
        return []
    name = rc.action.node
    bases = _bases(rc, spec)
    out = []
    if wanted.get("sbom"):  # made on first use (see sbom_store): noted here
        images = sorted((k, d) for k, d in bases.items() if d and d.startswith("sha256:"))
        sbom_store.note_request(rc.ws.cache_dir, descriptor["digest"], name, images,
                                spec.source_date_epoch)
    if wanted.get("provenance"):
        facts = provenance.BuildFacts(
            label=spec.label, platform=str(spec.platform), dockerfile=spec.dockerfile_rel,
            target=spec.target, backend=spec.backend, backend_version=spec.tool_version,
            build_args=dict(spec.build_args), secret_ids=list(getattr(spec, "secret_ids", [])),
            inputs=rc.input_digests(), bases=bases, git=git_state(str(rc.ws.root)),
        )
        content = provenance.build_provenance(name, descriptor["digest"], facts,
                                              provenance.builder_id())
        out.append(records.put_record(rc.store, descriptor, "provenance", content))
    return out


def _bases(rc, spec) -> dict[str, str]:
    """Reference (or a dependency's node name) -> digest of every image and output this one
    was built from."""
    out = {ref: pinned.rpartition("@")[2] for ref, pinned in spec.refs.items()}
    for kind, value in spec.contexts.values():
        if kind == "ref":
            out[value] = value.rpartition("@")[2]
        elif kind == "node":  # another image target, or a command's output tree
            outcome = rc.deps[value]
            out[value] = outcome.data.get("descriptor", {}).get("digest") or outcome.digest
    return out
