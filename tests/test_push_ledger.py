"""`run --push` with many outputs sharing blobs, through the CLI against the real registry: the
push nodes of a run share a blob ledger, so a shared base layer crosses the network once and
reaches every other repository by a cross-repository mount; a failed push node still moves no
tag; a re-push uploads nothing. Also the ledger on its own, and push nodes running beyond -j."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse

import pytest
import registry_fixtures as fx

from graphbuild.registry.client import RegistryClient

registry = fx.registry
fault_proxy = fx.fault_proxy

APPS = 4


def _shared_base(ws, host: str, repos: list[str]) -> None:
    """//base:base (one 256 KiB random layer) and one app image FROM it per repository, each
    with a manifest tagged ``host/repo:v1``; two platforms."""
    files: dict[str, str | bytes] = {
        "WORKSPACE.yaml": "default_platforms: [linux/amd64, linux/arm64]\n",
        "base/BUILD.yaml": "base:\n  rule: image\n",
        "base/Dockerfile": "FROM scratch\nCOPY base.bin /opt/base.bin\n",
        "base/base.bin": fx.random_bytes(256 * 1024, seed=len(repos[0])),
    }
    for i, repo in enumerate(repos):
        files[f"apps/a{i}/BUILD.yaml"] = f"""
            img:
              rule: image
              contexts: {{base: "//base"}}
            m:
              rule: manifest
              images: [":img"]
              tags: ["{host}/{repo}:v1"]
        """
        files[f"apps/a{i}/Dockerfile"] = "FROM base\nCOPY app.txt /app.txt\n"
        files[f"apps/a{i}/app.txt"] = f"app {i} of {repo}\n"
    ws.write(files)


def _base_layer(ws, index_digest: str) -> str:
    """The first layer of every image of the index (the same for both platforms)."""
    def blob(digest: str) -> dict:
        return json.loads(ws.path(f".graphbuild/oci/blobs/{digest.replace(':', '/')}")
                          .read_text())

    layers = {blob(m["digest"])["layers"][0]["digest"]
              for m in blob(index_digest)["manifests"]}
    assert len(layers) == 1, layers
    return layers.pop()


def _blob_traffic(registry, repos: list[str], digest: str) -> dict[str, int]:
    """From the access log: completed uploads of ``digest`` (the PUT closing an upload session),
    cross-repository mounts of it (POST ?mount= answered 201) and HEADs of it, over ``repos``."""
    counts = {"uploads": 0, "mounts": 0, "HEADs": 0}
    for i, repo in enumerate(repos):
        for method, path, status in registry.requests(repo, settle=0.3 if i == 0 else 0):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
            if method == "PUT" and query.get("digest") == [digest] and status // 100 == 2:
                counts["uploads"] += 1
            elif method == "POST" and query.get("mount") == [digest] and status == 201:
                counts["mounts"] += 1
            elif method == "HEAD" and path.endswith(f"/blobs/{digest}"):
                counts["HEADs"] += 1
    return counts


def test_shared_base_layer_is_uploaded_once_and_mounted_elsewhere(ws, registry):
    repos = [fx.unique_repo(f"shared{i}") for i in range(APPS)]
    _shared_base(ws, registry.host, repos)
    res = ws.run("run", "//...", "--push", "--output", "json")
    assert res.code == 0, res
    pushed = {e["ref"]: e["digest"] for e in res.events() if e["event"] == "pushed"}
    assert set(pushed) == {f"{registry.host}/{repo}:v1" for repo in repos}
    base = _base_layer(ws, pushed[f"{registry.host}/{repos[0]}:v1"])
    # HEADed by the node that uploaded it only: the others mount it straight away
    assert _blob_traffic(registry, repos, base) == {"uploads": 1, "mounts": APPS - 1,
                                                    "HEADs": 1}
    with RegistryClient(registry.host) as client:
        for repo in repos:
            assert client.blob_exists(repo, base)
            assert client.head_manifest(repo, "v1").digest == pushed[f"{registry.host}/{repo}:v1"]


def test_repush_uploads_nothing(ws, registry):
    repos = [fx.unique_repo(f"again{i}") for i in range(APPS)]
    _shared_base(ws, registry.host, repos)
    assert ws.run("run", "//...", "--push").code == 0, "first push"
    before = {repo: registry.requests(repo, settle=0.3 if i == 0 else 0)
              for i, repo in enumerate(repos)}
    res = ws.run("run", "//...", "--push", "--output", "json")
    assert res.code == 0, res
    assert not [e for e in res.events() if e["event"] == "pushed"]  # every tag left alone
    for i, repo in enumerate(repos):
        new = registry.requests(repo, settle=0.3 if i == 0 else 0)[len(before[repo]):]
        assert new, repo
        assert all(method == "HEAD" for method, _, _ in new), new  # no upload, mount or PUT


def test_failed_push_node_moves_no_tag(ws, registry, fault_proxy):
    """One repository refuses every upload and mount (403: not retried). The other push nodes
    finish (--keep-going), a blob the failed node had claimed first reaches them anyway, and
    no tag moves anywhere."""
    repos = [fx.unique_repo(f"txn{i}") for i in range(APPS)]
    bad = repos[0]
    fault_proxy.rules.append(fx.FaultRule("POST", f"^/v2/{bad}/blobs/uploads/", "403"))
    _shared_base(ws, fault_proxy.host, repos)
    res = ws.run("run", "//...", "--push", "--keep-going", "--output", "json")
    assert res.code == 1, res
    assert "nothing was tagged" in res.err
    assert not [e for e in res.events() if e["event"] == "pushed"]
    statuses = {e["node"]: e["status"] for e in res.events() if e["event"] == "action_finished"}
    pushes = {node: status for node, status in statuses.items() if node.endswith(" push")}
    assert sorted(pushes.values()) == ["built"] * (APPS - 1) + ["failed"], pushes
    assert fault_proxy.injected["403"] >= 1
    index = json.loads(ws.path(".graphbuild/oci/index.json").read_text())
    ref_name = f"{fault_proxy.host}/{repos[1]}:v1"
    digest = next(m["digest"] for m in index["manifests"]
                  if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref_name)
    base = _base_layer(ws, digest)
    with RegistryClient(registry.host) as client:
        for repo in repos:
            assert client.head_manifest(repo, "v1") is None, f"{repo}:v1 must not exist"
        for repo in repos[1:]:  # the good nodes got everything in, whoever claimed the base
            assert client.blob_exists(repo, base)
        assert client.head_manifest(repos[1], digest) is not None  # by digest, untagged


# -- the ledger on its own -------------------------------------------------------------------

def test_ledger_claims_once_and_waiters_learn_where_blobs_landed():
    from graphbuild.engine.remote import BlobLedger

    ledger = BlobLedger()
    first = ledger.claim([("r", "sha256:a"), ("r", "sha256:b")])
    second = ledger.claim([("r", "sha256:a"), ("r", "sha256:c"), ("other", "sha256:a")])
    assert first.owned == {("r", "sha256:a"), ("r", "sha256:b")}
    assert second.owned == {("r", "sha256:c"), ("other", "sha256:a")}  # per registry
    assert second.pending("r", "sha256:a") and not second.pending("r", "sha256:c")
    found: list = []
    waiter = threading.Thread(target=lambda: found.append(second.where("r", "sha256:a")))
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive(), "must wait for the blob the first claim is pushing"
    first.landed("r", "repo-1", "sha256:a", added=True)
    waiter.join(5)
    assert found == [(("r/repo-1",), True)]  # uploaded there: mounted without a HEAD
    first.release()
    second.release()
    third = ledger.claim([("r", "sha256:a")])
    assert not third.owned and third.where("r", "sha256:a") == (("r/repo-1",), True)
    fourth = ledger.claim([("r", "sha256:b"), ("r", "sha256:d")])
    fifth = ledger.claim([("r", "sha256:d")])
    fourth.landed("r", "repo-4", "sha256:d")  # found there, not added: HEAD first
    assert fifth.where("r", "sha256:d") == (("r/repo-4",), False)


def test_ledger_failed_claim_leaves_the_upload_to_the_waiter_and_can_be_claimed_again():
    from graphbuild.engine.remote import BlobLedger

    ledger = BlobLedger()
    first = ledger.claim([("r", "sha256:a")])
    second = ledger.claim([("r", "sha256:a")])
    found: list = []
    waiter = threading.Thread(target=lambda: found.append(second.where("r", "sha256:a")))
    waiter.start()
    first.release()  # its node failed before the blob landed
    waiter.join(5)
    assert found == [((), False)]  # no mount source: the waiter uploads it itself
    third = ledger.claim([("r", "sha256:a")])
    assert third.owned == {("r", "sha256:a")}


def test_ledger_wait_stops_when_the_run_is_interrupted():
    from graphbuild.engine.remote import BlobLedger
    from graphbuild.errors import BuildError

    ledger = BlobLedger()
    ledger.claim([("r", "sha256:a")])  # never released: its node hangs
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(BuildError, match="interrupted"):
        ledger.claim([("r", "sha256:a")], cancelled).where("r", "sha256:a")


def test_a_waiting_push_goes_ahead_with_its_own_blobs(registry):
    """``publish`` with a ledger claim as ``pending``: the blob another node claimed is waited
    for on a worker while this push's own blobs go up; once it has landed (uploaded by that
    node), it is mounted from there without a HEAD."""
    import io

    from graphbuild.engine.remote import BlobLedger
    from graphbuild.registry.transfer import PushPlan, PushTarget, blobs_of, publish

    theirs, mine = fx.unique_repo("theirs"), fx.unique_repo("mine")
    images = fx.ImageSet(fx.DictSource(), salt=mine)
    base = images.base["digest"]
    plan = PushPlan((PushTarget.to(f"{registry.host}/{mine}", [images.index],
                                   {"v1": images.index["digest"]}),))
    ledger = BlobLedger()
    first = ledger.claim([(registry.host, base)])
    claim = ledger.claim(blobs_of(plan, images.source))
    assert claim.owned == {(registry.host, d) for d in images.blob_digests() - {base}}
    client = RegistryClient(registry.host, retry=fx.fast_retry())
    results: list = []
    pusher = threading.Thread(target=lambda: results.append(publish(
        plan, images.source, {registry.host: client}, on_blob=claim.landed, pending=claim)))
    pusher.start()
    own = images.blob_digests() - {base}
    deadline = time.monotonic() + 60
    while not all(client.blob_exists(mine, d) for d in own) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(client.blob_exists(mine, d) for d in own), "its own blobs went ahead"
    assert pusher.is_alive() and not results, "it still waits for the base"
    client.upload_blob(theirs, base, images.base["size"],
                       lambda: io.BytesIO(images.source.blobs[base]))
    first.landed(registry.host, theirs, base, added=True)
    pusher.join(60)
    assert results and (results[0].blobs_mounted, results[0].blobs_uploaded) == (1, 4)
    assert results[0].tags_moved == [f"{registry.host}/{mine}:v1"]
    base_requests = [method for method, path, _ in registry.requests(mine)
                     if base.split(":")[1] in path]
    assert base_requests == ["POST"]  # the mount, no HEAD


# -- io-bound nodes run beyond -j ------------------------------------------------------------

def test_io_bound_nodes_are_not_limited_by_jobs(ws):
    """With -j 1, three io-bound nodes run at once (each waits for the other two at a barrier)
    while CPU-bound nodes still run one at a time."""
    from graphbuild import workspace
    from graphbuild.engine.digraph import DiGraph
    from graphbuild.engine.scheduler import Engine, Options, Scheduler
    from graphbuild.events import Events
    from graphbuild.labels import parse_label
    from graphbuild.rule_api import Action, Outcome

    barrier = threading.Barrier(3, timeout=10)
    cpu_running, cpu_peak = [0], [0]
    lock = threading.Lock()

    def io_run(rc):
        barrier.wait()
        return Outcome("io")

    def cpu_run(rc):
        with lock:
            cpu_running[0] += 1
            cpu_peak[0] = max(cpu_peak[0], cpu_running[0])
        time.sleep(0.05)
        with lock:
            cpu_running[0] -= 1
        return Outcome("cpu")

    actions, graph = {}, DiGraph()
    for i in range(3):
        for io in (True, False):
            action = Action(label=parse_label(f"//p:{'io' if io else 'cpu'}{i}"), platform=None,
                            rule="test", rule_version=1, mnemonic="Test", progress="",
                            run=io_run if io else cpu_run, cacheable=False, io_bound=io)
            actions[action.node] = action
            graph.add_node(action.node)
    engine = Engine(workspace.load(str(ws.root)), Events())
    try:
        summary = Scheduler(engine, graph, actions, Options(jobs=1)).run()
    finally:
        engine.close()
    assert {r.status for r in summary.results.values()} == {"built"}, summary.results
    assert cpu_peak[0] == 1
