"""The native backend: daemonless, pure Python, reproducible. It builds Dockerfiles made of
FROM/COPY/ADD (local) and metadata instructions; RUN is rejected at analysis time."""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import ActionFailed, UserError
from ..oci import image as img
from ..oci import mediatypes as mt
from .base import BuildRequest, BuildResult

if TYPE_CHECKING:  # concurrent.futures is imported where layers are written: a no-op build
    from concurrent.futures import Future, ThreadPoolExecutor  # reads only version()

    from ..platforms import Platform

NAME = "native"


# Bumped whenever the same inputs give other image bytes, so cached images are rebuilt.
# 3: layers gzipped at oci.layers.COMPRESS_LEVEL (was zlib level 6).
# 4: WORKDIR commits a layer creating the directory, as BuildKit does.
# 5: an os.version inherited from a base image for another os/arch is dropped, as BuildKit does.
# 6: history, WorkingDir, ArgsEscaped, arm64 variant and --chown ids as BuildKit writes them.
# 7: --chmod for the directories a COPY creates, as BuildKit v0.21+.
# 8: a COPY layer holds only what it changed, as BuildKit's diff.
# 9: ADD --chown owns the entries of an extracted archive, as BuildKit v0.23+.
# 10: COPY --link makes its layer on its own, as BuildKit.
# 11: COPY --parents (context sources), as BuildKit.
# 12: COPY --from --parents, as BuildKit.
REVISION = 12


def version() -> str:
    return f"{NAME}/{__version__}.r{REVISION}"


@dataclass
class PendingLayer:
    """A COPY/ADD layer resolved into its entries and being written (in the layer pool):
    ``slot`` is its place in the stage's ``layers`` and ``diff_ids``, filled in by ``_flush``."""

    slot: int
    key: str
    entries: list
    future: Future
    owned: bool  # this builder submitted it (others wait for the same future)


@dataclass
class StageState:
    config: dict
    layers: list[dict] = field(default_factory=list)
    # (os, arch) of the image config the stage starts from, before the node's platform is
    # written over it: BuildKit keeps that config's os.version only while they agree
    origin: tuple[str, str] = ("", "")
    cmd_set: bool = False
    rootfs: Path | None = None  # unpacked on demand for COPY --from and user lookup
    index: dict | None = None  # path -> LayerEntry metadata, built on demand
    pending: list[PendingLayer] = field(default_factory=list)  # layers not yet in `layers`


LayerResult = tuple[dict, str]  # (layer descriptor, diff_id)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def layer_pool() -> ThreadPoolExecutor:
    """One pool per process, a thread per CPU, that writes every native layer: all image nodes
    running at once share the cores (zlib and hashlib release the GIL) instead of multiplying
    threads, and memory stays bounded (a layer streams in CHUNK_SIZE pieces per thread)."""
    from concurrent.futures import ThreadPoolExecutor

    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=_cpus(), thread_name_prefix="layer")
        return _POOL


class LayerMemo:
    """Layers written, or being written, in this process, by store, gzip level and content
    fingerprint: a layer whose content is the same for several platforms is compressed once.
    The first node to need a layer submits it to the layer pool; the others wait for that same
    future instead of compressing it again."""

    def __init__(self) -> None:
        self._futures: dict[str, Future] = {}
        self._guard = threading.Lock()

    def claim(self, key: str, store, start) -> tuple[Future, bool]:
        """(the future of layer ``key``, whether this call started it with ``start()``).

        A failed or cancelled future, or a finished one whose blob is gone from ``store``, is
        replaced by a new one."""
        with self._guard:
            future = self._futures.get(key)
            if future is not None and _reusable(future, store):
                return future, False
            future = start()
            self._futures[key] = future
            return future, True


def _reusable(future: Future, store) -> bool:
    if not future.done():
        return True
    if future.cancelled() or future.exception() is not None:
        return False
    return store.has_blob(future.result()[0]["digest"])


MEMO = LayerMemo()


def _write_layer(store, entries: list, mtime: int, level: int) -> LayerResult:
    """Compress one layer into the store (runs in the layer pool)."""
    from ..oci import layers

    result, tmp = layers.write_layer_to_dir(entries, store.tmp_dir(), mtime=mtime,
                                            compress_level=level)
    # write_layer hashed exactly the bytes it wrote: no second read of the blob
    store.add_file(tmp, result.digest, verified=True)
    return ({"mediaType": mt.OCI_LAYER_GZIP, "digest": result.digest, "size": result.size},
            result.diff_id)


