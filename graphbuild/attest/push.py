"""Records in `run --push`: their artifact manifests go up by digest with the image (phase 1),
and in phase 3, before any tag moves, the signing command runs per pushed digest and the OCI 1.1
fallback tag (``sha256-<hex>``) lists the records where the registry has no referrers API."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

from ..errors import BuildError
from ..oci import mediatypes as mt

SIGN_TIMEOUT = 600


def referrer_roots(data: dict) -> list[dict]:
    """The record manifests an outcome carries (an image's, or an index's children's)."""
    return list(data.get("referrers", ()))


def fallback_tag(digest: str) -> str:
    return digest.replace(":", "-")


def update_referrers(targets, store, clients) -> None:
    """For each pushed record, make sure its subject's referrers list names it: the registry's
    referrers API does so on its own; without one, the fallback tag's index is read, the new
    records merged in (other tools' entries kept) and written back."""
    for target in targets:
        by_subject: dict[str, list[dict]] = {}
        for root in target.roots:
            if root.get("artifactType"):
                subject = store.read_json(root["digest"])["subject"]["digest"]
                by_subject.setdefault(subject, []).append(root)
        client = clients[target.registry]
        for subject, records in sorted(by_subject.items()):
            if client.referrers(target.repository, subject) is None:
                _merge_fallback(client, target.repository, subject, records, store)


def _merge_fallback(client, repo: str, subject: str, records: list[dict], store) -> None:
    from ..registry.errors import RegistryError

    tag = fallback_tag(subject)
    try:
        data, _media, _digest = client.get_manifest(repo, tag, accept=(mt.OCI_INDEX,))
        index = json.loads(data)
    except (RegistryError, ValueError):  # none yet (or not an index: replaced)
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    have = {m.get("digest") for m in index.get("manifests", [])}
    new = [_entry(r, store) for r in records if r["digest"] not in have]
    if not new:
        return
    index["manifests"] = [*index.get("manifests", []), *new]
    body = json.dumps(index, separators=(",", ":"), sort_keys=True).encode()
    client.put_manifest(repo, tag, body, mt.OCI_INDEX)


def _entry(record: dict, store) -> dict:
    manifest = store.read_json(record["digest"])
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": record["digest"], "size": record["size"],
             "artifactType": record["artifactType"]}
    if manifest.get("annotations"):
        entry["annotations"] = manifest["annotations"]
    return entry


def sign(command: str, targets, cwd: str) -> list[str]:
    """Run the signing command once per (repository, digest) the tags will name; returns what
    was signed. A failure raises BuildError, and then no tag moves."""
    done: list[str] = []
    seen: set[tuple[str, str]] = set()
    for target in targets:
        for digest in sorted(set(target.tags.values())):
            repo = f"{target.registry}/{target.repository}"
            if (repo, digest) in seen:
                continue
            seen.add((repo, digest))
            _run_signer(command, repo, digest, cwd)
            done.append(f"{repo}@{digest}")
    return done


def _run_signer(command: str, repo: str, digest: str, cwd: str) -> None:
    argv = command.replace("{ref}", shlex.quote(repo)).replace("{digest}", shlex.quote(digest))
    env = {**os.environ, "GRAPHBUILD_REF": repo, "GRAPHBUILD_DIGEST": digest}
    try:
        proc = subprocess.run(["sh", "-c", argv], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=SIGN_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"signing {repo}@{digest} timed out after {SIGN_TIMEOUT} s; "
                         "no tag was moved") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise BuildError(f"signing {repo}@{digest} failed (exit {proc.returncode}); no tag was "
                         f"moved" + (f":\n{tail}" if tail else ""))
