"""Progress for people: a live rich display on a terminal, plain lines otherwise, and a summary."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter

STATUS_ORDER = ("built", "cached", "failed", "skipped")


def make_reporter(output: str, *, explain: bool, nodes: dict):
    if output == "json":
        return None
    if output == "auto" and sys.stderr.isatty():
        return RichReporter(explain, nodes)
    return PlainReporter(explain, nodes)


class PlainReporter:
    """One line per node that ran, failed or was skipped; cached nodes stay quiet."""

    def __init__(self, explain: bool, nodes: dict, stream=None) -> None:
        self.explain = explain
        self.actions = nodes
        self.total = len(nodes)
        self.done = 0
        self.stream = stream or sys.stderr
        self.counts: Counter = Counter()
        self.by_mnemonic: dict[str, Counter] = {}
        self.lock = threading.Lock()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def on_start(self, node: str, reason: str) -> None:
        if self.explain:
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
            if self.explain:
                text += f": {ev['reason']}"
            elif ev.get("notes"):  # e.g. emulation in use: worth seeing without --explain
                text += f": {'; '.join(ev['notes'])}"
        else:
            text += f": {ev['reason']}"
        self._print(text)
        if status == "failed" and ev.get("log"):
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
        verdict = "success" if summary.ok else "FAILED"
        lines.append(f"{verdict} in {summary.duration:.2f}s")
        self._print("\n".join(lines))


class RichReporter(PlainReporter):
    """A live table of running nodes and counts (per platform) above scrolling result lines."""

    def __init__(self, explain: bool, nodes: dict) -> None:
        super().__init__(explain, nodes)
        from rich.console import Console

        self.console = Console(stderr=True)
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
            for node, t0 in sorted(self.running.items(), key=lambda kv: kv[1])[:12]:
                row(Text(f"  {node}", style="cyan"), f"{now - t0:.1f}s", "", "", "", "")
        return table

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
        verdict = "[green]success" if summary.ok else "[red]FAILED"
        self.console.print(f"{verdict}[/] in {summary.duration:.2f}s")