class NativeBuilder:
    def __init__(self, req: BuildRequest, store, scratch: Path, cancelled) -> None:
        self.req = req
        self.store = store
        self.scratch = scratch
        self.cancelled = cancelled
        self.states: dict[int, StageState] = {}
        self.ignore = _load_ignore(req)
        self._submitted: list[Future] = []  # layer futures this builder started

    def build(self) -> BuildResult:
        plan = self.req.plan = self._with_base_env(self.req.plan)
        for idx in plan.order:
            if self.cancelled.is_set():
                raise ActionFailed("interrupted")
            self.states[idx] = self._stage(idx)
        final = self.states[plan.target_index]
        config = final.config
        config["created"] = img.timestamp(self.req.source_date_epoch)
        if self.req.labels:
            config["config"].setdefault("Labels", {}).update(self.req.labels)
        _target_platform(config, final.origin, self.req.platform)
        desc = img.put_image(self.store, config, final.layers, platform=self.req.platform)
        return BuildResult(desc)

    def _with_base_env(self, plan):
        """The plan again with the Env of the images its stages start FROM, which BuildKit
        expands their words with (``WORKDIR $APPDIR`` after a base image's ``ENV APPDIR``)."""
        if not any(b.kind in ("context", "ref") for b in plan.bases.values()):
            return plan
        from .. import platforms
        from .plan import make_plan

        def base_env(word: str) -> dict[str, str]:
            ctx = self.req.contexts.get(word) or self.req.contexts.get(f"ref:{word}")
            if ctx is None or ctx.kind != "image":
                return {}
            _, config = img.load_image(self.store, ctx.descriptor)
            env = config.get("config", {}).get("Env") or []
            return dict(e.split("=", 1) for e in env if "=" in e)

        text = self.req.dockerfile.read_text(encoding="utf-8")
        return make_plan(text, plan.path, self.req.label, self.req.build_args, self.req.platform,
                         platforms.host(), self.req.target, set(self.req.contexts),
                         base_env=base_env)

    # -- stages --------------------------------------------------------------------------------
    def _stage(self, idx: int) -> StageState:
        """A stage's COPY/ADD instructions are resolved one after another (each sees the paths
        the earlier ones made, through ``state.index``), each layer going to the layer pool as
        soon as its entries are known; the layers are then collected in order. Stages stay
        sequential: a later ``COPY --from`` or ``FROM <stage>`` reads this stage's blobs."""
        from ..dockerfile import instructions as ins

        stage = self.req.plan.stages[idx]
        state = self._base(idx)
        args: list = []  # the names of the ARG instruction being recorded
        for cmd in stage.commands:
            layer = isinstance(cmd, ins.Copy)
            if layer:
                self._copy(state, cmd)
            else:
                _apply_meta(state, cmd, self.req.plan.path)
                if isinstance(cmd, ins.Workdir):
                    layer = self._workdir(state)
            args = self._record(state, cmd, layer, args)
        self._flush(state)
        return state

    def _record(self, state: StageState, cmd, layer: bool, args: list) -> list:
        """Add ``cmd``'s history entry, as BuildKit writes it. One ARG instruction naming
        several ARGs is one entry: its names arrive one by one, so the entry is rewritten as
        they come; returns the names recorded for the current ARG instruction."""
        from ..dockerfile import instructions as ins
        from . import history

        created = img.timestamp(self.req.source_date_epoch)
        entries = state.config["history"]
        if isinstance(cmd, ins.Arg):
            same = bool(args) and args[-1].line == cmd.line
            args = [*args, cmd] if same else [cmd]
            if same:
                entries.pop()
            entries.append(history.entry(created, history.arg_text(args), False))
            return args
        text = history.created_by(cmd, state.config)
        if text is not None:
            entries.append(history.entry(created, text, layer))
        return []

    def _base(self, idx: int) -> StageState:
        base = self.req.plan.bases[idx]
        plat = self.req.platform
        if base.kind == "scratch":  # BuildKit: emptyImage(targetPlatform), whatever --platform says
            return StageState(img.empty_config(plat), origin=(plat.os, plat.arch))
        if base.kind == "stage":
            prev = self.states[base.value]
            return StageState(img.rebase_config(prev.config, plat), list(prev.layers),
                              origin=prev.origin)
        desc = self._image_descriptor(base, self.req.plan.stages[idx].platform_flag)
        _, config = img.load_image(self.store, desc)
        triggers = config.get("config", {}).get("OnBuild")
        if triggers:  # BuildKit runs them here; building without them would be another image
            raise UserError(f"base image {base.value} has ONBUILD triggers ({'; '.join(triggers)})"
                            ", which the native backend does not run",
                            path=self.req.plan.path, line=self.req.plan.stages[idx].line,
                            label=self.req.label,
                            hint="move those instructions into this Dockerfile, or build it "
                                 "with buildah or buildx")
        manifest = self.store.read_json(desc["digest"])
        state = StageState(img.rebase_config(config, plat), list(manifest["layers"]),
                           origin=(config.get("os", ""), config.get("architecture", "")))
        env = state.config["config"].get("Env") or []
        if plat.os != "windows" and not any(e.startswith("PATH=") for e in env):
            state.config["config"]["Env"] = [*env, f"PATH={img.DEFAULT_PATH}"]  # as BuildKit
        return state

    def _image_descriptor(self, base, platform_flag: str | None = None) -> dict:
        if base.kind == "context":
            ctx = self._named_context(base.value, platform_flag)
            if ctx.kind != "image":
                raise ActionFailed(f"context '{base.value}' is a directory and cannot be a FROM base")
            return ctx.descriptor
        ref_ctx = self._named_context(f"ref:{base.value}", platform_flag)
        if ref_ctx is None:
            raise ActionFailed(f"image {base.value} was not fetched")
        return ref_ctx.descriptor

    def _named_context(self, name: str, platform_flag: str | None):
        """BuildKit's lookup (dockerui NamedContext): ``name::X`` for a stage's
        ``FROM --platform=X``, then ``name``. Analysis gave each key the right image (a base
        image reference read for two platforms too, under ``ref:NAME``)."""
        if platform_flag:
            from .. import platforms
            from .plan import context_key

            key = context_key(name, platforms.parse(platform_flag))
            if key in self.req.contexts:
                return self.req.contexts[key]
        return self.req.contexts.get(name)

    # -- COPY / ADD ----------------------------------------------------------------------------
    def _copy(self, state: StageState, cmd) -> None:
        from ..oci import copyspec

        workdir = state.config["config"].get("WorkingDir") or "/"
        chown = self._chown(state, cmd.chown) if cmd.chown else None
        chmod = cmd.chmod or None
        # --link: the layer is made on its own, as BuildKit does: the image's symlinks and
        # directories are not looked at (not followed, their modes not kept)
        base = None if cmd.link else self._index(state).get
        try:
            if cmd.heredocs:
                entries = copyspec.resolve_copy(
                    self.req.context_dir, [], cmd.dest, workdir=workdir, chmod=chmod, chown=chown,
                    inline=[(d.path, d.data.encode()) for d in cmd.heredocs], base=base)
            elif cmd.from_:
                root, owner_of = self._from_root(cmd.from_)
                entries = copyspec.copy_from_tree(root, cmd.sources, cmd.dest, workdir=workdir,
                                                  chmod=chmod, chown=chown, owner_of=owner_of,
                                                  base=base, exclude=cmd.excludes,
                                                  link=cmd.link, parents=cmd.parents)
            else:
                entries = copyspec.resolve_copy(self.req.context_dir, cmd.sources, cmd.dest,
                                                workdir=workdir, ignore=self.ignore, chmod=chmod,
                                                chown=chown, is_add=cmd.is_add, base=base,
                                                scratch_dir=self.scratch, exclude=cmd.excludes,
                                                link=cmd.link, parents=cmd.parents)
        except copyspec.CopyError as exc:
            raise UserError(exc.message, path=self.req.plan.path, line=cmd.line,
                            label=self.req.label, hint=exc.hint) from None
        self._add_layer(state, list(entries) if cmd.link else
                        _changed(self._index(state), list(entries)))

    def _workdir(self, state: StageState) -> bool:
        """BuildKit's WORKDIR: ``mkdir -p`` of the directory, owned by the USER then in effect,
        committed as a layer (empty when the directory exists). Not for ``/``."""
        from ..oci.layers import LayerEntry

        cfg = state.config["config"]
        path = cfg["WorkingDir"].strip("/")
        if not path:
            return False
        user = cfg.get("User") or ""
        uid, gid = self._chown(state, user, "USER") if user else (0, 0)
        index = self._index(state)
        parents, entries = [], []
        parts = path.split("/")
        for i in range(len(parts)):
            sub = "/".join(parts[: i + 1])
            if sub in index and index[sub].kind == "symlink":
                break  # mkdir -p follows it: what it points to is the image's business
            if entries or (sub not in index and not _has_below(index, sub)):
                entries.append(LayerEntry(path=sub, kind="dir", mode=0o755, uid=uid, gid=gid))
            elif sub in index:
                parents.append(index[sub])  # as it is: the layer lists it, unchanged
        self._add_layer(state, parents + entries if entries else [])
        return True

    def _add_layer(self, state: StageState, entries: list) -> None:
        state.pending.append(self._submit(len(state.layers), entries))
        state.layers.append({})  # placeholders until _flush
        state.config["rootfs"]["diff_ids"].append("")
        state.rootfs = None  # stale once the stage grows
        if state.index is not None:  # else made from the layers when next asked for
            for entry in entries:
                state.index[entry.path] = entry

    def _index(self, state: StageState) -> dict:
        from ..oci.unpack import index_layers

        if state.index is None:
            if state.pending:  # the layers' headers are read: pending ones are written first
                self._flush(state)
            state.index = index_layers(self.store, state.layers)
        return state.index

    def _submit(self, slot: int, entries: list) -> PendingLayer:
        """Start writing a layer, or join the node already writing the same content."""
        from ..oci import layers

        level, mtime = layers.COMPRESS_LEVEL, self.req.source_date_epoch
        key = f"{self.store.root}:{level}:{mtime}:{_fingerprint(entries)}"
        return PendingLayer(slot, key, entries, *self._claim(key, entries, mtime, level))

    def _claim(self, key: str, entries: list, mtime: int, level: int) -> tuple[Future, bool]:
        def start() -> Future:
            future = layer_pool().submit(_write_layer, self.store, entries, mtime, level)
            self._submitted.append(future)
            return future

        return MEMO.claim(key, self.store, start)

    def _flush(self, state: StageState) -> None:
        """Wait for the stage's pending layers and put them in place, in order."""
        diff_ids = state.config["rootfs"]["diff_ids"]
        while state.pending:
            pending = state.pending[0]
            layer, diff_id = self._wait(pending)
            state.layers[pending.slot] = dict(layer)
            diff_ids[pending.slot] = diff_id
            state.pending.pop(0)

    def _wait(self, pending: PendingLayer) -> LayerResult:
        """The layer's result. If another node's attempt failed or was cancelled, this node
        writes the layer itself (as it would have without that node)."""
        from concurrent.futures import CancelledError
        from concurrent.futures import TimeoutError as FutureTimeout

        from ..oci import layers

        future, owned = pending.future, pending.owned
        while True:
            try:
                while True:
                    try:
                        return future.result(timeout=0.25)
                    except FutureTimeout:
                        if self.cancelled.is_set():
                            raise ActionFailed("interrupted") from None
            except CancelledError:
                if owned:  # only cleanup() cancels this builder's own futures
                    raise ActionFailed("interrupted") from None
            except Exception:
                if owned:
                    raise
            future, owned = self._claim(pending.key, pending.entries,
                                        self.req.source_date_epoch, layers.COMPRESS_LEVEL)

    def _from_root(self, word: str):
        """(directory, owner lookup) a COPY --from reads: a stage, a named context, or an image.
        Owners come from the image's layer headers, not from the unpacked files."""
        from .plan import _source

        plan = self.req.plan
        src = _source(plan.stages, word, len(plan.stages), set(self.req.contexts))
        if src.kind == "context" and self.req.contexts[word].kind == "dir":
            return self.req.contexts[word].path, lambda rel: (0, 0)
        if src.kind == "scratch":
            return self._empty_dir(), lambda rel: (0, 0)
        if src.kind == "stage":
            state = self.states[src.value]
        else:
            manifest = self.store.read_json(self._image_descriptor(src)["digest"])
            state = StageState({}, list(manifest["layers"]))
        index = self._index(state)

        def owner_of(rel: str) -> tuple[int, int]:
            entry = index.get(rel.lstrip("/"))
            return (entry.uid, entry.gid) if entry else (0, 0)

        return self._rootfs(state), owner_of

    def _empty_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.scratch))

    def _rootfs(self, state: StageState) -> Path:
        from ..oci.unpack import unpack_layers

        if state.rootfs is None:
            state.rootfs = Path(tempfile.mkdtemp(dir=self.scratch, prefix="rootfs-"))
            unpack_layers(self.store, state.layers, state.rootfs)
        return state.rootfs

    def _chown(self, state: StageState, spec: str, what: str = "--chown") -> tuple[int, int]:
        user, _, group = spec.partition(":")
        if any(n and not n.isdigit() and n != "root" for n in (user, group)):
            self._flush(state)  # names are read from the stage's layers: write them first
        uid, primary = _user_ids(self, state, user)
        gid = _lookup_id(self, state, group, "etc/group") if group else None
        return uid, primary if gid is None else gid  # a group the image lacks: the user's

    def cleanup(self) -> None:
        # On failure or interruption: drop this builder's queued layers (a node waiting for one
        # of them writes it itself) and let running ones finish before the scratch dir goes.
        from concurrent.futures import wait as wait_futures

        for future in self._submitted:
            future.cancel()
        wait_futures(self._submitted)
        for state in self.states.values():
            if state.rootfs is not None:
                shutil.rmtree(state.rootfs, ignore_errors=True)


