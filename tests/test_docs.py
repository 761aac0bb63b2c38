"""The rule reference lists every attribute of every built-in rule."""

from conftest import REPO

from graphbuild.engine import rule_registry


def test_build_files_doc_lists_every_attribute():
    text = (REPO / "docs/build-files.md").read_text()
    for name in rule_registry.names():
        assert f"### `{name}`" in text
        for attr in rule_registry.get(name).all_attrs():
            assert f"| `{attr}` |" in text, f"{name}.{attr} undocumented"
