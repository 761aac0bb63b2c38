"""Examples are tests (DESIGN example 8): each workspace under examples/ builds, and being
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
        "//:v1": "sha256:e1252d760285cbc8ca333cb92a864119389b0a7800b88de374e76305a27a5fa7",
        "//:app": "sha256:477e49b6de35016665afa1de6eae91bb03dd457b3ec59f296780498a969cd8ed",
    },
    "monorepo": {
        "//services/api:api":
            "sha256:3c0bc384e8a6109111ed9be8969744c000e40f4a7c7f01a2e4ba8121174f5fa7",
        "//services/worker:worker":
            "sha256:dea4137be3f31529f11c1d26c6ed970860a9ba4893f288ed72acad98f3436a7b",
        "//services/web:web":
            "sha256:0c05613add57510d9777af9e36aa467549835814f22fabd7ac94d79b97f4a03c",
        "//base:base": "sha256:c0a46d7cad365497ce8499be4e6f313b567ddf8eeefb302c80075a278fadcbab",
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
    assert sorted(p.name for p in (REPO / "examples").iterdir() if p.is_dir()) == sorted(EXPECTED)


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