def _fingerprint(entries) -> str:
    """What a layer's bytes depend on: entry metadata and each source file's identity."""
    import hashlib
    import os

    from ..oci import layers

    h = hashlib.sha256()
    for e in entries:
        src = e.source
        if isinstance(src, bytes):
            ident = hashlib.sha256(src).hexdigest()
        elif isinstance(src, layers.FileSlice):  # a member of an ADDed archive, by content:
            ident = _slice_digest(src)  # each node decompresses it into its own scratch dir
        elif src is not None:
            st = os.stat(src)
            ident = f"{os.path.realpath(src)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        else:
            ident = ""
        h.update(repr((e.path, e.kind, e.mode, e.uid, e.gid, e.linkname, ident)).encode())
    return h.hexdigest()


def _slice_digest(part) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(part.path, "rb") as fh:
        fh.seek(part.offset)
        left = part.size
        while left > 0:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _has_below(index: dict, path: str) -> bool:
    """Whether some entry lies below ``path`` (a directory a layer made implicitly)."""
    prefix = path + "/"
    return any(key.startswith(prefix) for key in index)


def _user_ids(builder: NativeBuilder, state: StageState, name: str) -> tuple[int, int]:
    """(uid, primary gid) of a user: a name is looked up in the stage's /etc/passwd, its group
    being the passwd entry's gid, as BuildKit does; a number is both ids; a name the image does
    not know is 0:0 (BuildKit's answer too)."""
    if name.isdigit():
        return int(name), int(name)
    if name == "root":  # read no layer for it (_chown flushes only for other names)
        return 0, 0
    for fields in _db_entries(builder, state, "etc/passwd"):
        if fields[0] == name and len(fields) > 3 and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3])
    return 0, 0


