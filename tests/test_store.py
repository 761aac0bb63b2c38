"""The content store: blobs, index.json refs, graph walking, gc, and real OCI tools reading it."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import pytest
from oci_schema import put_image, require_tool, two_platform_index, validate, validate_store

from graphbuild.oci import mediatypes as mt
from graphbuild.oci.jsoncanon import canonical_json
from graphbuild.oci.store import BlobCorrupt, BlobNotFound, Store

# Arbitrary JSON blobs in these tests: not OCI configs, so the schemas leave them alone.
TEST_JSON = "application/vnd.dev.graphbuild.test+json"
EMPTY_SHA = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "oci")


def run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stderr}"
    return proc


# -- layout -----------------------------------------------------------------------------------


def test_constructing_a_store_creates_nothing(tmp_path: Path) -> None:
    Store(tmp_path / "oci")
    assert not (tmp_path / "oci").exists()


def test_first_write_creates_a_valid_layout(store: Store) -> None:
    store.put_bytes(b"hello")
    assert (store.root / "blobs" / "sha256").is_dir()
    validate("layout", json.loads((store.root / "oci-layout").read_text()))
    validate("index", json.loads((store.root / "index.json").read_text()))


def test_existing_layout_is_not_rewritten(store: Store) -> None:
    store.put_bytes(b"x")
    store.set_refs("//a:b", store.put_json({"k": 1}, TEST_JSON), ["a:b"])
    before = (store.root / "index.json").stat()
    again = Store(store.root)
    again.put_bytes(b"y")
    after = (store.root / "index.json").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


# -- blobs ------------------------------------------------------------------------------------


def test_put_and_read_bytes(store: Store) -> None:
    digest, size = store.put_bytes(b"")
    assert (digest, size) == (EMPTY_SHA, 0)
    assert store.has_blob(digest) and store.read_bytes(digest) == b""
    assert store.blob_path(digest) == store.root / "blobs" / "sha256" / digest[7:]
    assert store.put_bytes(b"") == (digest, 0)  # idempotent


def test_put_json_is_canonical(store: Store) -> None:
    desc = store.put_json({"b": [1, "é"], "a": None}, mt.OCI_CONFIG)
    validate("descriptor", desc)
    assert store.read_bytes(desc["digest"]) == '{"a":null,"b":[1,"é"]}'.encode()
    assert store.read_json(desc["digest"]) == {"a": None, "b": [1, "é"]}
    assert desc == store.put_json({"a": None, "b": [1, "é"]}, mt.OCI_CONFIG)


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_blob_writer_streams_and_commits(store: Store) -> None:
    with store.blob_writer() as w:
        for _ in range(3):
            w.write(b"a" * 1000)
    assert w.size == 3000 and store.read_bytes(w.digest) == b"a" * 3000
    assert list(store.tmp_dir().iterdir()) == []


def test_blob_writer_discards_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.blob_writer() as w:
        w.write(b"partial")
        raise RuntimeError("backend died")
    assert list(store.tmp_dir().iterdir()) == []
    assert list((store.root / "blobs" / "sha256").iterdir()) == []


def test_blob_writer_rejects_wrong_digest(store: Store) -> None:
    with pytest.raises(BlobCorrupt), store.blob_writer(EMPTY_SHA) as w:
        w.write(b"not empty")
    assert not store.has_blob(EMPTY_SHA) and list(store.tmp_dir().iterdir()) == []


def test_add_file_verifies_and_moves(store: Store) -> None:
    tmp = store.tmp_dir() / "layer"
    tmp.write_bytes(b"content")
    digest, size = store.add_file(tmp)
    assert size == 7 and not tmp.exists() and store.verify_blob(digest)


def test_add_file_rejects_corrupt_content(store: Store) -> None:
    tmp = store.tmp_dir() / "layer"
    tmp.write_bytes(b"tampered")
    with pytest.raises(BlobCorrupt, match=EMPTY_SHA):
        store.add_file(tmp, expected_digest=EMPTY_SHA)
    assert not tmp.exists() and not store.has_blob(EMPTY_SHA)


def test_put_bytes_rejects_wrong_expected_digest(store: Store) -> None:
    with pytest.raises(BlobCorrupt):
        store.put_bytes(b"abc", expected_digest=EMPTY_SHA)


def test_verify_blob_detects_corruption_on_disk(store: Store) -> None:
    digest, _ = store.put_bytes(b"good")
    path = store.blob_path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"bad!")
    assert not store.verify_blob(digest)
    assert not store.verify_blob(EMPTY_SHA)  # absent


@pytest.mark.parametrize(
    "bad", ["sha256:../../etc/passwd", "sha512:" + "a" * 128, "a" * 64, "sha256:" + "A" * 64]
)
def test_bad_digests_never_become_paths(store: Store, bad: str) -> None:
    with pytest.raises(ValueError):
        store.blob_path(bad)


def test_open_missing_blob(store: Store) -> None:
    with pytest.raises(BlobNotFound):
        store.read_bytes(EMPTY_SHA)


# -- index.json -------------------------------------------------------------------------------


def test_set_refs_writes_label_and_tag_entries(store: Store) -> None:
    index, _, _ = two_platform_index(store)
    store.set_refs("//app:img", index, ["myapp:v1", "127.0.0.1:5000/myapp:v1"], {"x.y": "z"})
    entries = store.entries()
    assert [e["annotations"].get(mt.REF_NAME) for e in entries] == [
        None,
        "127.0.0.1:5000/myapp:v1",
        "myapp:v1",
    ]
    assert all(e["annotations"][mt.LABEL] == "//app:img" for e in entries)
    assert all(e["annotations"]["x.y"] == "z" and e["digest"] == index["digest"] for e in entries)
    assert store.lookup("myapp:v1")["annotations"][mt.REF_NAME] == "myapp:v1"
    assert mt.REF_NAME not in store.lookup("//app:img")["annotations"]
    assert store.lookup("nope:v1") is None
    validate_store(store)


def test_set_refs_replaces_the_labels_entries(store: Store) -> None:
    first = put_image(store, "amd64")
    second = put_image(store, "arm64", variant="v8")
    store.set_refs("//app:img", first, ["myapp:v1", "myapp:old"])
    store.set_refs("//app:img", second, ["myapp:v1"])
    assert {e["digest"] for e in store.entries()} == {second["digest"]}
    assert store.lookup("myapp:old") is None
    assert len(store.entries()) == 2


def test_a_tag_names_one_thing(store: Store) -> None:
    one, two = put_image(store, "amd64"), put_image(store, "arm64", variant="v8")
    store.set_refs("//a:one", one, ["shared:latest", "one:v1"])
    store.set_refs("//b:two", two, ["shared:latest"])
    assert store.lookup("shared:latest")["digest"] == two["digest"]
    assert store.lookup("one:v1")["digest"] == one["digest"]
    assert store.lookup("//a:one")["digest"] == one["digest"]  # its label entry stays
    refs = [e["annotations"].get(mt.REF_NAME) for e in store.entries()]
    assert refs.count("shared:latest") == 1


def test_index_json_is_deterministic(tmp_path: Path) -> None:
    stores = [Store(tmp_path / "a"), Store(tmp_path / "b")]
    for s, order in zip(stores, (["x", "y", "z"], ["z", "x", "y"]), strict=True):
        for name in order:
            desc = s.put_json({"n": name}, TEST_JSON)
            s.set_refs(f"//p:{name}", desc, [f"{name}:v1", f"reg.io/{name}:v1"])
    a, b = ((s.root / "index.json").read_bytes() for s in stores)
    assert a == b


@pytest.mark.parametrize("tag", ["", "UPPER CASE:v1", "a//b", "-lead", "x:"])
def test_set_refs_rejects_invalid_tags(store: Store, tag: str) -> None:
    desc = store.put_json({}, TEST_JSON)
    with pytest.raises(ValueError):
        store.set_refs("//a:b", desc, [tag])


def _set_many(root: str, worker: int, count: int) -> None:
    store = Store(root)
    for i in range(count):
        desc = store.put_json({"worker": worker, "i": i}, TEST_JSON)
        store.set_refs(f"//w{worker}:t{i}", desc, [f"w{worker}:t{i}"])


def test_concurrent_set_refs_lose_nothing(tmp_path: Path) -> None:
    root = str(tmp_path / "oci")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_set_many, args=(root, w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store(root)
    assert len(store.entries()) == 4 * 15 * 2
    assert all(store.lookup(f"w{w}:t{i}") for w in range(4) for i in range(15))
    validate_store(store)


# -- graph ------------------------------------------------------------------------------------


def test_walk_visits_index_manifests_configs_and_layers(store: Store) -> None:
    index, _, _ = two_platform_index(store)
    types = [d["mediaType"] for d in store.walk(index)]
    assert types == [
        mt.OCI_INDEX,
        mt.OCI_MANIFEST,
        mt.OCI_CONFIG,
        mt.OCI_LAYER_GZIP,
        mt.OCI_MANIFEST,
        mt.OCI_CONFIG,
        mt.OCI_LAYER_GZIP,
    ]
    assert store.missing_blobs(index) == []


def test_walk_visits_a_shared_blob_once(store: Store) -> None:
    one = put_image(store, "amd64", files={"same": b"1"})
    two = put_image(store, "arm64", files={"same": b"1"}, variant="v8")
    index = store.put_json(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [one, two]}, mt.OCI_INDEX
    )
    digests = [d["digest"] for d in store.walk(index)]
    assert len(digests) == len(set(digests)) == 6


def test_missing_blobs(store: Store) -> None:
    index, amd64, arm64 = two_platform_index(store)
    layer = store.read_json(amd64["digest"])["layers"][0]["digest"]
    store.blob_path(layer).unlink()
    store.blob_path(arm64["digest"]).unlink()
    assert store.missing_blobs(index) == [layer, arm64["digest"]]
    with pytest.raises(BlobNotFound):
        list(store.walk(index))


# -- gc and stats -----------------------------------------------------------------------------


def test_gc_removes_unreachable_blobs_and_stale_tmp(store: Store) -> None:
    index, _, _ = two_platform_index(store)
    store.set_refs("//app:img", index, ["myapp:v1"])
    orphan, orphan_size = store.put_bytes(b"orphan")
    stale = store.tmp_dir() / "blob-stale"
    stale.write_bytes(b"12345")
    os.utime(stale, (time.time() - 7200,) * 2)
    fresh = store.tmp_dir() / "blob-fresh"
    fresh.write_bytes(b"in progress")
    before = store.stats()

    assert store.gc(dry_run=True) == (2, orphan_size + 5)
    assert store.has_blob(orphan) and stale.exists()
    assert store.gc() == (2, orphan_size + 5)
    assert not store.has_blob(orphan) and not stale.exists() and fresh.exists()
    assert store.missing_blobs(index) == []
    assert store.stats() == {
        **before,
        "blobs": before["blobs"] - 1,
        "bytes": before["bytes"] - orphan_size,
    }
    validate_store(store)


def test_gc_keeps_extra_roots(store: Store) -> None:
    image = put_image(store, "amd64")  # recorded only by, say, the action cache
    assert store.gc(extra_roots=[image]) == (0, 0)
    assert store.missing_blobs(image) == []
    removed, _ = store.gc()
    assert removed == 3 and store.missing_blobs(image) == [image["digest"]]


def test_blob_size(store: Store) -> None:
    digest, _ = store.put_bytes(b"12345")
    assert store.blob_size(digest) == 5
    with pytest.raises(BlobNotFound):
        store.blob_size(EMPTY_SHA)


def test_stats(store: Store) -> None:
    assert store.stats() == {"blobs": 0, "bytes": 0, "entries": 0, "remote_only": 0}
    store.put_bytes(b"abc")
    store.set_refs("//a:b", store.put_json({}, TEST_JSON), [])
    assert store.stats() == {"blobs": 2, "bytes": 5, "entries": 1, "remote_only": 0}


# -- real OCI tools ---------------------------------------------------------------------------


@pytest.fixture
def tagged(store: Store) -> tuple[Store, dict, dict]:
    index, amd64, _ = two_platform_index(store)
    store.set_refs("//app:img", index, ["myapp:v1", "127.0.0.1:5000/myapp:v1"])
    store.set_refs("//app:img_amd64", amd64, ["myapp:amd64"])
    validate_store(store)
    return store, index, amd64


def test_skopeo_reads_the_store(tagged: tuple[Store, dict, dict]) -> None:
    require_tool("skopeo")
    store, index, _ = tagged
    raw = run("skopeo", "inspect", "--raw", f"oci:{store.root}:myapp:v1").stdout
    assert raw.encode() == store.read_bytes(index["digest"])
    info = json.loads(run("skopeo", "inspect", f"oci:{store.root}:127.0.0.1:5000/myapp:v1").stdout)
    assert info["Digest"] == index["digest"]


def test_skopeo_copy_all_keeps_the_index_digest(
    tagged: tuple[Store, dict, dict], tmp_path: Path
) -> None:
    require_tool("skopeo")
    store, index, _ = tagged
    copy = f"oci:{tmp_path / 'copy'}:myapp:v1"
    run("skopeo", "copy", "--all", f"oci:{store.root}:myapp:v1", copy)
    copied = json.loads((tmp_path / "copy" / "index.json").read_text())
    assert [m["digest"] for m in copied["manifests"]] == [index["digest"]]
    assert Store(tmp_path / "copy").missing_blobs(index) == []


def test_umoci_unpacks_a_platform_image(tagged: tuple[Store, dict, dict], tmp_path: Path) -> None:
    require_tool("umoci")
    store, _, _ = tagged
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{store.root}:myapp:amd64", str(bundle))
    assert (bundle / "rootfs" / "etc" / "arch").read_bytes() == b"amd64\n"
    runtime = json.loads((bundle / "config.json").read_text())
    assert runtime["process"]["args"] == ["/bin/sh"]


def test_add_file_verified_skips_rehash_but_needs_the_digest(tmp_path):
    """Our own layer writer hashed the bytes already: the file is moved in as is, named by the
    digest it computed; without that digest the call is refused."""
    import hashlib

    import pytest

    from graphbuild.oci.store import Store

    store = Store(tmp_path / "oci")
    data = b"layer bytes"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    tmp = store.tmp_dir() / "w"
    tmp.write_bytes(data)
    assert store.add_file(tmp, digest, verified=True) == (digest, len(data))
    assert store.read_bytes(digest) == data and not tmp.exists()
    tmp.write_bytes(data)
    with pytest.raises(ValueError):
        store.add_file(tmp, verified=True)


def test_set_refs_many_equals_set_refs_one_by_one(tmp_path: Path) -> None:
    """The linear-time batch gives what applying each item in turn gives, for items that
    share labels and tags with each other and with entries already there."""
    import random

    rng = random.Random(3)
    one, many = Store(tmp_path / "one"), Store(tmp_path / "many")
    descs = [one.put_json({"n": i}, TEST_JSON) for i in range(6)]
    for s in (many,):
        for i in range(6):
            s.put_json({"n": i}, TEST_JSON)
    for round_ in range(20):
        items = [(f"//p:{rng.randrange(4)}", rng.choice(descs),
                  rng.sample(["a", "b", "c", "d", "e"], rng.randrange(3))) for _ in range(8)]
        for label, desc, tags in items:
            one.set_refs(label, desc, tags)
        many.set_refs_many(items)
        assert many.entries() == one.entries(), round_


# -- remote-only records ----------------------------------------------------------------------


def _desc(data: bytes, media_type: str = TEST_JSON) -> dict:
    import hashlib

    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data)}


def test_remote_records_are_one_journal_and_another_store_sees_new_ones(tmp_path: Path) -> None:
    """A hit's records are appended to one file (no file per blob), and a Store that read the
    records before (a concurrent build) finds what was appended since."""
    early = Store(tmp_path / "oci")
    assert early.remote_digests() == set()
    writer = Store(tmp_path / "oci")
    blobs = [_desc(f"layer {i}".encode(), mt.OCI_LAYER_GZIP) for i in range(5)]
    writer.mark_remote_many([(d, None) for d in blobs], "reg.example", "cache")
    assert os.listdir(tmp_path / "oci" / ".remote") == ["records.jsonl"]
    record = early.remote_record(blobs[3]["digest"])
    assert record and (record["registry"], record["repository"], record["size"]) == \
        ("reg.example", "cache", blobs[3]["size"])
    assert early.remote_digests() == {d["digest"] for d in blobs}
    assert early.check_blob(blobs[0]["digest"], blobs[0]["size"]) is None
    assert "missing" in early.check_blob(_desc(b"other")["digest"])
    with pytest.raises(BlobNotFound, match="cannot reach it"):  # no network for this command
        early.read_bytes(blobs[0]["digest"])


def test_a_record_with_bytes_is_put_in_place_on_first_read_checked(tmp_path: Path) -> None:
    store = Store(tmp_path / "oci")
    good, bad = b'{"good": 1}', b'{"bad": 1}'
    store.mark_remote_many([(_desc(good), good), (_desc(bad), b'{"BAD": 1}')], "r", "c")
    blob = store.blob_path(_desc(good)["digest"])
    assert not blob.exists()
    fresh = Store(tmp_path / "oci")  # from the journal, not from memory
    assert fresh.read_bytes(_desc(good)["digest"]) == good and blob.is_file()
    assert fresh.remote_record(_desc(good)["digest"]) is None  # in the store now
    # bytes that are not the blob's are never stored: it must be fetched (here it cannot be)
    with pytest.raises(BlobNotFound):
        fresh.read_bytes(_desc(bad)["digest"])
    assert not store.blob_path(_desc(bad)["digest"]).exists()


def test_a_torn_journal_line_is_skipped(tmp_path: Path) -> None:
    store = Store(tmp_path / "oci")
    one, two = _desc(b"one", mt.OCI_LAYER_GZIP), _desc(b"two", mt.OCI_LAYER_GZIP)
    store.mark_remote_many([(one, None)], "r", "c")
    with open(tmp_path / "oci" / ".remote" / "records.jsonl", "ab") as f:
        f.write(b'{"digest": "sha256:12\n')  # a crash mid-append
    store.mark_remote_many([(two, None)], "r", "c")
    assert Store(tmp_path / "oci").remote_digests() == {one["digest"], two["digest"]}


def test_a_line_cut_short_does_not_swallow_the_next(tmp_path: Path) -> None:
    """A crash or a full disk mid-append leaves a fragment with no newline; the next append,
    by any process, still parses."""
    one, two = _desc(b"one", mt.OCI_LAYER_GZIP), _desc(b"two", mt.OCI_LAYER_GZIP)
    Store(tmp_path / "oci").mark_remote_many([(one, None)], "r", "c")
    with open(tmp_path / "oci" / ".remote" / "records.jsonl", "ab") as f:
        f.write(b'{"registry":"r","repository":"c","blobs":[["sha256:12')
    Store(tmp_path / "oci").mark_remote_many([(two, None)], "r", "c")
    assert Store(tmp_path / "oci").remote_digests() == {one["digest"], two["digest"]}


def test_verify_without_repair_writes_no_recorded_blob(tmp_path: Path) -> None:
    """`cache verify` reads a remote-only manifest from its record and writes nothing."""
    from graphbuild.engine.cache_check import verify_cache
    from graphbuild.oci.jsoncanon import canonical_json

    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}})
    cdesc = _desc(config, mt.OCI_CONFIG)
    manifest = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                               "config": cdesc, "layers": []})
    mdesc = _desc(manifest, mt.OCI_MANIFEST)
    store = Store(tmp_path / "oci")
    store.mark_remote_many([(mdesc, manifest), (cdesc, config)], "r", "c")
    store.set_refs("//x:x", mdesc, [])
    store.save()
    assert verify_cache(tmp_path, repair=False).ok
    assert not Store(tmp_path / "oci").has_blob(mdesc["digest"])


def test_gc_keeps_reachable_records_drops_the_rest_and_walks_recorded_manifests(
        tmp_path: Path) -> None:
    """gc rewrites the journal with the records something reaches, looking into a recorded
    manifest (from its bytes, without writing it); an earlier version's per-blob record files
    are folded in."""
    store = Store(tmp_path / "oci")
    layer, gone = _desc(b"layer", mt.OCI_LAYER_GZIP), _desc(b"gone", mt.OCI_LAYER_GZIP)
    config = store.put_json({"config": "x"}, TEST_JSON)
    manifest = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                               "config": config, "layers": [layer]})
    mdesc = _desc(manifest, mt.OCI_MANIFEST)
    store.mark_remote_many([(mdesc, manifest), (layer, None), (gone, None)], "r", "c")
    legacy = _desc(b"legacy", mt.OCI_LAYER_GZIP)
    (tmp_path / "oci" / ".remote" / legacy["digest"][7:]).write_text(json.dumps(
        {"registry": "r", "repository": "c", "size": legacy["size"]}))
    assert Store(tmp_path / "oci").remote_digests() == \
        {mdesc["digest"], layer["digest"], gone["digest"], legacy["digest"]}
    removed, _ = Store(tmp_path / "oci").gc(extra_roots=[mdesc])
    assert removed == 2  # the records of `gone` and `legacy`
    after = Store(tmp_path / "oci")
    assert after.remote_digests() == {mdesc["digest"], layer["digest"]}
    assert not after.has_blob(mdesc["digest"])  # gc only looked
    assert os.listdir(tmp_path / "oci" / ".remote") == ["records.jsonl"]
    assert [d["digest"] for d in after.walk(mdesc)] == \
        [mdesc["digest"], config["digest"], layer["digest"]]


def test_threads_reading_one_remote_only_blob_at_once_all_get_it(tmp_path: Path) -> None:
    """Two builds of one run read a remote hit's config together: one puts it in place, and
    the other, finding its record gone meanwhile, reads what is there now."""
    import threading

    store = Store(tmp_path / "oci")
    blobs = [f"blob {i}\n".encode() * 40 for i in range(200)]
    store.mark_remote_many([(_desc(b), b) for b in blobs], "r", "c")
    errors: list[Exception] = []
    for data in blobs:
        barrier = threading.Barrier(4)
        digest = _desc(data)["digest"]

        def read(digest=digest, barrier=barrier) -> None:
            barrier.wait()
            try:
                store.read_bytes(digest)
            except BlobNotFound as exc:
                errors.append(exc)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
