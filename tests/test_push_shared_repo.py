"""`run --push` of the README's layout, where an image's per-platform tags and its manifest's tag
share one repository: the image's push node and the manifest's put the same manifests and blobs
there. Within a run each (repository, digest) is written once; the other node waits for that
write. Two writes of one manifest at once made distribution refuse a manifest PUT
(``MANIFEST_BLOB_UNKNOWN``, ``DIGEST_INVALID``) in about a third of pushes into an empty
registry; benchmarks/push_shared_repo.py repeats such pushes and counts failures."""

from __future__ import annotations

import os
from collections import Counter

import registry_fixtures as fx
from registry_fixtures import unique_repo

registry = fx.registry

SERVICES = 3


def _layout(ws, host: str) -> list[str]:
    repos = [unique_repo(f"svc{i}") for i in range(SERVICES)]
    files: dict[str, str | bytes] = {
        "WORKSPACE.yaml": "default_platforms: [linux/amd64, linux/arm64]\n",
        "base/BUILD.yaml": "base:\n  rule: image\n",
        "base/Dockerfile": "FROM scratch\nCOPY base.bin /base.bin\n",
        "base/base.bin": os.urandom(64 << 10),
    }
    for i, repo in enumerate(repos):
        files[f"s{i}/BUILD.yaml"] = (
            f"image:\n  rule: image\n  contexts: {{base: '//base'}}\n"
            f"  tags: ['{host}/{repo}:{{arch}}']\n"
            f"s:\n  rule: manifest\n  images: [':image']\n  tags: ['{host}/{repo}:1.0']\n")
        files[f"s{i}/Dockerfile"] = "FROM base\nCOPY app /app\n"
        files[f"s{i}/app"] = f"service {i}\n"
    ws.write(files)
    return repos


def test_each_manifest_and_blob_is_written_once_per_repository(ws, registry) -> None:
    repos = _layout(ws, registry.host)
    res = ws.run("run", "//...", "--push")
    assert res.code == 0, res
    for repo in repos:
        puts = Counter(path for verb, path, status in registry.requests(repo, "PUT", "manifests")
                       if "/manifests/sha256:" in path)
        assert puts and max(puts.values()) == 1, (repo, puts)
        writes = Counter(path.split("?")[0] + "?" + _digest_param(path)
                         for verb, path, status in registry.requests(repo, "POST",
                                                                     "blobs/uploads")
                         if "mount=" in path)
        assert all(n == 1 for n in writes.values()), (repo, writes)
    assert ws.run("run", "//...", "--push").code == 0  # a re-push finds it all there


def _digest_param(path: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(path).query).get("mount", [""])[0]


def test_a_pool_thread_that_wrote_a_digest_does_not_write_it_again() -> None:
    """Push nodes run on a thread pool: the thread that wrote a manifest for one node may serve
    the other node later, and must then learn that it is written (CI once saw one PUT twice)."""
    from graphbuild.registry.ledger import WriteLedger

    ledger, key = WriteLedger(), ("127.0.0.1:5000", "svc", "sha256:" + "0" * 64)
    with ledger.once(key) as first:
        assert first is not None
    assert ledger.written(key)
    with ledger.once(key) as second:
        assert second is None


def test_a_nested_write_on_the_writing_thread_writes_again_and_does_not_wait() -> None:
    from graphbuild.registry.ledger import WriteLedger

    ledger, key = WriteLedger(), ("127.0.0.1:5000", "svc", "sha256:" + "1" * 64)
    with ledger.once(key) as outer:
        assert outer is not None
        assert not ledger.written(key)
        with ledger.once(key) as inner:
            assert inner is not None
