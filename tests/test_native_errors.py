"""What the native builder and the image and manifest rules refuse (issue 3, items 2, 6 and 9;
docs/build-files.md): exit 2 before anything runs, one `file:LINE: //label: what is wrong` line and a hint,
and nothing written to the store, not even for the good targets of the same run."""

from __future__ import annotations

import os
import textwrap

import pytest

GOOD = {
    "good/BUILD.yaml": "ok: {rule: image, platforms: [linux/amd64], tags: ['good:v1']}\n",
    "good/Dockerfile": "FROM scratch\nCOPY f.txt /f.txt\n",
    "good/f.txt": "fine\n",
}


def refused(ws, where: str, *phrases: str, hint: str | None = None,
            patterns: tuple[str, ...] = ("//p:all",)) -> str:
    """Run the bad workspace with a good image alongside; return the error's first line."""
    ws.write(GOOD)
    res = ws.run("run", "//good:ok", *patterns)
    assert res.code == 2, res
    assert "Traceback" not in res.err + res.out, res
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert lines, res
    first = lines[0]
    assert first.startswith(where + ": "), f"expected {where!r} first\n{res}"
    for phrase in phrases:
        assert phrase in first, f"expected {phrase!r} in the first line\n{res}"
    hints = [line.strip() for line in lines[1:] if line.strip().startswith("hint:")]
    assert hints, f"no hint line\n{res}"
    if hint is not None:
        assert hint in hints[0], f"expected hint {hint!r}\n{res}"
    nothing_written(ws)
    return first


def nothing_written(ws) -> None:
    oci = ws.path(".graphbuild/oci")
    blobs = oci / "blobs" / "sha256"
    assert not blobs.exists() or not any(blobs.iterdir()), sorted(blobs.iterdir())
    index = oci / "index.json"
    assert not index.exists() or '"manifests":[]' in index.read_text().replace(" ", "")


def image_ws(dockerfile: str, build: str | None = None, **files: str) -> dict:
    return {
        "p/BUILD.yaml": build or "img: {rule: image, platforms: [linux/amd64, linux/arm64]}\n",
        "p/Dockerfile": dockerfile,
        "p/a.txt": "A\n",
        **{f"p/{k.replace('__', '/')}": v for k, v in files.items()},
    }


# -- what the native backend cannot do -----------------------------------------------------------

@pytest.mark.parametrize("backend", ["", "backend: native"])
def test_run_under_native(ws, backend):
    ws.write(image_ws("FROM scratch\nCOPY a.txt /a\nRUN echo hi > /b\n",
                      f"img:\n  rule: image\n  platforms: [linux/amd64]\n  {backend}\n"))
    refused(ws, "p/Dockerfile:3: //p:img", "native backend cannot execute RUN",
            hint="buildah")
    res = ws.run("run", "//p:img")
    assert "buildx" in res.err, res


def test_run_in_an_unneeded_stage_is_fine(ws):
    ws.write(image_ws("FROM scratch AS tools\nRUN make\nFROM scratch\nCOPY a.txt /a\n"))
    res = ws.run("run", "//p:img")
    assert res.code == 0, res


def test_add_url_under_native(ws):
    ws.write(image_ws("FROM scratch\n\nADD https://example.com/tool.tgz /opt/\n"))
    refused(ws, "p/Dockerfile:3: //p:img", "ADD https://example.com/tool.tgz", hint="buildah")


# -- escaping the build context ------------------------------------------------------------------

def test_copy_dotdot_escapes_the_context(ws):
    ws.write({**image_ws("FROM scratch\nCOPY ../outside.txt /x\n"), "outside.txt": "no\n"})
    refused(ws, "p/Dockerfile:2: //p:img", "'../outside.txt' is outside the build context",
            hint="build context")


def test_dotdot_inside_a_longer_path_escapes_too(ws):
    ws.write({**image_ws("FROM scratch\nCOPY sub/../../outside.txt /x\n"),
              "outside.txt": "no\n", "p/sub/keep": ""})
    refused(ws, "p/Dockerfile:2: //p:img", "outside the build context")


def test_absolute_source(ws):
    ws.write(image_ws("FROM scratch\nCOPY a.txt /a\nCOPY /etc/hostname /x\n"))
    refused(ws, "p/Dockerfile:3: //p:img", "absolute", hint="drop the leading '/'")


