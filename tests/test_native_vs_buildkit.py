"""Native ≡ BuildKit: every Dockerfile of ``tests/dockerfile_corpus`` that the native backend can
build goes through graphbuild (native) and through the real BuildKit (``buildctl``, built-in
Dockerfile frontend, ``SOURCE_DATE_EPOCH=0``, ``rewrite-timestamp=true``), for linux/amd64 and
linux/arm64. The uncompressed layers (diff_ids), the config fields a container runtime reads
and the history (without dates) must be the same, except for the differences listed in KNOWN
(and in docs/backends.md), each with its reason.

The images start from one local base image (an ADDed root filesystem with users, groups,
symlinked /bin and odd directory modes), built by graphbuild and handed to BuildKit as an OCI
layout: every external name a Dockerfile uses (``FROM nginx:1.25``, ``COPY --from=busybox``)
is a named context pointing at it, so nothing goes to the network.

BuildKit runs in one daemon for the module, its builds a few at a time while graphbuild builds
the whole corpus in one run.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import WorkspaceFixture, need_tool

from graphbuild.dockerfile import instructions as ins
from graphbuild.dockerfile.parser import parse
from graphbuild.oci.store import Store

CORPUS_DIR = Path(__file__).parent / "dockerfile_corpus"
CORPUS = sorted(CORPUS_DIR.glob("*.Dockerfile"))
PLATFORMS = ("linux/amd64", "linux/arm64")
CONFIG_FIELDS = ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Labels", "ExposedPorts",
                 "Volumes", "StopSignal", "Healthcheck", "Shell", "OnBuild", "ArgsEscaped")
IMAGE_FIELDS = ("os", "architecture", "variant", "os.version", "author")

# Remaining differences, by corpus file: {what differs: why}. The test fails when a listed
# difference disappears, so this list (and docs/backends.md) stays true.
KNOWN: dict[str, dict[str, str]] = {
}


# -- the build context and the base image --------------------------------------------------------

CONTEXT_FILES: dict[str, tuple[str, int]] = {
    "bin/app-amd64": ("#!/bin/sh\necho amd64\n", 0o755),
    "bin/app-arm64": ("#!/bin/sh\necho arm64\n", 0o755),
    "conf/nginx.conf": ("events {}\nhttp { server { listen 80; } }\n", 0o644),
    "conf/app.conf": ("name=app\n", 0o644),
    "conf/extra.conf": ("extra=1\n", 0o600),
    "site/index.html": ("<h1>hello</h1>\n", 0o644),
    "site/css/style.css": ("h1 { color: red }\n", 0o644),
    "site/notes.txt": ("notes\n", 0o640),
    "package.json": ('{"name": "app"}\n', 0o644),
    "package-lock.json": ('{"lockfileVersion": 3}\n', 0o644),
    "server.js": ("require('http').createServer().listen(3000)\n", 0o644),
    "app/__init__.py": ("", 0o644),
    "app/main.py": ("print('hi')\n", 0o644),
    "app/pkg/util.py": ("X = 1\n", 0o644),
    "requirements.txt": ("flask==3.0.0\n", 0o644),
    "target/app-1.0.jar": ("PK fake jar\n", 0o644),
    "scripts/entrypoint.sh": ("#!/bin/sh\nexec \"$@\"\n", 0o755),
    "scripts/check.sh": ("#!/bin/sh\ntrue\n", 0o644),
    "cmd/server/main.go": ("package main\n", 0o644),
    "cmd/cli/main.go": ("package main\n", 0o644),
    "file name.txt": ("spaces\n", 0o644),
    "other file.txt": ("more spaces\n", 0o644),
    "debug.log": ("ignored\n", 0o644),
    "keep.log": ("kept by an exception\n", 0o644),
    "secrets/token": ("s3cr3t\n", 0o600),
    "node_modules/dep/index.js": ("module.exports = 1\n", 0o644),
    ".dockerignore": ("*.log\n!keep.log\nsecrets\nnode_modules\n", 0o644),
}
CONTEXT_LINKS = {"links/to-app.conf": "../conf/app.conf",
                 "links/site": "../site"}

# The base image's root filesystem: (path, type, mode, uid, gid, content or link target).
ROOTFS = [
    ("bin", "l", 0o777, 0, 0, "usr/bin"),
    ("etc", "d", 0o755, 0, 0, ""),
    ("etc/passwd", "f", 0o644, 0, 0,
     ("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
     "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
     "node:x:1000:1000::/home/node:/bin/sh\nnginx:x:101:101:nginx:/var/cache/nginx:/bin/false\n"
     "app:x:10001:10002::/home/app:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n")),
    ("etc/group", "f", 0o644, 0, 0,
     ("root:x:0:\nstaff:x:50:\nnogroup:x:65534:\nnonroot:x:65532:\nnode:x:1000:\nnginx:x:101:\n"
     "appgroup:x:10002:\nwww-data:x:33:\n")),
    ("etc/private", "d", 0o700, 0, 0, ""),
    ("etc/private/keep", "f", 0o600, 0, 0, "base\n"),
    ("home", "d", 0o755, 0, 0, ""),
    ("home/node", "d", 0o750, 1000, 1000, ""),
    ("home/node/.profile", "f", 0o644, 1000, 1000, "# node\n"),
    ("opt", "d", 0o755, 0, 0, ""),
    ("run", "d", 0o755, 0, 0, ""),
    ("srv", "d", 0o755, 0, 0, ""),
    ("tmp", "d", 0o1777, 0, 0, ""),
    ("usr", "d", 0o755, 0, 0, ""),
    ("usr/bin", "d", 0o755, 0, 0, ""),
    ("usr/bin/sh", "f", 0o755, 0, 0, "#!fake shell\n"),
    ("usr/local", "d", 0o755, 0, 0, ""),
    ("usr/local/bin", "d", 0o755, 0, 0, ""),
    ("var", "d", 0o755, 0, 0, ""),
    ("var/lib", "d", 0o755, 0, 0, ""),
    ("var/run", "l", 0o777, 0, 0, "../run"),
]
BASE_DOCKERFILE = 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["sh"]\n'


def _tar(entries, *, gz: bool) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, mode, uid, gid, data in entries:
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, 0
            if kind == "d":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                body = data.encode()
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    if not gz:
        return raw.getvalue()
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as fh:
        fh.write(raw.getvalue())
    return out.getvalue()


VENDOR_TAR = [
    ("vendor", "d", 0o775, 501, 20, ""),
    ("vendor/lib", "d", 0o755, 501, 20, ""),
    ("vendor/lib/a.txt", "f", 0o664, 501, 20, "a\n"),
    ("vendor/bin/tool", "f", 0o755, 0, 0, "#!/bin/sh\n"),
    ("vendor/current", "l", 0o777, 501, 20, "lib"),
]
PLAIN_TAR = [("plain/readme.txt", "f", 0o644, 0, 0, "plain\n")]


def write_context(root: Path) -> None:
    for rel, (text, mode) in CONTEXT_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    for rel, target in CONTEXT_LINKS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(target)
    (root / "vendor.tar.gz").write_bytes(_tar(VENDOR_TAR, gz=True))
    (root / "plain.tar").write_bytes(_tar(PLAIN_TAR, gz=False))
    for dirpath, dirs, _files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(dirpath, name), 0o755)  # whatever the umask


# -- which corpus files, and the names they take from the base image ------------------------------


def native_blocker(path: Path) -> str | None:
    """Why the native backend cannot build this Dockerfile, or None."""
    stages, _ = ins.parse_stages(parse(path.read_text(), path.name), {}, None, None)
    for stage in stages:
        for cmd in stage.commands:
            if isinstance(cmd, ins.Run):
                return f"RUN at line {cmd.line}"
            if isinstance(cmd, ins.Copy) and any("://" in s for s in cmd.sources):
                return f"ADD <url> at line {cmd.line}"
        if "windows" in stage.base:
            return "a Windows base image"
    return None


DIFFERENTIAL = [p for p in CORPUS if native_blocker(p) is None]


def external_names(path: Path) -> set[str]:
    """The image names a Dockerfile takes from outside (FROM and COPY --from, not stages)."""
    stages, _ = ins.parse_stages(parse(path.read_text(), path.name), {}, None, None)
    names = {s.name for s in stages if s.name}
    out = {s.base for s in stages if s.base_stage is None and s.base != "scratch"}
    for stage in stages:
        for cmd in stage.commands:
            if isinstance(cmd, ins.Copy) and cmd.from_ and cmd.from_.lower() not in names \
                    and not cmd.from_.isdigit():
                out.add(cmd.from_)
    return out


def buildkit_context_key(name: str) -> str:
    """dockerui's NamedContext key: the familiar name, without a ``:latest`` tag."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.removesuffix(":latest")


