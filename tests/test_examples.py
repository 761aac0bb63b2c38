"""Examples are tests: each workspace under examples/ builds, and being
reproducible, its indexes have exactly these digests on any machine and in any directory."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, need_tool

EXPECTED = {
    "manifest-workflow": {
        "//:v1": "sha256:18b33a71a1415d6e37d943fa7b4df6c54ca156f588d8b8be047b67b2354021c7",
        "//:app": "sha256:4420cfd42472a4b3cc11837a754114f757ece924ba6e5baf18fd9795053d244f",
    },
    "monorepo": {
        "//services/api:api":
            "sha256:d10dded95f214acb880b70deb3bb7df420d42f47a829dd82018f9a1ca689a75d",
        "//services/worker:worker":
            "sha256:84bb855ddfe70c4e813d5cac198f018694b96a9ef3f0fd5560a498a504fc3455",
        "//services/web:web":
            "sha256:28fe2fe148cdad7738dbc9e3845006b781e5f934f758bd493754ae23c80b62b7",
        "//base:base": "sha256:b0e665b0012eb1b864d604d79d8df952baab665c2055da2536b40075cb354396",
    },
}


def _copy(name: str, dest: Path) -> Path:
    root = dest / name
    shutil.copytree(REPO / "examples" / name, root,
                    ignore=shutil.ignore_patterns(".graphbuild"))
    return root


def _digests(root: Path) -> dict[str, str]:
    from conftest import WorkspaceFixture

    res = WorkspaceFixture(root).run("run", "//...", "--output", "json")
    assert res.code == 0, res
    return {e["label"]: e["digest"] for e in res.events()
            if e["event"] == "action_finished" and e["platform"] is None
            and e["rule"] in ("manifest", "image")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_builds_with_its_digests(name, tmp_path):
    digests = _digests(_copy(name, tmp_path))
    assert {k: digests[k] for k in EXPECTED[name]} == EXPECTED[name]


def test_examples_are_all_covered():
    """Every example workspace builds here; examples/ci (CI workflow files, no workspace) is
    run by test_ci_recipes.py."""
    dirs = [p for p in (REPO / "examples").iterdir() if p.is_dir()]
    assert sorted(p.name for p in dirs if (p / "WORKSPACE.yaml").exists()) == sorted(EXPECTED)
    assert sorted(p.name for p in dirs if not (p / "WORKSPACE.yaml").exists()) == ["ci"]


def test_root_build_example_is_the_runnable_workflow():
    """BUILD.example.yaml at the root is the manifest-workflow example, kept runnable."""
    assert (REPO / "BUILD.example.yaml").read_text() == \
        (REPO / "examples/manifest-workflow/BUILD.yaml").read_text()


def test_monorepo_images_unpack_with_the_binaries(tmp_path):
    """umoci unpacks each platform's api image: the per-arch binary from the command target,
    on the shared base, with the modes the Dockerfile asked for."""
    umoci = need_tool("umoci")
    root = _copy("monorepo", tmp_path)
    _digests(root)
    for arch in ("amd64", "arm64"):
        bundle = tmp_path / f"bundle-{arch}"
        proc = subprocess.run([umoci, "unpack", "--rootless", "--image",
                               f"{root}/.graphbuild/oci:example.com/monorepo/api:linux-{arch}",
                               str(bundle)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        binary = bundle / "rootfs/usr/local/bin/api"
        assert f"# api built for linux/{arch}" in binary.read_text()
        assert binary.stat().st_mode & 0o777 == 0o755
        assert "app:x:10001" in (bundle / "rootfs/etc/passwd").read_text()
        config = json.loads((bundle / "config.json").read_text())
        assert config["process"]["user"]["uid"] == 10001
