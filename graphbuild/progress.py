"""Progress for people: a live rich display on a terminal, plain lines otherwise, and a summary."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter

STATUS_ORDER = ("built", "cached", "failed", "skipped")
RUNNING_TIME_WIDTH = 8  # "  1234.5" before the "s" of a running node's line
ELLIPSIS = "\u2026"


def make_reporter(output: str, *, explain: bool, nodes: dict,
                  explanations: dict[str, list[str]] | None = None):
    if output == "json":
        return None
    if output == "auto" and sys.stderr.isatty():
        return RichReporter(explain, nodes, explanations=explanations)
    return PlainReporter(explain, nodes, explanations=explanations)


class PlainReporter:
    """One line per node that ran, failed or was skipped; cached nodes stay quiet."""

    def __init__(self, explain: bool, nodes: dict, stream=None,
                 explanations: dict[str, list[str]] | None = None) -> None:
        self.explain = explain
        self.actions = nodes
        # label -> what analysis chose for it (auto's backend): said before its first node runs
        self.explanations = dict(explanations or {})
        self.total = len(nodes)
        self.done = 0
        self.stream = stream or sys.stderr
        self.counts: Counter = Counter()
        self.by_mnemonic: dict[str, Counter] = {}
        self.failures: list[dict] = []  # repeated after the summary
        self.lock = threading.Lock()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def on_start(self, node: str, reason: str) -> None:
        if self.explain:
            action = self.actions.get(node)
            with self.lock:
                said = self.explanations.pop(str(action.label), []) if action else []
            for text in said:
                self._print(f"explain {action.label}: {text}")
            self._print(f"explain {node}: {reason}")

    def on_event(self, ev: dict) -> None:
        if ev.get("event") != "action_finished":
            if ev.get("event") == "pushed":
                self._print(f"pushed  {ev['ref']}@{ev['digest']}")
            return
        with self.lock:
            self.done += 1
            self.counts[ev["status"]] += 1
            self.by_mnemonic.setdefault(ev["mnemonic"], Counter())[ev["status"]] += 1
        self.line(ev)

    def line(self, ev: dict) -> None:
        status = ev["status"]
        if status == "cached":
            return
        text = f"[{self.done}/{self.total}] {status:7} {ev['node']}"
        if status == "built":
            text += f" ({ev['duration_s']:.2f}s)"
            # why it ran was said when it started (--explain); notes (say, emulation in use)
            # are worth seeing either way
            if ev.get("notes"):
                text += f": {'; '.join(ev['notes'])}"
        else:
            text += f": {ev['reason']}"
        self._print(text)
        if status == "failed":
            self.failures.append(ev)
            if ev.get("log"):
                self._print("  | " + "\n  | ".join(ev["log"].splitlines()))

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def summary(self, summary) -> None:
        if summary is None:
            return
        rows = sorted(self.by_mnemonic.items())
        head = f"{'action':<12}" + "".join(f"{s:>9}" for s in STATUS_ORDER)
        lines = [head]
        for mnem, c in rows:
            lines.append(f"{mnem:<12}" + "".join(f"{c.get(s, 0):>9}" for s in STATUS_ORDER))
        lines.append(f"{'total':<12}" + "".join(f"{self.counts.get(s, 0):>9}" for s in STATUS_ORDER))
        lines += self.failure_lines()
        verdict = "success" if summary.ok else "FAILED"
        lines.append(f"{verdict} in {summary.duration:.2f}s")
        self._print("\n".join(lines))

    def failure_lines(self) -> list[str]:
        """The failures again, after the summary: with --keep-going they scrolled away among
        hundreds of lines."""
        if not self.failures:
            return []
        out = [f"failed ({len(self.failures)}):"]
        for ev in self.failures:
            first = (ev["reason"] or "").splitlines()[0] if ev["reason"] else ""
            out.append(f"  {ev['node']}: {first}")
        return out


class RichReporter(PlainReporter):
    """A live table of running nodes and counts (per platform) above scrolling result lines."""

    def __init__(self, explain: bool, nodes: dict, console=None,
                 explanations: dict[str, list[str]] | None = None) -> None:
        super().__init__(explain, nodes, explanations=explanations)
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.running: dict[str, float] = {}
        self.per_platform: dict[str, Counter] = {}
        self.live = None

    def start(self) -> None:
        from rich.live import Live

        self.live = Live(self._render(), console=self.console, refresh_per_second=8,
                         transient=True, get_renderable=self._render)
        self.live.start()

    def stop(self) -> None:
        if self.live:
            self.live.stop()

    def on_start(self, node: str, reason: str) -> None:
        with self.lock:
            self.running[node] = time.monotonic()
        super().on_start(node, reason)

    def on_event(self, ev: dict) -> None:
        if ev.get("event") == "action_finished":
            with self.lock:
                self.running.pop(ev["node"], None)
                plat = ev.get("platform") or "-"
                self.per_platform.setdefault(plat, Counter())[ev["status"]] += 1
        super().on_event(ev)

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def _render(self):
        from rich.table import Table
        from rich.text import Text

        # Cells are Text, not markup strings: when a line is printed with markup=False while the
        # display is live, rich renders this table with those same options.
        table = Table.grid(padding=(0, 2))

        def row(*cells) -> None:
            table.add_row(*(c if isinstance(c, Text) else Text.from_markup(c) for c in cells))

        with self.lock:
            c = self.counts
            row(f"[bold]{self.done}/{self.total}[/] done", f"running {len(self.running)}",
                f"[green]built {c['built']}", f"cached {c['cached']}",
                f"[red]failed {c['failed']}", f"skipped {c['skipped']}")
            for plat, pc in sorted(self.per_platform.items()):
                row(f"  {plat}", "", f"built {pc['built']}", f"cached {pc['cached']}",
                    f"failed {pc['failed']}", f"skipped {pc['skipped']}")
            now = time.monotonic()
            running = sorted(self.running.items(), key=lambda kv: kv[1])[:12]
        # one line per running node, below the counts: the name gets the console's width,
        # shortened from the middle so that two names never look the same
        width = max(self.console.width - 3 - RUNNING_TIME_WIDTH, 12)
        names = shorten_distinct([node for node, _ in running], width)
        pad = max(map(len, names.values()), default=0)
        lines = [Text.assemble(("  " + names[node].ljust(pad), "cyan"),
                               f"{now - t0:>{RUNNING_TIME_WIDTH}.1f}s", no_wrap=True)
                 for node, t0 in running]
        from rich.console import Group

        return Group(table, *lines)

    def summary(self, summary) -> None:
        if summary is None:
            return
        from rich.table import Table

        table = Table(title="graphbuild summary")
        table.add_column("action")
        for s in STATUS_ORDER:
            table.add_column(s, justify="right")
        for mnem, c in sorted(self.by_mnemonic.items()):
            table.add_row(mnem, *(str(c.get(s, 0)) for s in STATUS_ORDER))
        table.add_row("total", *(str(self.counts.get(s, 0)) for s in STATUS_ORDER), style="bold")
        self.console.print(table)
        for line in self.failure_lines():
            self._print(line)
        verdict = "[green]success" if summary.ok else "[red]FAILED"
        self.console.print(f"{verdict}[/] in {summary.duration:.2f}s")


def shorten_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` by dropping its middle: the package at the start and the
    target and platform at the end are what tell nodes apart."""
    if len(text) <= width:
        return text
    tail = (width - 1) * 2 // 3
    return text[:width - 1 - tail] + ELLIPSIS + text[len(text) - tail:]


def shorten_distinct(names: list[str], width: int) -> dict[str, str]:
    """Each name shortened to ``width``. Names that would look the same are shown, after a
    short head, from where they start to differ; repeated until none look the same."""
    import os

    out = {n: shorten_middle(n, width) for n in names}
    for _ in range(len(names)):
        by_short: dict[str, list[str]] = {}
        for n, short in out.items():
            by_short.setdefault(short, []).append(n)
        groups = [g for g in by_short.values() if len(g) > 1]
        if not groups:
            break
        for group in groups:
            at = len(os.path.commonprefix(group))
            for n in group:
                out[n] = _window(n, at, width)
    return out


def _window(text: str, at: int, width: int) -> str:
    """``text`` in ``width`` characters with ``text[at]`` at the same column whatever the text:
    a head, an ellipsis, the text from ``at`` on and, if that is too long, an ellipsis and
    the tail."""
    if len(text) <= width:
        return text
    head = min(at, width // 4)
    rest = text[at:]
    if head + 1 + len(rest) <= width:
        return text[:head] + ELLIPSIS + rest
    tail = (width - head - 2) // 2
    return text[:head] + ELLIPSIS + rest[:width - head - 2 - tail] + ELLIPSIS + text[-tail:]
