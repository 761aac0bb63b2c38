"""The remote action cache (``remote_cache: oci://host/repo``) through the CLI, with two or
more workspace copies standing in for CI runners that share one real registry: the second
builds nothing and downloads no layer, pushes by mount, rebuilds exactly an edited target;
faults (registry down or failing, blobs deleted, corrupt entries, a read-only token) warn and
build correctly, never a false hit; shards and a final push."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import urllib.request

import pytest
import registry_fixtures as fx
from conftest import WorkspaceFixture
from registry_fixtures import unique_repo

registry = fx.registry
token_registry = fx.token_registry
fault_proxy = fx.fault_proxy

PLATFORMS = "[linux/amd64, linux/arm64]"


def _files(cache: str, tag_host: str | None = None, apps: int = 3) -> dict[str, str | bytes]:
    """A base image, ``apps`` images FROM it (one takes a command's output as a context), a
    manifest over the first; two platforms."""
    files: dict[str, str | bytes] = {
        "WORKSPACE.yaml": f"default_platforms: {PLATFORMS}\nremote_cache: oci://{cache}\n",
        "base/BUILD.yaml": "base:\n  rule: image\n",
        "base/Dockerfile": "FROM scratch\nCOPY base.bin /base.bin\n",
        "base/base.bin": fx.random_bytes(96 * 1024, seed=7),
        "gen/BUILD.yaml": "gen:\n  rule: command\n  cmd: echo generated > $OUT/gen.txt\n"
                          "  outs: [gen.txt]\n",
    }
    for i in range(apps):
        tags = f"  tags: ['{tag_host}/app{i}:{{arch}}']\n" if tag_host else ""
        files[f"app{i}/BUILD.yaml"] = (
            f"app:\n  rule: image\n  contexts: {{base: '//base', gen: '//gen'}}\n{tags}")
        files[f"app{i}/Dockerfile"] = "FROM base\nCOPY --from=gen gen.txt /gen.txt\nCOPY app /app\n"
        files[f"app{i}/app"] = f"app {i}\n"
    mtags = f"  tags: ['{tag_host}/app0:1.0']\n" if tag_host else ""
    files["app0/BUILD.yaml"] += f"m:\n  rule: manifest\n  images: [':app']\n{mtags}"
    return files


def _runner(tmp_path, name: str, files: dict) -> WorkspaceFixture:
    return WorkspaceFixture(tmp_path / name).write(files)


def _run(ws: WorkspaceFixture, *args: str) -> tuple[dict, list[dict], str]:
    """(counts, action_finished events, stderr) of a run that must succeed."""
    events = ws.root / "events.jsonl"
    res = ws.run("run", *args, "--events", str(events))
    assert res.code == 0, res
    evs = [json.loads(line) for line in events.read_text().splitlines()]
    done = next(e for e in evs if e["event"] == "build_finished")
    return done["counts"], [e for e in evs if e["event"] == "action_finished"], res.err


def _layers(ws: WorkspaceFixture) -> set[str]:
    """Every layer digest of the images in ``ws``'s store."""
    store = ws.root / ".graphbuild" / "oci"
    out = set()
    for blob in (store / "blobs" / "sha256").iterdir():
        try:
            doc = json.loads(blob.read_bytes())
        except ValueError:
            continue
        if isinstance(doc, dict) and "layers" in doc and doc.get("config", {}).get(
                "mediaType", "").endswith("config.v1+json"):
            out.update(layer["digest"] for layer in doc["layers"])
    return out


def _remote_only(ws: WorkspaceFixture) -> set[str]:
    """The blobs ``ws``'s store records as remote-only (a fresh Store reads the records)."""
    from graphbuild.oci.store import Store

    return Store(ws.root / ".graphbuild" / "oci").remote_digests()


def _blob_gets(registry, repo: str) -> set[str]:
    return {path.split("/blobs/")[1].split("?")[0]
            for _, path, status in registry.requests(repo, "GET", "blobs")}


def test_second_runner_builds_nothing_and_downloads_no_layer(tmp_path, registry):
    cache = f"{registry.host}/{unique_repo('cache')}"
    files = _files(cache)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    counts, _, err = _run(a, "//...")
    assert counts["built"] > 0 and "entries written" in err, err
    repo = cache.split("/", 1)[1]
    asked = len(registry.requests(repo, "GET", "manifests"))
    checked = len(registry.requests(repo, "HEAD", "blobs"))
    counts, evs, err = _run(b, "//...")
    assert counts["built"] == 0, counts
    assert {e["reason"] for e in evs} == {"remote cache hit"}, evs
    # every entry came from the scope's pack: one GET, none per key
    assert f"{len(evs)} hits ({len(evs)} from the pack)" in err, err
    gets = [path for _, path, _ in registry.requests(repo, "GET", "manifests")[asked:]]
    assert len(gets) == 1 and "/manifests/pack-" in gets[0], gets
    # only image layers are checked with a HEAD: attestations come embedded in the entries
    heads = {path.rsplit("/", 1)[1] for _, path, _ in
             registry.requests(repo, "HEAD", "blobs")[checked:]}
    assert heads and heads <= _layers(a), heads - _layers(a)
    stats = b.run("cache", "stats")
    assert f"last run: {len(evs)} hits ({len(evs)} from the pack)" in stats.out, stats
    layers = _layers(a)
    assert layers and not _blob_gets(registry, cache.split("/", 1)[1]) & layers
    assert not (b.root / ".graphbuild" / "oci" / "blobs" / "sha256").joinpath(
        min(layers)[7:]).exists()
    # the command's output is there to use; an image's layer is fetched when read
    assert (b.root / ".graphbuild" / "out" / "gen" / "gen@host" / "gen.txt").read_text() == \
        "generated\n"
    res = b.run("export", "//app1:app[linux/arm64]", "-o", str(tmp_path / "app1.tar"))
    assert res.code == 0, res
    # a third run of b is local: no lookups at all
    assert _run(b, "//...")[0]["built"] == 0
    stats = b.run("cache", "stats")  # the last run's figures: that third run asked nothing
    assert "remote cache" in stats.out and "last run: 0 hits" in stats.out, stats


def test_a_hit_writes_no_blob_until_one_is_read(tmp_path, registry):
    """A hit writes no blob into the store: what the entry embeds (indexes, manifests,
    configs, attestation records) is checked by digest and recorded as remote-only with its
    bytes, and put in the store when something reads it, with no download; `--download all`
    then makes the store's layout whole, as other OCI tools read it."""
    cache = f"{registry.host}/{unique_repo('cache')}"
    a, b = (_runner(tmp_path, n, _files(cache, apps=1)) for n in "ab")
    _run(a, "//...")
    repo = cache.split("/", 1)[1]
    got = len(registry.requests(repo, "GET", "blobs"))
    _run(b, "//...")
    from graphbuild.oci.store import Store

    store_a, store_b = (Store(w.root / ".graphbuild" / "oci") for w in (a, b))
    records = [e["digest"] for e in store_a.entries() if e.get("artifactType")]  # provenance
    assert len(records) == 4  # base and app0, two platforms each
    image = store_b.lookup("//app0:app[linux/amd64]")
    blobs = b.root / ".graphbuild" / "oci" / "blobs" / "sha256"
    assert not blobs.exists() or not list(blobs.iterdir())
    assert {*records, image["digest"]} <= _remote_only(b)
    assert _run(b, "//...")[0]["built"] == 0  # the no-op check takes the records as present
    read = {*records, image["digest"]}
    for digest in records:  # the record and its statement, as runner a made them
        doc = store_b.read_json(digest)
        assert doc == store_a.read_json(digest)
        statement = doc["layers"][0]["digest"]
        read.add(statement)
        assert store_b.read_bytes(statement) == store_a.read_bytes(statement)
        assert (blobs / digest[7:]).is_file() and (blobs / statement[7:]).is_file()
    manifest = store_b.read_json(image["digest"])
    assert manifest == store_a.read_json(image["digest"])
    assert store_b.read_bytes(manifest["config"]["digest"]) == \
        store_a.read_bytes(manifest["config"]["digest"])
    read.add(manifest["config"]["digest"])
    gets = {path.rsplit("/", 1)[1] for _, path, _ in registry.requests(repo, "GET", "blobs")[got:]}
    assert gets and not gets & read  # the pack and the command's tree only
    res = b.run("inspect", "//app0:app[linux/amd64]", "--referrers")  # lists a remote-only one
    assert res.code == 0, res
    listed = {r["digest"] for r in json.loads(res.out)["manifests"]}
    assert set(records) & listed, (records, listed)
    _run(b, "//...", "--download", "all")
    assert not _remote_only(b)
    layout = b.root / ".graphbuild" / "oci"  # read as another tool does: files only
    todo = json.loads((layout / "index.json").read_text())["manifests"]
    while todo:
        desc = todo.pop()
        data = (blobs / desc["digest"][7:]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
        if desc["mediaType"].endswith(("manifest.v1+json", "index.v1+json")):
            doc = json.loads(data)
            todo += doc.get("manifests", []) + [doc.get("config")] * ("config" in doc) + \
                doc.get("layers", [])


def test_an_edited_file_rebuilds_exactly_that_target(tmp_path, registry):
    cache = f"{registry.host}/{unique_repo('cache')}"
    files = _files(cache)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    _run(a, "//...")
    b.write({"app2/app": "app 2 changed\n"})
    _counts, evs, _ = _run(b, "//...")
    built = sorted(e["node"] for e in evs if e["status"] == "built")
    # its two platforms and the index over them
    assert built == ["//app2:app", "//app2:app[linux/amd64]", "//app2:app[linux/arm64]"], evs
    assert all(e["reason"].startswith("remote cache miss") for e in evs if e["status"] == "built")


def test_a_runner_after_an_edit_finds_the_edited_entries_in_the_new_pack(tmp_path, registry):
    cache = f"{registry.host}/{unique_repo('cache')}"
    files = _files(cache, apps=2)
    a, b, c = (_runner(tmp_path, name, files) for name in "abc")
    _run(a, "//...")
    for runner in (b, c):
        runner.write({"app1/app": "app 1 changed\n"})
    counts, _, err = _run(b, "//...")  # the pack is stale for app1: those are looked up
    assert counts["built"] == 3 and "from the pack" in err and "pack updated" in err, err
    counts, evs, err = _run(c, "//...")
    assert counts["built"] == 0 and f"{len(evs)} hits ({len(evs)} from the pack)" in err, err


def _repack(registry, repo: str, blob: bytes | None = None, change=None) -> None:
    """Replace each pack of ``repo``: its blob by ``blob``, or each entry copy by
    ``change(entry manifest)``."""
    import gzip

    from graphbuild.engine import remote_pack
    from graphbuild.registry.client import RegistryClient

    client = RegistryClient(registry.host)
    for tag in [t for t in client.list_tags(repo) if t.startswith("pack-")]:
        if change is not None:
            nodes, _ = remote_pack.read_pack(client, repo, tag)
            remote_pack.write_pack(client, repo, tag,
                                   {n: (k, change(doc)) for n, (k, doc) in nodes.items()})
            continue
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.upload_blob(repo, digest, len(blob), lambda: io.BytesIO(blob))
        manifest = json.loads(client.get_manifest(repo, tag)[0])
        manifest["layers"][0].update(digest=digest, size=len(blob))
        client.put_manifest(repo, tag, json.dumps(manifest).encode(),
                            "application/vnd.oci.image.manifest.v1+json")
    assert gzip  # the packs are gzip'd JSON; a blob that is not is a pack that does not parse


@pytest.mark.parametrize("blob", [b"not gzip", b"\x1f\x8b\x08\x00garbage"])
def test_a_pack_that_does_not_parse_warns_and_each_entry_is_looked_up(tmp_path, registry, blob):
    repo = unique_repo("cache")
    files = _files(f"{registry.host}/{repo}", apps=1)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    _run(a, "//...")
    _repack(registry, repo, blob=blob)
    counts, evs, err = _run(b, "//...")
    assert counts["built"] == 0 and {e["reason"] for e in evs} == {"remote cache hit"}, evs
    assert err.count("unusable") == 1 and "pack pack-" in err and "from the pack" not in err, err


def test_pack_copies_that_do_not_parse_fall_back_to_the_tags(tmp_path, registry):
    repo = unique_repo("cache")
    files = _files(f"{registry.host}/{repo}", apps=1)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    _run(a, "//...")
    _repack(registry, repo, change=lambda doc: {**doc, "annotations": {"x": "1"}})
    counts, evs, err = _run(b, "//...")
    assert counts["built"] == 0 and {e["reason"] for e in evs} == {"remote cache hit"}, evs
    assert "from the pack" not in err, err


def _push_hits(tmp_path, registry, tag_registry: str) -> tuple[WorkspaceFixture, str, str]:
    """Runner a fills the cache; runner b pushes its remote hits, tagged into
    ``tag_registry``, building nothing. Returns (runner a, cache ref, release repo prefix)."""
    cache = f"{registry.host}/{unique_repo('cache')}"
    rel = unique_repo("rel")
    files = _files(cache, tag_host=f"{tag_registry}/{rel}", apps=1)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    _run(a, "//...")
    counts, evs, _ = _run(b, "//...", "--push")
    assert counts["failed"] == 0
    assert not [e for e in evs if e["status"] == "built" and e["rule"] != "push"], evs
    return a, cache, rel


def test_push_of_remote_hits_mounts_and_uploads_no_layer(tmp_path, registry):
    a, cache, rel = _push_hits(tmp_path, registry, registry.host)
    target = f"{rel}/app0"
    uploads = registry.requests(target, "PUT", "blobs/uploads")
    layers = _layers(a)
    assert not [p for _, p, _ in uploads if any(d in p for d in layers)], uploads
    mounts = [p for _, p, _ in registry.requests(target, "POST", "blobs/uploads") if "mount=" in p]
    assert mounts, registry.requests(target)
    assert not _blob_gets(registry, cache.split("/", 1)[1]) & layers
    skopeo = fx.require_tool("skopeo")
    import subprocess

    out = subprocess.run([skopeo, "inspect", "--tls-verify=false", "--raw",
                          f"docker://{registry.host}/{target}:1.0"], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out)["mediaType"].endswith("index.v1+json")


def test_read_mode_does_not_write(tmp_path, registry):
    cache = f"{registry.host}/{unique_repo('cache')}"
    a = _runner(tmp_path, "a", _files(cache, apps=1))
    counts, _evs, err = _run(a, "//...", "--remote-cache", "read")
    assert counts["built"] > 0 and "entries written" not in err
    assert not registry.requests(cache.split("/", 1)[1], "PUT", "manifests")
    b = _runner(tmp_path, "b", _files(cache, apps=1))
    res = b.run("run", "//...")
    assert res.code == 0 and "0 hits" in res.err, res


def test_environment_chooses_the_mode_and_off_skips_the_cache(tmp_path, registry, monkeypatch):
    cache = f"{registry.host}/{unique_repo('cache')}"
    a = _runner(tmp_path, "a", _files(cache, apps=1))
    monkeypatch.setenv("GRAPHBUILD_REMOTE_CACHE", "off")
    res = a.run("run", "//...")
    assert res.code == 0 and "remote cache" not in res.err, res
    assert not registry.requests(cache.split("/", 1)[1])


def test_bad_mode_and_unconfigured_cache_are_exit_2(ws, monkeypatch):
    ws.write({"BUILD.yaml": "g:\n  rule: command\n  cmd: 'true'\n"})
    res = ws.run("run", "//:g", "--remote-cache", "read")
    assert res.code == 2 and "names no remote_cache" in res.err and "hint" in res.err, res
    monkeypatch.setenv("GRAPHBUILD_REMOTE_CACHE", "sometimes")
    res = ws.run("run", "//:g")
    assert res.code == 2 and "'sometimes'" in res.err and "Traceback" not in res.err, res


@pytest.mark.parametrize("value", ["oci://", "oci://127.0.0.1:5000", "oci://cache",
                                   "oci://127.0.0.1:5000/cache:v1", "http://x/y"])
def test_bad_remote_cache_url_is_exit_2_with_its_line(ws, value):
    ws.write({"WORKSPACE.yaml": f"jobs: 2\nremote_cache: '{value}'\n",
              "BUILD.yaml": "g:\n  rule: command\n  cmd: 'true'\n"})
    res = ws.run("run", "//:g")
    assert res.code == 2 and "WORKSPACE.yaml:2" in res.err and "remote_cache" in res.err, res
    assert "Traceback" not in res.err


# -- faults ----------------------------------------------------------------------------------

def test_cache_registry_down_warns_once_and_builds(tmp_path):
    files = _files(f"127.0.0.1:{fx.free_port()}/cache", apps=2)
    a = _runner(tmp_path, "a", files)
    counts, _, err = _run(a, "//...")
    assert counts["failed"] == 0 and counts["built"] > 0
    assert err.count("warning: remote cache") <= 2, err  # one for reading, one for writing
    assert "Traceback" not in err


def test_cache_answering_500_warns_and_builds(tmp_path, registry, fault_proxy):
    fault_proxy.rules += [fx.FaultRule("GET", "/manifests/", "500"),
                          fx.FaultRule("HEAD", "/", "500"), fx.FaultRule("PUT", "/", "500")]
    files = _files(f"{fault_proxy.host}/{unique_repo('cache')}", apps=2)
    a = _runner(tmp_path, "a", files)
    counts, _, err = _run(a, "//...")
    assert counts["failed"] == 0 and "warning: remote cache" in err, err
    # the writes retry within the run's budget: the first request of each read and write,
    # and the run's retries for that registry (75 requests without the budget)
    from graphbuild.registry.limits import RUN_RETRIES

    stats = json.loads((a.root / ".graphbuild" / "remote-cache-stats.json").read_text())
    firsts = stats["write_failures"] + stats["read_errors"]
    assert fault_proxy.injected["500"] <= firsts + RUN_RETRIES, stats


def _entries(registry, repo: str) -> dict[str, dict]:
    """tag -> entry manifest of a cache repository, through the registry API."""
    def get(path: str, accept: str = "") -> bytes:
        req = urllib.request.Request(f"http://{registry.host}/v2/{repo}/{path}",
                                     headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req) as resp:
            return resp.read()

    tags = json.loads(get("tags/list"))["tags"]
    return {t: json.loads(get(f"manifests/{t}", "application/vnd.oci.image.manifest.v1+json"))
            for t in tags if not t.startswith("pack-")}


def _drop_packs(registry, repo: str) -> None:
    """Delete the cache's packs, so a runner looks each entry up by its tag."""
    from graphbuild.registry.client import RegistryClient

    client = RegistryClient(registry.host)
    for tag in client.list_tags(repo):
        if tag.startswith("pack-"):
            _, _, digest = client.get_manifest(repo, tag)
            req = urllib.request.Request(f"http://{registry.host}/v2/{repo}/manifests/{digest}",
                                         method="DELETE")
            assert urllib.request.urlopen(req).status == 202


def test_an_entry_whose_layer_was_deleted_is_a_reported_miss(tmp_path, registry):
    repo = unique_repo("cache")
    files = _files(f"{registry.host}/{repo}", apps=1)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    _run(a, "//...")
    base_layers = _layers(a)
    victim = next(d for entry in _entries(registry, repo).values()
                  for layer in entry["layers"] for d in [layer["digest"]] if d in base_layers)
    req = urllib.request.Request(f"http://{registry.host}/v2/{repo}/blobs/{victim}",
                                 method="DELETE")
    assert urllib.request.urlopen(req).status == 202
    _counts, evs, _ = _run(b, "//...")
    unusable = [e for e in evs if "entry unusable" in e["reason"]]
    assert unusable and all(e["status"] == "built" for e in unusable), evs
    assert b.run("export", "//app0:app[linux/amd64]", "-o", str(tmp_path / "x.tar")).code == 0


def _rewrite_entries(tmp_path, registry, change) -> WorkspaceFixture:
    """Runner a fills a cache; ``change(outcome annotation) -> new annotation or None`` is
    applied to each entry through the registry API; returns runner b, not yet run."""
    from graphbuild.registry.client import RegistryClient

    repo = unique_repo("cache")
    files = _files(f"{registry.host}/{repo}", apps=1)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    _run(a, "//...")
    _drop_packs(registry, repo)
    client = RegistryClient(registry.host)
    for tag, entry in _entries(registry, repo).items():
        changed = change(entry["annotations"]["dev.graphbuild.outcome"])
        if changed is not None:
            entry["annotations"]["dev.graphbuild.outcome"] = changed
            client.put_manifest(repo, tag, json.dumps(entry).encode(),
                                "application/vnd.oci.image.manifest.v1+json")
    return b


def test_an_entry_with_corrupt_json_is_a_reported_miss(tmp_path, registry):
    b = _rewrite_entries(tmp_path, registry, lambda _: "{not json")
    counts, evs, _ = _run(b, "//...")
    assert counts["cached"] == 0 and counts["failed"] == 0
    assert all("entry unusable" in e["reason"] for e in evs), evs


def test_an_entry_pointing_at_other_content_is_never_a_hit(tmp_path, registry):
    """A poisoned entry whose outcome names a tree it does not carry: the tree is checked."""
    def poison(text: str) -> str | None:
        outcome = json.loads(text)
        if "tree" not in outcome["data"]:
            return None
        outcome["digest"] = outcome["data"]["tree"] = "sha256:" + "ab" * 32
        return json.dumps(outcome)

    b = _rewrite_entries(tmp_path, registry, poison)
    counts, evs, _ = _run(b, "//gen")
    assert counts["built"] == 1 and "entry unusable" in evs[0]["reason"], evs


def test_an_entry_that_misstates_a_blobs_size_is_never_a_hit(tmp_path, registry):
    """The outcome's descriptor is not covered by a digest: a size other than its embedded
    bytes' makes the entry unusable (the size is recorded and trusted from then on)."""
    def grow(text: str) -> str | None:
        outcome = json.loads(text)
        if "descriptor" not in outcome["data"]:
            return None
        outcome["data"]["descriptor"]["size"] += 7
        return json.dumps(outcome)

    b = _rewrite_entries(tmp_path, registry, grow)
    _, evs, _ = _run(b, "//...")
    images = [e for e in evs if e["mnemonic"] == "Image"]
    assert images and all(e["status"] == "built" for e in images), images
    assert all("entry unusable" in e["reason"] and "size" in e["reason"] for e in images)


def test_a_hit_from_another_cache_rerecords_where_its_blobs_are(tmp_path, registry):
    """A runner's records of layers in cache 1; the workspace moves to cache 2 and cache 1
    loses them: a hit from cache 2 records them there, so reading them works."""
    import urllib.request

    repo1, repo2 = unique_repo("cache"), unique_repo("cache")
    f1 = _files(f"{registry.host}/{repo1}", apps=1)
    f2 = {**_files(f"{registry.host}/{repo2}", apps=1), "app0/app": "app 0 v2\n"}
    a = _runner(tmp_path, "a", f1)
    _run(a, "//...")
    b = _runner(tmp_path, "b", f1)
    _run(b, "//...")  # b records the layers in cache 1
    c = _runner(tmp_path, "c", f2)
    _run(c, "//...")  # cache 2 holds them too, with entries of its own
    shared = _layers(a) & _layers(c)
    assert shared
    for digest in shared:
        req = urllib.request.Request(f"http://{registry.host}/v2/{repo1}/blobs/{digest}",
                                     method="DELETE")
        assert urllib.request.urlopen(req).status == 202
    b.write({"WORKSPACE.yaml": f2["WORKSPACE.yaml"], "app0/app": f2["app0/app"]})
    counts, _, _ = _run(b, "//...")
    assert counts["built"] == 0, counts
    res = b.run("export", "//app0:app[linux/amd64]", "-o", str(tmp_path / "x.tar"))
    assert res.code == 0, res


def test_the_skopeo_hint_after_remote_hits_says_when_it_works(tmp_path, registry):
    """After remote hits the layout lacks the manifests other tools read until they are
    written: the hint says so, and after `--download all` it is the plain command, which
    works."""
    skopeo = fx.require_tool("skopeo")
    files = _files(f"{registry.host}/{unique_repo('cache')}", tag_host="example.com", apps=1)
    _run(_runner(tmp_path, "a", files), "//...")
    b = _runner(tmp_path, "b", files)

    def hint(*extra: str) -> str:
        res = b.run("run", "//app0:m", *extra)
        assert res.code == 0, res
        return next(line for line in res.err.splitlines() if "skopeo inspect" in line)

    assert "once written: `graphbuild run --download all`" in hint()
    plain = hint("--download", "all")
    assert plain.endswith(":example.com/app0:1.0"), plain
    ref = plain.split("skopeo inspect ", 1)[1]
    proc = subprocess.run([skopeo, "inspect", "--raw", ref], check=False,  # relative to here
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_read_only_token_reads_warns_once_and_builds(tmp_path, token_registry, monkeypatch):
    """CI's pull-request token may pull the cache but not push: the writes fail with one
    warning, the build succeeds, and a runner with a writing token fills the cache for it."""
    import base64

    server, tokens = token_registry
    tokens.users["reader"] = "reader-pw"
    tokens.read_only.add("reader")
    cache = f"{server.host}/{unique_repo('cache')}"
    files = _files(cache, apps=2)

    def login(user: str, password: str) -> None:
        config = tmp_path / f"docker-{user}"
        config.mkdir(exist_ok=True)
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {server.host: {"auth": auth}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(config))

    login("reader", "reader-pw")
    counts, _, err = _run(_runner(tmp_path, "pr", files), "//...")
    assert counts["failed"] == 0 and counts["built"] > 0
    assert err.count("warning: remote cache") == 1 and "writing to it failed" in err, err
    login(fx.TOKEN_USER, fx.TOKEN_PASSWORD)
    _run(_runner(tmp_path, "main", files), "//...")
    login("reader", "reader-pw")
    counts, _, err = _run(_runner(tmp_path, "pr2", files), "//...")
    assert counts["built"] == 0 and "warning" not in err, err


# -- shards ----------------------------------------------------------------------------------

def test_three_shards_then_a_final_push_builds_nothing_and_matches_one_machine(tmp_path,
                                                                           registry):
    repo = unique_repo("cache")
    rel = f"{registry.host}/{unique_repo('rel')}"
    files = _files(f"{registry.host}/{repo}", tag_host=rel, apps=4)
    owned = 0
    for i in (1, 2, 3):  # one after another here; on CI at once (then each builds its own)
        runner = _runner(tmp_path, f"s{i}", files)
        counts, evs, err = _run(runner, "//...", "--shard", f"{i}/3")
        mine, total = re.search(rf"shard {i}/3: (\d+) of (\d+) nodes", err).groups()
        owned += int(mine)
        assert counts["failed"] == 0
    assert owned == int(total)
    final = _runner(tmp_path, "final", files)
    seen = len(registry.requests(repo, "GET", "blobs"))
    counts, evs, _ = _run(final, "//...", "--push")
    assert [e["node"] for e in evs if e["status"] == "built" and e["rule"] != "push"] == []
    assert counts["failed"] == 0 and any(e["rule"] == "push" for e in evs)
    layers = set().union(*(_layers(_runner(tmp_path, f"s{i}", files)) for i in (1, 2, 3)))
    fetched = {path.split("/blobs/")[1] for _, path, _ in
               registry.requests(repo, "GET", "blobs")[seen:]}
    assert layers and not fetched & layers, fetched & layers
    one = _runner(tmp_path, "one", {**files, "WORKSPACE.yaml":
                                    f"default_platforms: {PLATFORMS}\n"})
    _run(one, "//...")
    for node in ("//app0:m", "//app1:app", "//app3:app"):
        assert _digest(final, node) == _digest(one, node), node


def _digest(ws: WorkspaceFixture, node: str) -> str:
    from graphbuild.oci.store import Store

    return Store(ws.root / ".graphbuild" / "oci").lookup(node)["digest"]


def test_shard_with_push_and_bad_shard_are_exit_2(ws):
    ws.write({"BUILD.yaml": "g:\n  rule: command\n  cmd: 'true'\n"})
    for args, words in ((("--shard", "1/2", "--push"), "cannot --push"),
                        (("--shard", "3/2"), "1 <= I <= N"), (("--shard", "x"), "I/N")):
        res = ws.run("run", "//:g", *args)
        assert res.code == 2 and words in res.err and "Traceback" not in res.err, (args, res)


def test_shards_partition_the_nodes_deterministically():
    from graphbuild.engine.shards import share

    nodes = [f"//p{i}:t[linux/amd64]" for i in range(10)]
    parts = [share(nodes, i, 3, {}) for i in (1, 2, 3)]
    assert sorted(n for p in parts for n in p) == sorted(nodes)
    assert [len(p) for p in parts] in ([4, 3, 3],)
    assert parts == [share(list(reversed(nodes)), i, 3, {}) for i in (1, 2, 3)]
    timed = {n: (10.0 if n == nodes[0] else 1.0) for n in nodes}
    heavy = [share(nodes, i, 3, timed) for i in (1, 2, 3)]
    assert heavy[0] == {nodes[0]}  # the 10 s node has a share to itself


def test_platform_and_shard_go_together(tmp_path, registry):
    files = _files(f"{registry.host}/{unique_repo('cache')}", apps=2)
    a = _runner(tmp_path, "a", files)
    _counts, evs, _ = _run(a, "//...", "--platform", "linux/arm64", "--shard", "1/2")
    assert all("amd64" not in e["node"] for e in evs), evs


def test_runner_home_and_cache_dir_are_separate_in_a_subprocess(tmp_path, registry):
    cache = f"{registry.host}/{unique_repo('cache')}"
    files = _files(cache, apps=1)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    for ws, home in ((a, "home-a"), (b, "home-b")):
        (tmp_path / home).mkdir()
        res = ws.run_subprocess("run", "//...", env={"HOME": str(tmp_path / home)})
        assert res.code == 0, res
    assert "0 misses" in res.err and "remote cache" in res.err, res.err


def test_download_all_fetches_every_layer(tmp_path, registry):
    cache = f"{registry.host}/{unique_repo('cache')}"
    files = _files(cache, apps=1)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    _run(a, "//...")
    _run(b, "//...", "--download", "all")
    blobs = b.root / ".graphbuild" / "oci" / "blobs" / "sha256"
    assert all((blobs / d[7:]).exists() for d in _layers(a))
    assert not _remote_only(b)


def test_gc_keeps_remote_only_records_that_outputs_need(tmp_path, registry):
    cache = f"{registry.host}/{unique_repo('cache')}"
    files = _files(cache, apps=1)
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    _run(a, "//...")
    _run(b, "//...")
    before = _remote_only(b)
    assert before
    assert b.run("cache", "gc").code == 0
    assert _remote_only(b) == before
    assert b.run("export", "//app0:app[linux/amd64]", "-o", str(tmp_path / "y.tar")).code == 0


def test_a_build_that_reads_a_remote_only_base_layer_fetches_it(tmp_path, registry):
    """`COPY --chown=NAME` reads /etc/passwd from the base image: on a runner where the base
    was a remote hit, its layer is fetched then (and checked by digest), not before."""
    repo = unique_repo("cache")
    files = {
        "WORKSPACE.yaml": f"default_platforms: [linux/amd64]\nremote_cache: oci://{registry.host}/{repo}\n",
        "base/BUILD.yaml": "base:\n  rule: image\n",
        "base/Dockerfile": "FROM scratch\nCOPY passwd /etc/passwd\n",
        "base/passwd": "root:x:0:0::/root:/bin/sh\nsvc:x:1234:1234::/home/svc:/bin/sh\n",
        "app/BUILD.yaml": "app:\n  rule: image\n  contexts: {base: '//base'}\n",
        "app/Dockerfile": "FROM base\nCOPY --chown=svc app /app\n",
        "app/app": "v1\n",
    }
    a, b = _runner(tmp_path, "a", files), _runner(tmp_path, "b", files)
    _run(a, "//...")
    base_layers = _layers(a)
    seen = len(registry.requests(repo, "GET", "blobs"))
    b.write({"app/app": "v2\n"})
    _counts, evs, _ = _run(b, "//...")
    assert [e["node"] for e in evs if e["status"] == "built"] == ["//app:app[linux/amd64]"], evs
    fetched = {p.split("/blobs/")[1] for _, p, _ in registry.requests(repo, "GET", "blobs")[seen:]}
    assert fetched & base_layers
    res = b.run("export", "//app:app", "-o", str(tmp_path / "app.tar"))
    assert res.code == 0, res


def test_push_of_remote_hits_to_another_registry_streams_the_layers_through(tmp_path, registry,
                                                                            fault_proxy):
    """The proxy is another registry as far as names go (another host:port): no
    cross-repository mount reaches it, so the layers come down from the cache and go up."""
    a, cache, rel = _push_hits(tmp_path, registry, fault_proxy.host)
    layers = _layers(a)
    assert _blob_gets(registry, cache.split("/", 1)[1]) & layers  # downloaded from the cache
    uploaded = registry.requests(f"{rel}/app0", "PUT", "blobs/uploads")
    assert [p for _, p, _ in uploaded if any(d.replace(":", "%3A") in p or d in p
                                             for d in layers)], uploaded
