"""A backend's warnings that change the image reach the user: buildah's HEALTHCHECK (and SHELL,
ONBUILD) dropped from an OCI image used to be swallowed."""

from __future__ import annotations

from conftest import need_tool


def test_buildah_warnings_that_change_the_image_reach_the_user(ws):
    """buildah leaves HEALTHCHECK out of an OCI image with only a warning in its log: the run
    says so (in the node's result line and its event's notes)."""
    need_tool("buildah")
    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": "app:\n  rule: image\n  backend: buildah\n",
        "app/Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\nHEALTHCHECK CMD [\"/bin/true\"]\n",
        "app/a.txt": "a\n",
    })
    res = ws.run("run", "//...", "--output", "json")
    assert res.code == 0, res
    notes = [n for e in res.events() if e["event"] == "action_finished" for n in e["notes"]]
    assert any("HEALTHCHECK is not supported" in n for n in notes), notes
    plain = ws.run("run", "//...", "--output", "plain", "--no-cache")
    assert "HEALTHCHECK is not supported" in plain.err + plain.out, plain


def test_a_heredoc_with_an_old_buildah_is_exit_2_before_anything_runs(ws):
    """Debian 12's buildah 1.28 takes `COPY <<EOT` for a file name and fails at build time:
    the load says so at the line instead (newer buildah builds it)."""
    need_tool("buildah")
    from graphbuild.backends import buildah

    ws.write({
        "WORKSPACE.yaml": "default_platforms: [linux/amd64]\n",
        "app/BUILD.yaml": "app:\n  rule: image\n  backend: buildah\n",
        "app/Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\nCOPY <<EOT /hello.txt\nhi\nEOT\n",
        "app/a.txt": "a\n",
    })
    res = ws.run("run", "//...")
    if buildah.supports_heredocs():
        assert res.code == 0, res
        return
    assert res.code == 2, res
    assert "app/Dockerfile:3: //app:app: buildah" in res.err and "heredoc" in res.err
    assert "backend: buildx" in res.err and "Traceback" not in res.err