# -- BuildKit ------------------------------------------------------------------------------------


class BuildKit:
    """One buildkitd (OCI worker, native snapshotter) with its own root and socket."""

    def __init__(self, root: Path) -> None:
        self.buildkitd = need_tool("buildkitd")
        self.buildctl = need_tool("buildctl")
        self.root = root
        self.addr = f"unix://{root}/buildkitd.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> BuildKit:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "buildkitd.log", "wb")  # noqa: SIM115 - lives with the daemon
        self.proc = subprocess.Popen(
            [self.buildkitd, "--root", str(self.root / "state"), "--addr", self.addr,
             "--oci-worker=true", "--containerd-worker=false",
             "--oci-worker-snapshotter=native"], stdout=log, stderr=subprocess.STDOUT)
        for _ in range(300):
            if self.proc.poll() is not None:
                break
            if self.ctl("debug", "workers").returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"buildkitd did not start: {(self.root / 'buildkitd.log').read_text()[-2000:]}")

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.buildctl, "--addr", self.addr, *args], check=False,
                              capture_output=True, text=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def build(self, context: Path, dockerfile: Path, out: Path, *, layouts: dict[str, Path],
              contexts: dict[str, str], platforms: tuple[str, ...] = PLATFORMS
              ) -> subprocess.CompletedProcess:
        """``dockerfile`` built by the built-in frontend (a ``# syntax`` line is not followed)
        into the OCI layout directory ``out``, reproducibly."""
        args = ["build", "--frontend", "dockerfile.v0", "--progress", "plain",
                "--local", f"context={context}", "--local", f"dockerfile={dockerfile.parent}",
                "--opt", f"filename={dockerfile.name}", "--opt", "cmdline=dockerfile.v0",
                "--opt", f"platform={','.join(platforms)}",
                "--opt", "build-arg:SOURCE_DATE_EPOCH=0",
                "--output", f"type=oci,dest={out},tar=false,rewrite-timestamp=true"]
        for name, path in layouts.items():
            args += ["--oci-layout", f"{name}={path}"]
        for name, value in contexts.items():
            args += ["--opt", f"context:{name}={value}"]
        return self.ctl(*args)


