"""Image history entries written as BuildKit's Dockerfile frontend writes them
(``dockerfile2llb.commitToHistory``): the same ``created_by`` text and comment, so an image built
natively has the same config as the one buildx builds from the same Dockerfile.

Each text is made from the instruction after expansion and, where BuildKit prints the image
state, from the config the instruction left (WORKDIR, CMD, ENTRYPOINT, HEALTHCHECK). ONBUILD
writes no entry, as in BuildKit.
"""

from __future__ import annotations

from functools import lru_cache

from ..dockerfile.shell import go_quote

COMMENT = "buildkit.dockerfile.v0"  # the frontend's historyComment: the format, not the tool


def entry(created: str, created_by: str, layer: bool) -> dict:
    out = {"created": created, "created_by": created_by, "comment": COMMENT}
    if not layer:
        out["empty_layer"] = True
    return out


def created_by(cmd, config: dict) -> str | None:
    """The ``created_by`` of one instruction, ``config`` being the image config after it;
    None for an instruction BuildKit records nothing for (ONBUILD; ARG goes through
    ``arg_text``, one entry per instruction)."""
    text = _texts().get(type(cmd))
    return text(cmd, config.get("config", {})) if text else None


@lru_cache(maxsize=1)
def _texts() -> dict:
    """Instruction type -> its text from (instruction, config after it)."""
    from ..dockerfile import instructions as ins

    return {
        ins.Env: lambda c, _: "ENV" + "".join(f" {k}={v}" for k, v in c.pairs),
        ins.Label: lambda c, _: "LABEL" + "".join(f" {k}={v}" for k, v in c.pairs),
        ins.Workdir: lambda _, cfg: f"WORKDIR {cfg.get('WorkingDir') or '/'}",
        ins.User: lambda c, _: f"USER {c.user}",
        ins.Expose: lambda c, _: f"EXPOSE {_go_list(_port_list(c))}",
        ins.Volume: lambda c, _: f"VOLUME {_go_list(c.paths)}",
        ins.StopSignal: lambda c, _: f"STOPSIGNAL {c.signal}",
        ins.Cmd: lambda _, cfg: f"CMD {_go_quoted_list(cfg.get('Cmd') or [])}",
        ins.Entrypoint: lambda _, cfg: f"ENTRYPOINT {_go_quoted_list(cfg.get('Entrypoint') or [])}",
        ins.Shell: lambda c, _: f"SHELL {_go_list(c.args)}",
        ins.Healthcheck: lambda _, cfg: f"HEALTHCHECK {_healthcheck(cfg.get('Healthcheck') or {})}",
        ins.Maintainer: lambda c, _: f"MAINTAINER {c.maintainer}",
        ins.Copy: lambda c, _: copy_text(c),
    }


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
