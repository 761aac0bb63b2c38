"""Image history entries written as BuildKit's Dockerfile frontend writes them
(``dockerfile2llb.commitToHistory``): the same ``created_by`` text and comment, so an image built
natively has the same config as the one buildx builds from the same Dockerfile.

Each text is made from the instruction after expansion and, where BuildKit prints the image
state, from the config the instruction left (WORKDIR, CMD, ENTRYPOINT, HEALTHCHECK). ONBUILD
writes no entry, as in BuildKit.
"""

from __future__ import annotations

from ..dockerfile.shell import go_quote

COMMENT = "buildkit.dockerfile.v0"  # the frontend's historyComment: the format, not the tool


def entry(created: str, created_by: str, layer: bool) -> dict:
    out = {"created": created, "created_by": created_by, "comment": COMMENT}
    if not layer:
        out["empty_layer"] = True
    return out


def created_by(cmd, config: dict) -> str | None:
    """The ``created_by`` of one instruction, ``config`` being the image config after it;
    None for an instruction BuildKit records nothing for."""
    from ..dockerfile import instructions as ins

    cfg = config.get("config", {})
    if isinstance(cmd, ins.Env):
        return "ENV" + "".join(f" {k}={v}" for k, v in cmd.pairs)
    if isinstance(cmd, ins.Label):
        return "LABEL" + "".join(f" {k}={v}" for k, v in cmd.pairs)
    if isinstance(cmd, ins.Workdir):
        return f"WORKDIR {cfg.get('WorkingDir') or '/'}"
    if isinstance(cmd, ins.User):
        return f"USER {cmd.user}"
    if isinstance(cmd, ins.Expose):
        return f"EXPOSE {_go_list(_port_list(cmd))}"
    if isinstance(cmd, ins.Volume):
        return f"VOLUME {_go_list(cmd.paths)}"
    if isinstance(cmd, ins.StopSignal):
        return f"STOPSIGNAL {cmd.signal}"
    if isinstance(cmd, ins.Cmd):
        return f"CMD {_go_quoted_list(cfg.get('Cmd') or [])}"
    if isinstance(cmd, ins.Entrypoint):
        return f"ENTRYPOINT {_go_quoted_list(cfg.get('Entrypoint') or [])}"
    if isinstance(cmd, ins.Shell):
        return f"SHELL {_go_list(cmd.args)}"
    if isinstance(cmd, ins.Healthcheck):
        return f"HEALTHCHECK {_healthcheck(cfg.get('Healthcheck') or {})}"
    if isinstance(cmd, ins.Maintainer):
        return f"MAINTAINER {cmd.maintainer}"
    if isinstance(cmd, ins.Copy):
        return copy_text(cmd)
    return None  # ONBUILD; ARG goes through arg_text (one entry per instruction)


def arg_text(args: list) -> str:
    """One ARG instruction, all its names: ``ARG A=1 B`` (a value when it has one)."""
    return "ARG " + " ".join(a.name if a.value is None else f"{a.name}={a.value}" for a in args)


def copy_text(cmd) -> str:
    """COPY/ADD as dispatchCopy prints it: --parents, --chown, --chmod (not --from, --link or
    --exclude), the sources, heredoc names, the destination; ``# buildkit`` for a layer made
    by an LLB state."""
    words = ["ADD" if cmd.is_add else "COPY"]
    if cmd.parents:
        words.append("--parents")
    if cmd.chown:
        words.append(f"--chown={cmd.chown}")
    if cmd.chmod:
        words.append(f"--chmod={cmd.chmod}")
    words += cmd.sources
    words += [f"<<{doc.path}" for doc in cmd.heredocs]
    words.append(cmd.dest)
    return " ".join(words) + " # buildkit"


def _port_list(cmd) -> list[str]:
    """EXPOSE's ports in order, ranges spelled out, repeats kept (BuildKit prints its list)."""
    from ..dockerfile.instructions import port_specs

    return [p for word in cmd.ports for p in port_specs([word], cmd.line)]


def _go_list(items) -> str:
    """Go's ``%v`` of a []string."""
    return "[" + " ".join(items) + "]"


def _go_quoted_list(items) -> str:
    """Go's ``%q`` of a []string."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def _healthcheck(hc: dict) -> str:
    """Go's ``%+v`` of a HealthcheckConfig."""
    return (f"{{Test:{_go_list(hc.get('Test') or [])} "
            f"Interval:{go_duration(hc.get('Interval', 0))} "
            f"Timeout:{go_duration(hc.get('Timeout', 0))} "
            f"StartPeriod:{go_duration(hc.get('StartPeriod', 0))} "
            f"StartInterval:{go_duration(hc.get('StartInterval', 0))} "
            f"Retries:{hc.get('Retries', 0)}}}")


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``0s``, ``1.5s``, ``1m30s``, ``2h0m0s``, ``250ms``."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < 1_000_000_000:
        for unit, scale, digits in (("ns", 1, 0), ("µs", 1_000, 3), ("ms", 1_000_000, 6)):
            if u < scale * 1000:
                return sign + _frac(u, scale, digits) + unit
    secs, out = u // 1_000_000_000, ""
    minutes, hours = secs // 60, secs // 3600
    text = _frac(u % 60_000_000_000, 1_000_000_000, 9) + "s"
    if minutes:
        text = f"{minutes % 60}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + out + text


def _frac(value: int, scale: int, digits: int) -> str:
    whole, rest = divmod(value, scale)
    if not rest:
        return str(whole)
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")
