"""What the backends that drive an external tool (buildx, buildah) share: running the tool so an
interrupt stops it, naming the Dockerfile line a failure came from, and saying when RUN steps
execute under emulation."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

from .. import platforms
from ..errors import ActionFailed

LOG_TAIL = 40
POLL_S = 0.05
CANCEL_POLL_S = 0.1  # how soon a pidfd waiter sees Ctrl-C
STOP_GRACE_S = 5.0


class ToolFailed(ActionFailed):
    """The external tool failed; the message names the Dockerfile line when the output allows."""


def run_tool(argv: list[str], *, cwd: Path, log_path: Path, cancelled: threading.Event,
             env: dict[str, str] | None = None) -> int:
    """Run ``argv`` in its own process group, output (stdout and stderr) to ``log_path``.

    The process group is stopped (TERM, then KILL) as soon as ``cancelled`` is set, and
    ActionFailed("interrupted") raised; otherwise the exit code is returned.
    """
    if cancelled.is_set():
        raise ActionFailed("interrupted")
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return _wait(proc, cancelled)
        finally:
            if proc.poll() is None:
                _stop(proc)


def _wait(proc: subprocess.Popen, cancelled: threading.Event) -> int:
    """``proc``'s exit status, or ActionFailed("interrupted") once ``cancelled`` is set. On
    Linux the thread sleeps on a pidfd until the process ends, waking only to look at the flag:
    ``Popen.wait(timeout)`` polls every few milliseconds, which cost ~15 ms of CPU per second of
    a build."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        fd = None
    try:
        poller = None
        if fd is not None:
            poller = select.poll()  # not select(): it refuses descriptors past 1023
            poller.register(fd, select.POLLIN)
        while True:
            if poller is None:
                try:
                    return proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    pass
            else:
                poller.poll(CANCEL_POLL_S * 1000)
                code = proc.poll()
                if code is not None:
                    return code
            if cancelled.is_set():
                raise ActionFailed("interrupted")
    finally:
        if fd is not None:
            os.close(fd)


def capture(argv: list[str], *, timeout: float = 60, env: dict | None = None) -> tuple[int, str]:
    """Run a short query command (``docker buildx version``); (exit code, stdout+stderr)."""
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env)
    except FileNotFoundError:
        return 127, f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, f"{' '.join(argv)}: no answer after {timeout:.0f}s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return
            time.sleep(POLL_S)
    proc.wait()


def tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def tool_version(argv: list[str], pattern: str) -> str:
    """The version a tool reports (``buildah --version``), or "unavailable"."""
    code, out = capture(argv, timeout=30)
    m = re.search(pattern, out) if code == 0 else None
    return m.group(1) if m else "unavailable"


# -- emulation --------------------------------------------------------------------------------

def emulated(platform: platforms.Platform, host: platforms.Platform | None = None) -> bool:
    """Whether a RUN for ``platform`` executes under emulation on ``host`` (this machine).

    Only the host's own architecture (and 386 on amd64, which x86-64 CPUs run natively) counts
    as native: arm/v7 on arm64 works on some CPUs and not others, so it is reported."""
    host = host or platforms.host()
    if platform.os != host.os:
        return True
    return platform.arch != host.arch and (host.arch, platform.arch) != ("amd64", "386")


def emulation_note(req, *, native_builder: bool = False) -> str | None:
    """The note shown with the node when its RUN steps execute under emulation."""
    plat = None if native_builder else _emulated_run(req)
    if plat is None:
        return None
    return (f"emulated: RUN for {plat} on a {platforms.host()} host runs under QEMU "
            "(often 5-10x slower); give this platform a native builder (docs/backends.md)")


def _emulated_run(req) -> platforms.Platform | None:
    """The platform of the first stage to build whose RUN executes under emulation (a stage
    FROM --platform=$BUILDPLATFORM runs natively, whatever the node builds), or None."""
    from ..dockerfile.instructions import Run
    from .plan import stage_platforms

    if not req.plan.runs:
        return None
    plats = stage_platforms(req.plan, req.platform)
    return next((plats[i] for i in req.plan.order if emulated(plats[i])
                 and any(isinstance(c, Run) for c in req.plan.stages[i].commands)), None)


def no_emulator_hint(platform: platforms.Platform) -> str:
    return (f"this {platforms.host()} machine cannot execute {platform} programs: register QEMU "
            "(apt-get install qemu-user-static binfmt-support) or build on a native "
            f"{platform} builder (docs/backends.md)")


# -- naming the failed instruction ------------------------------------------------------------

