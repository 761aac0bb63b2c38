"""The workspace's git commit and whether its tree is dirty, read once per process."""

from __future__ import annotations

import functools
import subprocess


@functools.lru_cache(maxsize=8)
def git_state(root: str) -> dict | None:
    """{"commit": sha, "dirty": bool} for the checkout holding ``root``; None outside git."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                                  timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = git("rev-parse", "--verify", "-q", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit.strip(), "dirty": bool(status and status.strip())}
