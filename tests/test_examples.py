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
        "//:v1": "sha256:b9d59c1951ff578cce864b3439d51b7b138ac0f24ff3d2f6b7219d2a87588e14",
        "//:app": "sha256:01c82be2642b1fb26dc9e61d8a9c957bdd53ef9a3303870baafff2d4ce9ca8c5",
    },
    "monorepo": {
        "//services/api:api":
            "sha256:d581d8ba5e08b7a5653992bfce2528111c36d96b03863743baf960ac2e4d4d56",
        "//services/worker:worker":
            "sha256:7e7e34ab042f59bb2ba194c2511e6900c504ae9112a67ebb093f578bb34c7822",
        "//services/web:web":
            "sha256:bba339a39ebdf96cac033d3b5da5673a0a390d5cdca6ce82232f24091ea4cd15",
        "//base:base": "sha256:35357c4e1a3f57d6f5830ae7c4b6e03d2da31e741706c1b711cfd74366548f58",
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
