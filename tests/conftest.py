"""Shared fixtures: a workspace written from a dict, run through the CLI in-process or as a
subprocess, and the rule for tools that CI must have."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def need_tool(name: str) -> str:
    """The path of a tool; a missing tool fails under CI=true and skips elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI (.ci/run installs it)")
    pytest.skip(f"{name} is not installed")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.out.splitlines() if line.startswith("{")]

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class WorkspaceFixture:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "WORKSPACE.yaml").touch()

    def write(self, files: dict[str, str | bytes]) -> WorkspaceFixture:
        """Write files (text is dedented) relative to the root."""
        for rel, content in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content).lstrip("\n"))
        return self

    def path(self, rel: str) -> Path:
        return self.root / rel

    def run(self, *args: str) -> Result:
        """The CLI in-process (fast); stdout and stderr captured."""
        from graphbuild.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["-C", str(self.root), *args])
            except SystemExit as exc:  # argparse errors
                code = exc.code if isinstance(exc.code, int) else 2
        return Result(code, out.getvalue(), err.getvalue())

    def run_subprocess(self, *args: str, env: dict | None = None, timeout: float = 300) -> Result:
        """The installed CLI as a separate process, as users run it."""
        proc = subprocess.run([sys.executable, "-m", "graphbuild", "-C", str(self.root), *args], check=False,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, cwd=self.root)
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def ws(tmp_path: Path) -> WorkspaceFixture:
    return WorkspaceFixture(tmp_path / "ws")


@pytest.fixture
def make_ws(tmp_path: Path):
    """A factory for several workspaces in one test."""
    def make(name: str = "ws") -> WorkspaceFixture:
        return WorkspaceFixture(tmp_path / name)

    return make


@pytest.fixture
def trust_fresh_paths(monkeypatch):
    """Let the tree cache trust paths changed just now (in-process runs only): without it a
    test would wait out the two-second racy window before anything is remembered. Tests that
    use it check that changes are still seen through the cache."""
    from graphbuild.engine import treecache

    monkeypatch.setattr(treecache, "RACY_NS", 0)


def last_layer(ws: WorkspaceFixture, node: str) -> dict:
    """name -> TarInfo of the last layer of ``node``'s image in the workspace's store."""
    import tarfile

    from graphbuild.oci.store import Store

    store = Store(ws.path(".graphbuild/oci"))
    layer = store.read_json(store.lookup(node)["digest"])["layers"][-1]
    with tarfile.open(fileobj=io.BytesIO(store.read_bytes(layer["digest"]))) as tar:
        return {m.name: m for m in tar.getmembers()}