@pytest.mark.parametrize("source, link, target", [
    ("link", "link", "../outside.txt"),
    ("link", "link", "/etc/hostname"),
    ("link", "link", "../outdir"),
    ("sub/link/f", "sub/link", "../../outdir"),  # followed on the way to a source
    ("*.lnk", "x.lnk", "../outside.txt"),  # matched by a wildcard
])
def test_symlink_leading_outside(ws, source, link, target):
    ws.write({**image_ws(f"FROM scratch\nCOPY a.txt /a\nCOPY {source} /x/\n"),
              "outside.txt": "secret\n", "outdir/f": "secret\n", "p/sub/keep": ""})
    os.symlink(target, ws.path(f"p/{link}"))
    refused(ws, "p/Dockerfile:3: //p:img", "link" if "link" in source else "lnk",
            hint="context")


def test_symlink_inside_a_copied_directory_is_copied_as_a_link(ws):
    """Not an escape: the link is copied verbatim, nothing outside the context is read."""
    ws.write({**image_ws("FROM scratch\nCOPY . /all/\n"), "outside.txt": "secret\n"})
    os.symlink("../outside.txt", ws.path("p/link"))
    assert ws.run("run", "//p:img").code == 0


# -- bad COPY/ADD --------------------------------------------------------------------------------

def test_missing_source(ws):
    ws.write(image_ws("FROM scratch\nCOPY a.txt missing.txt /x/\n"))
    refused(ws, "p/Dockerfile:2: //p:img", "missing.txt")


def test_missing_source_ignored_by_dockerignore(ws):
    ws.write(image_ws("FROM scratch\nCOPY a.txt /x\n", **{".dockerignore": "a.txt\n"}))
    refused(ws, "p/Dockerfile:2: //p:img", "a.txt")


def test_several_sources_need_a_directory_destination(ws):
    ws.write(image_ws("FROM scratch\nCOPY a.txt b.txt /x\n", **{"b.txt": "B\n"}))
    refused(ws, "p/Dockerfile:2: //p:img", "/")


def test_several_sources_from_a_stage_need_a_directory_destination(ws):
    ws.write(image_ws("FROM scratch AS s\nCOPY a.txt /a\nFROM scratch\nCOPY --from=s /a /b /x\n"))
    refused(ws, "p/Dockerfile:4: //p:img", "more than one source", hint="/x/")


@pytest.mark.parametrize("flag", ["garbage", "linux/armz", "$NOPE"])
def test_from_platform_must_name_a_platform_for_any_stage(ws, flag):
    ws.write(image_ws(f"FROM scratch AS s\nCOPY a.txt /a\nFROM --platform={flag} scratch\n"
                      "COPY --from=s /a /b\n"))
    refused(ws, "p/Dockerfile:3: //p:img", "FROM --platform:")


@pytest.mark.parametrize("chmod", ["999", "u+q", "abc", "77777"])
def test_bad_chmod(ws, chmod):
    ws.write(image_ws(f"FROM scratch\nCOPY --chmod={chmod} a.txt /x\n"))
    refused(ws, "p/Dockerfile:2: //p:img", "--chmod", hint="octal")


@pytest.mark.parametrize("context", ["d", ":cmd"])
def test_from_a_context_directory_is_refused(ws, context):
    ws.write(image_ws("FROM files\nCOPY a.txt /a\n", f"""
        img:
          rule: image
          platforms: [linux/amd64]
          contexts: {{files: "{context}"}}
        cmd: {{rule: command, cmd: "mkdir -p $OUT", platforms: [linux/amd64]}}
    """, d__f="x"))
    refused(ws, "p/Dockerfile:1: //p:img", "FROM files", "directory", hint="COPY --from")


def test_unknown_target_stage(ws):
    ws.write(image_ws("FROM scratch AS build\nCOPY a.txt /a\nFROM scratch AS final\n",
                      "img:\n  rule: image\n  platforms: [linux/amd64]\n  target: biuld\n"))
    refused(ws, "p/BUILD.yaml:4: //p:img", 'target stage "biuld" could not be found',
            hint="did you mean 'build'?")


def test_dockerfile_syntax_error_names_its_line(ws):
    ws.write(image_ws("FROM scratch\nCOPY a.txt /a\nEXPOSE 80/tcpp\n"))
    refused(ws, "p/Dockerfile:3: //p:img", "proto")


# -- manifest ------------------------------------------------------------------------------------