def _lookup_id(builder: NativeBuilder, state: StageState, name: str, db: str) -> int | None:
    """A numeric id, or a name looked up in the stage's /etc/group (or /etc/passwd); None for
    a name the image does not know."""
    if name.isdigit():
        return int(name)
    if name == "root":
        return 0
    for fields in _db_entries(builder, state, db):
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def _db_entries(builder: NativeBuilder, state: StageState, db: str) -> list[list[str]]:
    """The colon-separated entries of the stage's /etc/passwd or /etc/group."""
    from ..oci.unpack import read_file

    content = read_file(builder.store, state.layers, db) if state.layers else None
    return [line.split(":") for line in (content or b"").decode(errors="replace").splitlines()]


def _load_ignore(req: BuildRequest):
    from .plan import context_ignore

    return context_ignore(req.context_dir, req.dockerfile, req.exclude)


def _target_platform(config: dict, origin: tuple[str, str], plat: Platform) -> None:
    """BuildKit's finalizeResultImage for an explicit target platform (every node has one): the
    config names the node's platform, not the final stage's ``FROM --platform``, and keeps the
    os.version it inherited only from an image of the same os/arch (``--platform os/arch``
    carries no os.version to put in its place). os/arch/variant are already the node's."""
    if origin != (plat.os, plat.arch):
        config.pop("os.version", None)


