"""User mistakes that once gave a Python traceback (or a hang) instead of exit 2 with one
`file:line: //label: message` and a hint, or a clean exit 1 for a failed action."""

from __future__ import annotations

import os
import stat

import pytest

IMG = """
    img:
      rule: image
      platforms: [linux/amd64]
"""
FILES = {"BUILD.yaml": IMG, "Dockerfile": "FROM scratch\nCOPY a /a\n", "a": "x"}


def user_error(res, where: str, *phrases: str) -> None:
    assert res.code == 2, res
    assert "Traceback" not in res.err, res
    first, *rest = res.err.strip().splitlines()
    assert first.startswith(where), res
    for phrase in phrases:
        assert phrase in res.err, res
    assert rest and rest[-1].strip().startswith("hint:"), res


def action_failed(res, *phrases: str) -> None:
    assert res.code == 1, res
    assert "Traceback" not in res.err and "internal error" not in res.err, res
    for phrase in phrases:
        assert phrase in res.err, res


# -- export -o ----------------------------------------------------------------------------------


@pytest.fixture
def built(ws):
    ws.write(FILES)
    assert ws.run("run", "//:img").code == 0
    return ws


def test_export_into_a_missing_directory(built, tmp_path):
    out = tmp_path / "missing" / "x.tar"
    user_error(built.run("export", "//:img", "-o", str(out)), "-o:", "does not exist")
    assert not out.parent.exists()


def test_export_to_a_directory(built, tmp_path):
    user_error(built.run("export", "//:img", "-o", str(tmp_path)), "-o:", "is a directory")


def test_export_to_an_empty_name(built):
    user_error(built.run("export", "//:img", "-o", ""), "-o:", "needs a file name")


def test_export_to_a_path_that_cannot_be_written(built, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    # the parent "directory" exists but is a file: cannot be written through
    user_error(built.run("export", "//:img", "-o", str(blocker / "x.tar")), "-o:")


def test_export_never_renames_over_a_fifo_or_device(built, tmp_path):
    # a FIFO stands for /dev/stdout or /dev/null, which renaming into place would replace
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    user_error(built.run("export", "//:img", "-o", str(fifo)), "-o:", "not a regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_export_and_inspect_of_a_command_target(built):
    built.write({"BUILD.yaml": IMG + """
    c:
      rule: command
      cmd: echo hi > $OUT/x
      outs: [x]
    """})
    assert built.run("run", "//:c").code == 0
    user_error(built.run("export", "//:c", "-o", str(built.path("c.tar"))),
               "BUILD.yaml:5: //:c:", "has no image output")
    user_error(built.run("inspect", "//:c"), "BUILD.yaml:5: //:c:", "has no image output")


def test_run_events_to_a_directory(built, tmp_path):
    user_error(built.run("run", "//:img", "--events", str(tmp_path)), "--events:", "is a directory")


# -- platforms on the command line ---------------------------------------------------------------


def test_empty_platform_has_a_hint(built):
    user_error(built.run("run", "//:img", "--platform", ""), "--platform:")
    user_error(built.run("inspect", "//:img[]"), "a platform must be")


# -- YAML --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["<<: {a: 1}\n", "x: !!int abc\n", "x: !!python/name:os.system\n",
                                  "x: 2020-13-45\n"])
def test_yaml_tags_merge_keys_and_bad_timestamps(ws, text):
    ws.write({**FILES, "BUILD.yaml": IMG.replace("\n    ", "\n").lstrip("\n") + text})
    user_error(ws.run("query", "//..."), "BUILD.yaml:4:", "invalid YAML value")


def test_workspace_yaml_with_a_python_tag(ws):
    ws.write({**FILES, "WORKSPACE.yaml": "jobs: !!python/object:os.system x\n"})
    user_error(ws.run("query", "//..."), "WORKSPACE.yaml:1:", "invalid YAML value")


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_that_is_not_utf8(ws):
    ws.write({**FILES, "Dockerfile": b"FROM scratch\n\xff\xfe\n"})
    user_error(ws.run("run", "//:img"), "Dockerfile:2: //:img:", "not UTF-8")


# -- tags --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["x:{os", "-x", "/x", "x//y", "x:v-{variant}"])
def test_image_tag_that_the_store_cannot_name(ws, tag):
    ws.write({**FILES, "BUILD.yaml": IMG + f"      tags: ['{tag}']\n"})
    user_error(ws.run("run", "//:img"), "BUILD.yaml:4: //:img:", "invalid tag")


def test_image_tag_naming_an_unknown_value(ws):
    ws.write({**FILES, "BUILD.yaml": IMG + "      tags: ['x:{bogus}']\n"})
    user_error(ws.run("run", "//:img"), "BUILD.yaml:4: //:img:", "unknown value {bogus}")