@pytest.fixture(scope="module")
def buildkit(tmp_path_factory: pytest.TempPathFactory):
    daemon = BuildKit(tmp_path_factory.mktemp("buildkit")).start()
    yield daemon
    daemon.stop()


# -- reading images ------------------------------------------------------------------------------


def layout_images(layout: Path) -> dict[str, dict]:
    """platform -> config of every image in an OCI layout written by BuildKit."""
    def blob(digest: str) -> dict:
        return json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_text())

    out: dict[str, dict] = {}
    todo = list(json.loads((layout / "index.json").read_text())["manifests"])
    while todo:
        desc = todo.pop()
        doc = blob(desc["digest"])
        if "manifests" in doc:
            todo.extend(doc["manifests"])
            continue
        plat = desc.get("platform", {})
        if plat.get("os") == "unknown":
            continue  # an attestation
        config = blob(doc["config"]["digest"])
        out[f"{config['os']}/{config['architecture']}"] = config
    return out


def store_config(store: Store, node: str) -> dict:
    desc = store.lookup(node)
    assert desc is not None, f"{node} is not in the store"
    return store.read_json(store.read_json(desc["digest"])["config"]["digest"])


def differences(native: dict, buildkit: dict) -> dict[str, str]:
    """What differs between two image configs: {field: "native … / buildkit …"}."""
    out: dict[str, str] = {}

    def note(what: str, ours, theirs) -> None:
        if ours != theirs:
            out[what] = f"native {ours!r} / buildkit {theirs!r}"

    note("diff_ids", native["rootfs"]["diff_ids"], buildkit["rootfs"]["diff_ids"])
    for key in IMAGE_FIELDS:
        note(key, native.get(key), buildkit.get(key))
    for key in CONFIG_FIELDS:
        note(key, native["config"].get(key), buildkit["config"].get(key))
    strip = lambda hist: [{k: v for k, v in h.items() if k != "created"} for h in hist]
    note("history", strip(native.get("history", [])), strip(buildkit.get("history", [])))
    return out


# -- the builds ----------------------------------------------------------------------------------


