"""A symlink in a build context that points outside it (absolute, or climbing with ``..``) is
copied by ``COPY .`` as a symlink, as BuildKit and buildah do; its target is never read or
hashed, so editing a file outside the context does not rebuild the image (issue 12)."""

from __future__ import annotations

import os


def statuses(res) -> list[str]:
    assert res.code == 0, res
    return [e["status"] for e in res.events() if e["event"] == "action_finished"]


def run(ws, *args: str) -> list[str]:
    return statuses(ws.run("run", "//p:img", "--output", "json", *args))


def test_editing_a_file_outside_the_context_does_not_rebuild(ws):
    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64], context: ctx}\n",
        "p/Dockerfile": "FROM scratch\nCOPY . /app/\n",
        "p/ctx/a.txt": "A\n",
        "p/outside.txt": "in the workspace, outside the context\n",
        "elsewhere/abs.txt": "reached by an absolute symlink\n",
    })
    os.symlink("../outside.txt", ws.path("p/ctx/up"))
    os.symlink(ws.path("elsewhere/abs.txt"), ws.path("p/ctx/abs"))
    os.symlink("../../../../../../../../../../etc/hostname", ws.path("p/ctx/far"))
    assert run(ws) == ["built"]
    ws.write({"p/outside.txt": "edited\n", "elsewhere/abs.txt": "edited\n"})
    assert run(ws) == ["cached"]
    os.unlink(ws.path("p/ctx/up"))
    os.symlink("../other.txt", ws.path("p/ctx/up"))  # the link itself changed: that rebuilds
    assert run(ws) == ["built"]


def test_a_symlink_inside_the_context_still_tracks_its_target(ws):
    """A COPY source that is a symlink is followed (to a file inside the context): the target's
    content is the input, as it is what the image gets."""
    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64]}\n",
        "p/Dockerfile": "FROM scratch\nCOPY link /copied\n",
        "p/real.txt": "one\n",
    })
    os.symlink("real.txt", ws.path("p/link"))
    assert run(ws) == ["built"]
    assert run(ws) == ["cached"]
    ws.write({"p/real.txt": "two\n"})
    assert run(ws) == ["built"]