# -- metadata instructions ---------------------------------------------------------------------
def _set_env(cfg: dict, key: str, value: str) -> None:
    """BuildKit's addEnv: a name already set is replaced in place, a new one appended."""
    env = list(cfg.get("Env") or [])
    for i, item in enumerate(env):
        if item.split("=", 1)[0] == key:
            env[i] = f"{key}={value}"
            break
    else:
        env.append(f"{key}={value}")
    cfg["Env"] = env


def _apply_meta(state: StageState, cmd, path: str) -> None:
    from ..dockerfile import instructions as ins

    cfg = state.config["config"]
    if isinstance(cmd, ins.Env):
        for k, v in cmd.pairs:
            _set_env(cfg, k, v)
    elif isinstance(cmd, ins.Label):
        cfg.setdefault("Labels", {}).update(dict(cmd.pairs))
    elif isinstance(cmd, ins.Workdir):
        cfg["WorkingDir"] = posixpath.normpath(posixpath.join(cfg.get("WorkingDir") or "/", cmd.path))
    elif isinstance(cmd, ins.User):
        cfg["User"] = cmd.user
    elif isinstance(cmd, ins.Expose):
        for port in cmd.specs():  # 8000-8002 is three ports, as nat.ParsePortSpecs makes it
            cfg.setdefault("ExposedPorts", {})[port] = {}
    elif isinstance(cmd, ins.Volume):
        for vol in cmd.paths:
            cfg.setdefault("Volumes", {})[vol] = {}
    elif isinstance(cmd, ins.StopSignal):
        cfg["StopSignal"] = cmd.signal
    elif isinstance(cmd, ins.Entrypoint):
        _set_list(cfg, "Entrypoint", _shell_wrap(cfg, cmd.args) if cmd.shell_form else cmd.args)
        if not state.cmd_set:
            cfg.pop("Cmd", None)
    elif isinstance(cmd, ins.Cmd):
        _set_list(cfg, "Cmd", _shell_wrap(cfg, cmd.args) if cmd.shell_form else cmd.args)
        cfg["ArgsEscaped"] = True  # BuildKit sets it for every CMD (Docker's image spec field)
        state.cmd_set = True
    elif isinstance(cmd, ins.Shell):
        cfg["Shell"] = list(cmd.args)
    elif isinstance(cmd, ins.Healthcheck):
        cfg["Healthcheck"] = _healthcheck(cmd)
    elif isinstance(cmd, ins.Onbuild):
        cfg.setdefault("OnBuild", []).append(cmd.expression)
    elif isinstance(cmd, ins.Maintainer):
        state.config["author"] = cmd.maintainer
    # ARG changes nothing in the config: its value only feeds expansion.


