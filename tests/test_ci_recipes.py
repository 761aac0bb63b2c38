"""The CI recipes of examples/ci run: each job's graphbuild steps, with matrices expanded, in
their own workspace copy (a fresh runner) against one real registry. The pull-request job only
reads the cache; the shards build the graph between them; the final push job builds nothing
and downloads no layer."""

from __future__ import annotations

import itertools
import re
import shlex

import pytest
import registry_fixtures as fx
import yaml
from conftest import REPO
from registry_fixtures import unique_repo
from test_remote_cache import _files, _layers, _run, _runner

registry = fx.registry


def _github_jobs(doc: dict) -> list[tuple[str, dict, list[str]]]:
    """(job name, env, argv) of every graphbuild step, each matrix entry a job of its own."""
    out = []
    for name, job in doc["jobs"].items():
        entries = job.get("strategy", {}).get("matrix", {}).get("include", [{}])
        for entry in entries:
            for step in job["steps"]:
                line = step.get("run", "")
                if "graphbuild run" not in line:
                    continue
                line = re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m, e=entry: e[m.group(1)], line)
                out.append((f"{name}{entry}", {}, shlex.split(line.split("graphbuild", 1)[1])))
    return out


def _gitlab_jobs(doc: dict) -> list[tuple[str, dict, list[str]]]:
    out = []
    for name, job in doc.items():
        if not isinstance(job, dict) or "script" not in job:
            continue
        for entry in _gitlab_matrix(job):
            env = {**job.get("variables", {}), **entry}
            for line in job["script"]:
                if "graphbuild run" not in line:
                    continue
                line = re.sub(r"\$(\w+)", lambda m, e=env: e[m.group(1)], line)
                out.append((f"{name}{entry}", env, shlex.split(line.split("graphbuild", 1)[1])))
    return out


def _gitlab_matrix(job: dict) -> list[dict]:
    rows = job.get("parallel", {}).get("matrix")
    if not rows:
        return [{}]
    out = []
    for row in rows:
        keys = list(row)
        values = [v if isinstance(v, list) else [v] for v in row.values()]
        out += [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    return out


@pytest.mark.parametrize("recipe,jobs_of", [("github-actions.yml", _github_jobs),
                                             ("gitlab-ci.yml", _gitlab_jobs)])
def test_recipe_runs_pr_shards_and_final_push(tmp_path, registry, monkeypatch, recipe, jobs_of):
    doc = yaml.safe_load((REPO / "examples" / "ci" / recipe).read_text())
    jobs = jobs_of(doc)
    assert next(j[0].split("{")[0] for j in jobs) in ("pr", "mr")
    cache = unique_repo("cache")
    files = _files(f"{registry.host}/{cache}", tag_host=f"{registry.host}/{unique_repo('rel')}",
                   apps=3)
    pr, *builds, push = jobs
    assert len(builds) == 3 and "--push" in push[2]
    _step(tmp_path, "pr", files, pr, monkeypatch)
    assert not registry.requests(cache, "PUT", "manifests"), "the PR job wrote the cache"
    for i, job in enumerate(builds):
        _step(tmp_path, f"shard{i}", files, job, monkeypatch)
    seen = len(registry.requests(cache, "GET", "blobs"))
    final = _step(tmp_path, "push", files, push, monkeypatch)
    built = [e for e in final if e["status"] == "built" and e["rule"] != "push"]
    # the shards ran per platform: only the indexes over both are assembled here
    assert built and all(e["platform"] is None and e["rule"] in ("image", "manifest")
                         for e in built), built
    layers = set().union(*(_layers(_runner(tmp_path, f"shard{i}", files)) for i in range(3)))
    fetched = {p.split("/blobs/")[1] for _, p, _ in registry.requests(cache, "GET", "blobs")[seen:]}
    assert layers and not fetched & layers


def _step(tmp_path, name: str, files: dict, job, monkeypatch) -> list[dict]:
    _, env, argv = job
    with monkeypatch.context() as m:
        m.delenv("GRAPHBUILD_REMOTE_CACHE", raising=False)
        for key, value in env.items():
            if key.startswith("GRAPHBUILD_"):
                m.setenv(key, value)
        assert argv[0] == "run"
        _, events, _ = _run(_runner(tmp_path, name, files), *argv[1:])
    return events