def _workspace(ws: WorkspaceFixture) -> dict[str, set[str]]:
    """The corpus as one workspace: //:base, and a target per Dockerfile whose external names
    all point at it. Returns each target's external names."""
    write_context(ws.path("ctx"))
    base_dir = ws.path("base")
    base_dir.mkdir()
    (base_dir / "rootfs.tar").write_bytes(_tar(ROOTFS, gz=False))
    (base_dir / "Dockerfile").write_text(BASE_DOCKERFILE)
    targets: dict[str, dict] = {"base": {"rule": "image", "context": "base",
                                         "dockerfile": "base/Dockerfile",
                                         "platforms": list(PLATFORMS)}}
    names: dict[str, set[str]] = {}
    ws.path("df").mkdir()
    for path in DIFFERENTIAL:
        shutil.copy(path, ws.path("df") / path.name)
        names[path.stem] = external_names(path)
        targets[path.stem] = {
            "rule": "image", "context": "ctx", "dockerfile": f"df/{path.name}",
            "platforms": list(PLATFORMS),
            "contexts": {name: "//:base" for name in sorted(names[path.stem])}}
    ws.write({"BUILD.yaml": json.dumps(targets, indent=1)})
    return names


@pytest.fixture(scope="module")
def corpus_results(buildkit, tmp_path_factory: pytest.TempPathFactory):
    """{corpus name: (native configs, buildkit configs or the error)} per platform."""
    ws = WorkspaceFixture(tmp_path_factory.mktemp("corpus") / "ws")
    names = _workspace(ws)
    res = ws.run("run", "//:base")
    assert res.code == 0, res
    res = ws.run("export", "//:base", "-o", str(ws.path("base.tar")), "--format", "oci")
    assert res.code == 0, res
    layout = ws.path("base-layout")
    layout.mkdir()
    with tarfile.open(ws.path("base.tar")) as tar:
        tar.extractall(layout, filter="data")
    base_digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]

    def bk(path: Path):
        out = ws.path("bk") / path.stem
        contexts = {buildkit_context_key(n): f"oci-layout://base@{base_digest}"
                    for n in names[path.stem]}
        proc = buildkit.build(ws.path("ctx"), ws.path("df") / path.name, out,
                              layouts={"base": layout}, contexts=contexts)
        if proc.returncode != 0:
            return proc.stderr[-3000:]
        return layout_images(out)

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {p.stem: pool.submit(bk, p) for p in DIFFERENTIAL}
        ours = _native(ws)
        theirs = {name: f.result() for name, f in futures.items()}
    return {p.stem: (ours[p.stem], theirs[p.stem]) for p in DIFFERENTIAL}


def _native(ws: WorkspaceFixture) -> dict[str, dict | str]:
    """Each corpus target's configs by platform, or what graphbuild said when it failed: the
    whole corpus in one run, then, if that failed, each target on its own to tell which."""
    store = Store(ws.path(".graphbuild/oci"))
    failed: dict[str, str] = {}
    if ws.run("run", "--keep-going", "//...").code != 0:
        for path in DIFFERENTIAL:
            res = ws.run("run", f"//:{path.stem}")
            if res.code != 0:
                failed[path.stem] = f"exit {res.code}: {res.err.strip()[-2000:]}"
    return {p.stem: failed.get(p.stem) or {
        plat: store_config(store, f"//:{p.stem}[{plat}]") for plat in PLATFORMS}
        for p in DIFFERENTIAL}


def test_the_corpus_covers_enough_patterns() -> None:
    """At least 30 corpus files are compared; the others need what native cannot do."""
    assert len(DIFFERENTIAL) >= 30
    skipped = {p.stem: native_blocker(p) for p in CORPUS if p not in DIFFERENTIAL}
    assert all(skipped.values()), skipped


@pytest.mark.parametrize("path", DIFFERENTIAL, ids=lambda p: p.stem)
def test_native_matches_buildkit(path: Path, corpus_results) -> None:
    ours, theirs = corpus_results[path.stem]
    assert not isinstance(theirs, str), f"BuildKit failed on {path.name}:\n{theirs}"
    found: dict[str, str] = {}
    if isinstance(ours, str):
        found["native failed"] = ours
    for plat in PLATFORMS if not found else ():
        for what, detail in differences(ours[plat], theirs[plat]).items():
            found.setdefault(what, f"{plat}: {detail}")
    report = "identical" if not found else "different:\n" + "\n".join(
        f"  {what}: {detail}" for what, detail in sorted(found.items()))
    print(f"{path.stem}: {report}")
    assert set(found) == set(KNOWN.get(path.stem, {})), report
