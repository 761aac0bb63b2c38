"""Image references parse as Docker parses them."""

from __future__ import annotations

import pytest

from graphbuild.registry.reference import Reference, ReferenceError, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "expected"), [
    ("alpine", Reference("docker.io", "library/alpine")),
    ("alpine:3.20", Reference("docker.io", "library/alpine", "3.20")),
    ("user/app:v1", Reference("docker.io", "user/app", "v1")),
    ("docker.io/alpine", Reference("docker.io", "library/alpine")),
    ("index.docker.io/user/app", Reference("docker.io", "user/app")),
    ("localhost/app", Reference("localhost", "app")),
    ("localhost:5000/a/b/c:t", Reference("localhost:5000", "a/b/c", "t")),
    ("127.0.0.1:5000/app:v1", Reference("127.0.0.1:5000", "app", "v1")),
    ("[::1]:5000/app", Reference("[::1]:5000", "app")),
    ("ghcr.io/org/app@" + DIGEST, Reference("ghcr.io", "org/app", None, DIGEST)),
    ("ghcr.io/org/app:v2@" + DIGEST, Reference("ghcr.io", "org/app", "v2", DIGEST)),
    ("registry.example.com:443/a__b/c-d.e:x_Y.z-1", Reference(
        "registry.example.com:443", "a__b/c-d.e", "x_Y.z-1")),
])
def test_parse(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


def test_str_and_helpers() -> None:
    ref = parse_reference("alpine:3")
    assert str(ref) == "docker.io/library/alpine:3"
    assert ref.familiar() == "alpine:3"
    assert ref.endpoint == "registry-1.docker.io"
    assert ref.ref == "3"
    pinned = parse_reference("127.0.0.1:5000/app").with_digest(DIGEST)
    assert str(pinned) == f"127.0.0.1:5000/app@{DIGEST}"
    assert pinned.ref == DIGEST and pinned.endpoint == "127.0.0.1:5000"
    assert parse_reference("127.0.0.1:5000/app").ref == "latest"
    assert str(parse_reference("q.io/a:t@" + DIGEST)) == f"q.io/a:t@{DIGEST}"
    assert parse_reference("user/app").familiar() == "user/app"


@pytest.mark.parametrize(("text", "problem"), [
    ("", "non-empty"),
    ("Alpine", "lower-case"),
    ("docker.io/User/app", "lower-case"),
    ("app:", "invalid tag"),
    ("app:-x", "invalid tag"),
    ("app:" + "x" * 129, "invalid tag"),
    ("app@sha256:abc", "invalid digest"),
    ("app@sha256:" + "AB" * 32, "64 lower-case"),
    ("a//b", "invalid repository name"),
    ("a/b_", "invalid repository name"),
    ("-bad.host/app", "invalid registry host"),
    ("ab" * 32, "image ID"),
    ("localhost:5000/", "empty"),
    (" app", "whitespace"),
    ("a/" + "b" * 260, "longer than 255"),
])
def test_errors_name_the_reference_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ReferenceError) as caught:
        parse_reference(text)
    assert isinstance(caught.value, ValueError)
    assert problem in str(caught.value)
    assert f"'{text}'" in str(caught.value) or not text


def test_with_tag_rejects_a_bad_tag() -> None:
    with pytest.raises(ReferenceError, match="invalid tag"):
        parse_reference("127.0.0.1:5000/app").with_tag("no spaces")
