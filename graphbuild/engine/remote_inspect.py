"""`graphbuild inspect REF` for a registry reference: what `docker manifest inspect` prints."""

from __future__ import annotations

from ..errors import BuildError, UserError


def fetch_remote(ws, text: str):
    """(raw manifest, media type, fetch-by-digest, reference) from the registry."""
    from ..registry.errors import RegistryError
    from ..registry.reference import ReferenceError, parse_reference
    from .remote import Remote

    try:
        ref = parse_reference(text)
    except ReferenceError as exc:
        raise UserError(f"{text} is neither a label, a tag in the store, nor an image reference: "
                        f"{exc}", hint="labels start with //; references are host/repo:tag") from None
    client, src = Remote.of(ws).pull_source(ref)
    try:
        raw, media_type, _ = client.get_manifest(src.repository, src.ref)
    except RegistryError as exc:
        raise BuildError(str(exc)) from None

    def fetch(digest: str) -> bytes:
        try:
            return client.get_manifest(src.repository, digest)[0]
        except RegistryError:
            import io

            buf = io.BytesIO()
            client.get_blob(src.repository, digest, buf)
            return buf.getvalue()

    return raw, media_type, fetch, str(ref)