@pytest.mark.parametrize("tag", ["x:{arch}", ""])
def test_manifest_tag_that_the_store_cannot_name(ws, tag):
    ws.write({**FILES, "BUILD.yaml": IMG + f"""
    m:
      rule: manifest
      images: [":img"]
      tags: ["{tag}"]
    """})
    user_error(ws.run("run", "//..."), "BUILD.yaml:8: //:m:", "invalid tag")


# -- manifest platform_annotations -------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("os_features", "1"), ("os_features", "true"), ("annotations", "1"), ("annotations", "[x]"),
    ("annotations", "x"), ("os_version", "[1]"), ("force", "'yes'"), ("variant", "{a: b}"),
])
def test_platform_annotations_field_of_the_wrong_type(ws, field, value):
    ws.write({**FILES, "BUILD.yaml": """
    img:
      rule: image
      platforms: [linux/amd64, linux/arm64]
    m:
      rule: manifest
      images: [":img"]
      platform_annotations:
        ":img":
    """ + f"      {field}: {value}\n"})
    user_error(ws.run("run", "//..."), "BUILD.yaml:9: //:m:", f".{field} must be")


def test_platform_annotations_entry_not_a_mapping_has_a_hint(ws):
    ws.write({**FILES, "BUILD.yaml": IMG + """
    m:
      rule: manifest
      images: [":img"]
      platform_annotations: {":img": 1}
    """})
    user_error(ws.run("run", "//..."), "BUILD.yaml:8: //:m:", "must be a mapping")


def test_manifest_media_type_and_image_context_have_hints(ws):
    ws.write({**FILES, "BUILD.yaml": IMG + """
      context: nowhere
    m:
      rule: manifest
      images: [":img"]
      media_type: ocl
    """})
    user_error(ws.run("query", "//:m"), "BUILD.yaml:9: //:m:", "did you mean 'oci'")
    ws.write({"BUILD.yaml": IMG + "      context: nowhere\n"})
    user_error(ws.run("run", "//:img"), "BUILD.yaml:4: //:img:", "is not a directory")


# -- command -----------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["{A=B: x}", "{'A B': x}", "{'': x}", "{A: \"\\0\"}"])
def test_command_env_that_no_process_can_take(ws, env):
    ws.write({"BUILD.yaml": f"""
    c:
      rule: command
      cmd: "true"
      env: {env}
    """})
    user_error(ws.run("run", "//:c"), "BUILD.yaml:4: //:c:", "env")


def test_command_env_path_without_sh(ws):
    ws.write({"BUILD.yaml": """
    c:
      rule: command
      cmd: "true"
      env: {PATH: /nonexistent}
    """})
    action_failed(ws.run("run", "//:c"), "cannot start sh")


def test_command_that_removes_its_out_dir(ws):
    ws.write({"BUILD.yaml": """
    c:
      rule: command
      cmd: rm -rf "$OUT"
    """})
    action_failed(ws.run("run", "//:c"), "$OUT is no longer a directory")


def test_command_output_fifo_fails_instead_of_hanging(ws):
    ws.write({"BUILD.yaml": """
    c:
      rule: command
      cmd: mkfifo "$OUT/f"
    """})
    action_failed(ws.run_subprocess("run", "//:c", timeout=60), "not a regular file")


def test_command_output_name_not_utf8(ws):
    ws.write({"BUILD.yaml": """
    c:
      rule: command
      cmd: touch "$OUT/$(printf '\\377')"
    """})
    action_failed(ws.run("run", "//:c"), "not UTF-8")


def test_platform_filter_that_leaves_a_target_nothing_says_so(ws):
    ws.write({"p/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64]\n",
              "p/Dockerfile": "FROM scratch\nCOPY a /a\n", "p/a": "a\n"})
    res = ws.run("run", "//p:img", "--platform", "linux/arm64")
    assert res.code == 0, res
    assert ("note: p/BUILD.yaml:1: //p:img: builds none of the --platform platforms "
            "(it builds linux/amd64)") in res.err


def test_export_platform_is_checked_not_ignored(ws, tmp_path):
    ws.write({"p/BUILD.yaml": "img:\n  rule: image\n  platforms: [linux/amd64, linux/arm64]\n",
              "p/Dockerfile": "FROM scratch\nCOPY a /a\n", "p/a": "a\n"})
    assert ws.run("run", "//p:img").code == 0
    res = ws.run("export", "//p:img", "-o", str(tmp_path / "x.tar"), "--platform", "linux/arm64")
    assert res.code == 2 and "--platform picks one image for --format docker" in res.err
    res = ws.run("export", "//p:img", "-o", str(tmp_path / "x.tar"), "--format", "docker",
                 "--platform", "linux/aarch64")
    assert res.code == 2 and "linux/arm64" in res.err and "Traceback" not in res.err
    res = ws.run("export", "//p:img", "-o", str(tmp_path / "x.tar"), "--format", "docker",
                 "--platform", "linux/arm64")
    assert res.code == 0, res
