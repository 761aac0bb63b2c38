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


def update_referrers(targets, store, clients, memo_path=None) -> None:
    """For each pushed record, make sure its subject's referrers list names it: the registry's
    referrers API does so on its own; without one, the fallback tag's index is read, the new
    records merged in (other tools' entries kept) and written back.

    ``memo_path`` remembers the fallback indexes this workspace wrote: a re-push whose fallback
    tag still names one of them, listing the same records, costs one HEAD."""
    memo = _read_memo(memo_path)
    for target in targets:
        by_subject: dict[str, list[dict]] = {}
        for root in target.roots:
            if root.get("artifactType"):
                subject = store.read_json(root["digest"])["subject"]["digest"]
                by_subject.setdefault(subject, []).append(root)
        client = clients[target.registry]
        for subject, records in sorted(by_subject.items()):
            key = f"{target.registry}/{target.repository}@{subject}"
            wanted = sorted(r["digest"] for r in records)
            written = _listed(client, target.repository, subject, records, store, memo.get(key),
                              wanted)
            if written:
                memo[key] = {"index": written, "records": wanted}
    _write_memo(memo_path, memo)


def _listed(client, repo: str, subject: str, records: list[dict], store, last: dict | None,
            wanted: list[str]) -> str | None:
    """Make the records listed; the fallback index digest now there, or None (the registry
    lists referrers itself)."""
    found = client.head_manifest(repo, fallback_tag(subject), accept=(mt.OCI_INDEX,))
    if found is not None and last and last.get("index") == found.digest \
            and set(wanted) <= set(last.get("records", ())):
        return found.digest
    if found is None and client.referrers(repo, subject) is not None:
        return None
    return _merge_fallback(client, repo, subject, records, store, found is not None)


def _merge_fallback(client, repo: str, subject: str, records: list[dict], store,
                    exists: bool) -> str:
    from ..registry.errors import RegistryError

    tag = fallback_tag(subject)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    if exists:
        try:
            data, _media, digest = client.get_manifest(repo, tag, accept=(mt.OCI_INDEX,))
            index = json.loads(data)
        except (RegistryError, ValueError):  # gone meanwhile, or not an index: replaced
            exists = False
    have = {m.get("digest") for m in index.get("manifests", [])}
    new = [_entry(r, store) for r in records if r["digest"] not in have]
    if exists and not new:
        return digest
    index["manifests"] = [*index.get("manifests", []), *new]
    body = json.dumps(index, separators=(",", ":"), sort_keys=True).encode()
    return client.put_manifest(repo, tag, body, mt.OCI_INDEX)


def _read_memo(path) -> dict:
    try:
        return json.loads(path.read_text()) if path else {}
    except (OSError, ValueError):
        return {}


def _write_memo(path, memo: dict) -> None:
    if not path:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # only a lost shortcut


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