def _set_list(cfg: dict, key: str, value) -> None:
    """`ENTRYPOINT []` clears it: an empty list is omitted, as BuildKit's omitempty does."""
    if value:
        cfg[key] = list(value)
    else:
        cfg.pop(key, None)


def _shell_wrap(cfg: dict, args) -> list[str]:
    shell = cfg.get("Shell") or ["/bin/sh", "-c"]
    text = args if isinstance(args, str) else " ".join(args)
    return [*shell, text]


def _healthcheck(cmd) -> dict:
    out: dict = {"Test": list(cmd.test)}
    for key, attr in (("Interval", "interval"), ("Timeout", "timeout"),
                      ("StartPeriod", "start_period"), ("StartInterval", "start_interval")):
        value = getattr(cmd, attr, None)
        if value:
            out[key] = value
    if getattr(cmd, "retries", None):
        out["Retries"] = cmd.retries
    return out


def build(req: BuildRequest, store, scratch: Path, cancelled) -> BuildResult:
    builder = NativeBuilder(req, store, scratch, cancelled)
    try:
        return builder.build()
    finally:
        builder.cleanup()


def _changed(index: dict, entries: list) -> list:
    """What a COPY changes, as BuildKit's layer diff holds it: an entry the image already has
    alike (kind, mode, owner, target, same content) is left out, and so is a directory that is
    no changed entry's parent. Content the image got from a base layer is not read: such a
    file counts as changed."""
    changed = [e for e in entries if not _alike(index.get(e.path), e)]
    parents = {p for e in changed for p in _parents(e.path)}
    keep = {e.path for e in changed} | parents
    return [e for e in entries if e.path in keep]


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _alike(old, new) -> bool:
    if old is None or (old.kind, old.mode, old.uid, old.gid, old.linkname) != (
            new.kind, new.mode, new.uid, new.gid, new.linkname):
        return False
    return new.kind != "file" or _same_content(old.source, new.source)


def _same_content(a, b) -> bool:
    """Two layer entries' content: host paths, inline bytes or tar slices; b"" stands for a
    base layer's file, which is not read (so it is never the same)."""
    import filecmp

    from ..oci.layers import FileSlice

    if a == b"" or b == b"" or isinstance(a, FileSlice) or isinstance(b, FileSlice):
        return False
    if isinstance(a, bytes) or isinstance(b, bytes):
        read = lambda s: s if isinstance(s, bytes) else Path(s).read_bytes()
        return read(a) == read(b)
    return a == b or filecmp.cmp(a, b, shallow=False)