IMAGES = """
    amd: {rule: image, platforms: [linux/amd64]}
    amd2: {rule: image, platforms: [linux/amd64]}
    multi: {rule: image, platforms: [linux/amd64, linux/arm64]}
"""


def manifest_ws(manifest: str) -> dict:
    return {"p/BUILD.yaml": textwrap.dedent(IMAGES) + textwrap.dedent(manifest).lstrip("\n"), "p/Dockerfile": "FROM scratch\nCOPY a.txt /a\n",
            "p/a.txt": "A\n"}


def test_entry_names_a_platform_the_image_does_not_build(ws):
    ws.write(manifest_ws("""
        m:
          rule: manifest
          images:
            - ":amd"
            - "//p:multi[linux/s390x]"
    """))
    refused(ws, "p/BUILD.yaml:6: //p:m", "//p:multi[linux/s390x]", "does not build linux/s390x",
            hint="linux/amd64, linux/arm64")


def test_override_contradicting_the_image_needs_force(ws):
    ws.write(manifest_ws("""
        m:
          rule: manifest
          images: [":amd"]
          platform_annotations:
            ":amd": {os: linux, arch: arm64}
    """))
    refused(ws, "p/BUILD.yaml:7: //p:m", "linux/arm64", "linux/amd64", hint="force: true")


def test_override_with_force_is_accepted(ws):
    ws.write(manifest_ws("""
        m:
          rule: manifest
          images: [":amd"]
          platform_annotations:
            ":amd": {arch: arm64, variant: v8, force: true}
    """))
    assert ws.run("run", "//p:m").code == 0


def test_two_entries_with_the_same_platform(ws):
    ws.write(manifest_ws("""
        m:
          rule: manifest
          images: [":amd", ":multi"]
    """))
    refused(ws, "p/BUILD.yaml:6: //p:m", "linux/amd64", hint="one image per platform")


def test_two_entries_with_the_same_platform_after_an_override(ws):
    ws.write(manifest_ws("""
        m:
          rule: manifest
          images: [":amd", ":amd2"]
          platform_annotations:
            ":amd2": {os_version: "1.0"}
    """))
    refused(ws, "p/BUILD.yaml:6: //p:m", "both provide platform linux/amd64")


@pytest.mark.parametrize("override, phrase, hint", [
    ("{arch: x86_64, force: true}", "x86_64", "amd64"),
    ("{arch: aarch64, force: true}", "aarch64", "arm64"),
    ("{arch: amd64, variant: v9}", "v9", None),
    ("{os: linus}", "linus", None),
])
def test_unknown_arch_or_variant_in_platform_annotations(ws, override, phrase, hint):
    ws.write(manifest_ws(f"""
        m:
          rule: manifest
          images: [":amd"]
          platform_annotations:
            ":amd": {override}
    """))
    refused(ws, "p/BUILD.yaml:8: //p:m", phrase, hint=hint)


def test_platform_annotations_key_not_in_images(ws):
    ws.write(manifest_ws("""
        m:
          rule: manifest
          images: [":amd", ":multi"]
          platform_annotations:
            "//p:amd": {os_version: "1"}
    """))
    refused(ws, "p/BUILD.yaml:8: //p:m", "'//p:amd' is not an entry of 'images'",
            hint=":amd")


def test_unknown_field_in_platform_annotations(ws):
    ws.write(manifest_ws("""
        m:
          rule: manifest
          images: [":amd"]
          platform_annotations:
            ":amd":
              os: linux
              architecture: amd64
    """))
    refused(ws, "p/BUILD.yaml:10: //p:m", "architecture", hint="arch")


def test_require_platforms_missing(ws):
    ws.write(manifest_ws("""
        m:
          rule: manifest
          images: [":multi"]
          require_platforms: [linux/amd64, linux/arm64, linux/s390x]
    """))
    refused(ws, "p/BUILD.yaml:7: //p:m", "linux/s390x", hint="linux/amd64, linux/arm64")


def test_docker_manifest_list_cannot_carry_annotations(ws):
    ws.write(manifest_ws("""
        m:
          rule: manifest
          images: [":multi"]
          media_type: docker
          annotations: {a: b}
    """))
    refused(ws, "p/BUILD.yaml:8: //p:m", "annotations")


def test_manifest_of_a_command_is_refused(ws):
    ws.write(manifest_ws("""
        c: {rule: command, cmd: "true"}
        m:
          rule: manifest
          images: [":c"]
    """))
    refused(ws, "p/BUILD.yaml:7: //p:m", "//p:c is a command")