def _norm(text: str) -> str:
    return " ".join(text.replace("\\\n", " ").split())


def instruction_line(plan, stage_index: int | None, step: int | None, text: str) -> int | None:
    """The Dockerfile line of the instruction a tool reports as ``[stage] STEP n: text``.

    The position (stage, step; step 1 is FROM) is trusted when its instruction's text agrees;
    otherwise the first instruction with that text anywhere in the file; otherwise the position.
    """
    want = _norm(text)
    positional = None
    if stage_index is not None and 0 <= stage_index < len(plan.stages) and step:
        stage = plan.stages[stage_index]
        if step == 1:
            positional = stage.line
        elif step - 2 < len(stage.commands):
            cmd = stage.commands[step - 2]
            positional = cmd.line
            if _norm(cmd.original) == want:
                return cmd.line
    for stage in plan.stages:
        for cmd in stage.commands:
            if _norm(cmd.original) == want:
                return cmd.line
    return positional


def layout_name(name: str, digest: str) -> str:
    """A directory name for a named context's image: stable for the same name and content (the
    tools write it into the image history), and a valid lowercase repository name."""
    safe = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "context"
    return f"{safe[:40]}-{digest.split(':', 1)[1][:12]}"


def dockerfile_flags(req, context_args: list[str],
                     build_args: dict[str, str] | None = None) -> list[str]:
    """The flags `buildah bud` and `docker buildx build` spell alike: stage, build args (the
    request's, unless given), labels, named contexts (sorted, so the same request gives the
    same command line)."""
    argv = ["--target", req.target] if req.target else []
    for key, value in sorted((req.build_args if build_args is None else build_args).items()):
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in sorted(req.labels.items()):
        argv += ["--label", f"{key}={value}"]
    for arg in context_args:
        argv += ["--build-context", arg]
    return argv


def secret_flags(req) -> list[str]:
    """``--secret id=ID,src=PATH|env=NAME`` and ``--ssh ID[=PATH,...]`` (buildx and buildah
    spell them alike): where a value comes from, never the value."""
    argv: list[str] = []
    for s in req.secrets:
        argv += ["--secret", f"id={s.id},{s.kind}={s.source}"]
    for a in req.ssh:
        argv += ["--ssh", f"{a.id}={','.join(a.paths)}" if a.paths else a.id]
    return argv


def check_secrets(req) -> None:
    """Every secret's source exists before the tool runs (the tool's own message would not say
    which BUILD.yaml entry it came from); the message names the source, never a value."""
    for s in req.secrets:
        if s.kind == "src" and not os.path.isfile(s.source):
            raise ActionFailed(f"{s.where}: secret '{s.id}': file {s.source} not found\n  hint: "
                               "create it, or take the secret from the environment with "
                               f"`secrets: {{{s.id}: {{env: NAME}}}}`")
        if s.kind == "env" and s.source not in os.environ:
            raise ActionFailed(f"{s.where}: secret '{s.id}': environment variable {s.source} is "
                               f"not set\n  hint: export {s.source} before the build")
    for a in req.ssh:
        if not a.paths and a.id == "default" and not os.environ.get("SSH_AUTH_SOCK"):
            raise ActionFailed(f"{req.label}: ssh 'default' forwards $SSH_AUTH_SOCK, which is not "
                               "set\n  hint: start an agent (eval $(ssh-agent); ssh-add), or "
                               "name key files: `ssh: {default: [~/.ssh/id_ed25519]}`")


def ignore_file(req, scratch: Path) -> Path | None:
    """An ignore file for a tool that reads the context itself, when graphbuild excludes
    something the .dockerignore does not (its cache directory inside the context); None: the
    context's own .dockerignore is right as it is."""
    from .plan import ignore_lines

    if not req.exclude:
        return None
    path = scratch / "context.dockerignore"
    path.write_text("\n".join(ignore_lines(req.context_dir, req.dockerfile, req.exclude)))
    return path


def dockerfile_with_ignore(req, scratch: Path) -> Path:
    """The Dockerfile to give BuildKit: the request's, or a copy beside a
    ``<Dockerfile>.dockerignore`` (which BuildKit prefers to the context's .dockerignore) when
    graphbuild excludes something more."""
    ignore = ignore_file(req, scratch)
    if ignore is None:
        return req.dockerfile
    folder = scratch / "dockerfile"
    folder.mkdir(exist_ok=True)
    copy = folder / req.dockerfile.name
    copy.write_bytes(req.dockerfile.read_bytes())
    ignore.replace(folder / f"{req.dockerfile.name}.dockerignore")
    return copy
