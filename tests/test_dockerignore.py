"""DockerIgnore against moby/patternmatcher's own test tables and Docker's documented examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphbuild.dockerfile.dockerignore import (
    DockerIgnore,
    DockerIgnoreError,
    compile_glob,
    go_clean,
)

# patternmatcher_test.go TestMatches (MatchesOrParentMatches): (pattern, path, matches).
# "inexact" rows there only match through a parent directory; they count as matches here.
SINGLE = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    # patternmatcher matches "/" here; a context-relative "/" is the context root, never excluded.
    ("**", "/", False),
    ("**/", "/", False),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        True,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True),
    ("a\\*b", "a*b", True),
]

MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (
        ["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        False,
    ),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    # Small top-level cases of the same file.
    (["*"], "fileutils.go", True),
    (["*.go"], "fileutils.go", True),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["*.go"], ".", False),
    ([], "any/path/there", False),
]

# Go's filepath.Match table, as patternmatcher_test.go TestMatch runs it: (pattern, path, match).
GO_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", True),  # through the parent "ab"
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("*x", "xxx", True),
]

BAD_PATTERNS = [
    "[]a]",
    "[-]",
    "[x-]",
    "[-x]",
    "\\",
    "[a-b-c]",
    "[",
    "[^",
    "[^bc",
    "a[",
    "!",
]


@pytest.mark.parametrize(("pattern", "path", "expected"), SINGLE)
def test_patternmatcher_single(pattern: str, path: str, expected: bool) -> None:
    assert DockerIgnore([pattern]).matches(path) is expected


@pytest.mark.parametrize(("patterns", "path", "expected"), MULTI)
def test_patternmatcher_multi(patterns: list[str], path: str, expected: bool) -> None:
    assert DockerIgnore(patterns).matches(path) is expected


@pytest.mark.parametrize(("pattern", "path", "expected"), GO_MATCH)
def test_go_filepath_match_table(pattern: str, path: str, expected: bool) -> None:
    assert DockerIgnore([pattern]).matches(path) is expected


@pytest.mark.parametrize("pattern", BAD_PATTERNS)
def test_bad_patterns_are_errors(pattern: str) -> None:
    with pytest.raises(DockerIgnoreError):
        DockerIgnore([pattern])


def test_walk_matching_agrees_with_matches() -> None:
    """match_in_walk with parent results gives the same answers as matches()."""
    for pattern, path, expected in SINGLE + GO_MATCH:
        ignore = DockerIgnore([pattern])
        parts = path.strip("/").split("/")
        info = None
        excluded = False
        for i in range(len(parts)):
            excluded, info = ignore.match_in_walk("/".join(parts[: i + 1]), info)
        assert excluded is expected, (pattern, path)


# Docker's documented .dockerignore example.
DOCS = """\
# comment
*/temp*
*/*/temp*
temp?
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("somedir/temporary.txt", True),
        ("somedir/temp", True),
        ("somedir/subdir/temporary.txt", True),
        ("temp", False),
        ("tempa", True),
        ("tempab", False),
        ("temporary.txt", False),
        ("a/b/c/temp.txt", False),
        ("# comment", False),
    ],
)
def test_docker_docs_example(path: str, expected: bool) -> None:
    assert DockerIgnore(DOCS.splitlines()).matches(path) is expected


def test_docs_go_files_and_readme_exception() -> None:
    ignore = DockerIgnore(["**/*.go", "*.md", "!README.md"])
    assert ignore.matches("main.go")
    assert ignore.matches("a/b/c.go")
    assert ignore.matches("CHANGES.md")
    assert not ignore.matches("README.md")
    assert not ignore.matches("a/README.md")  # "*.md" is top-level only


def test_docs_last_match_wins() -> None:
    ignore = DockerIgnore(["*.md", "!README*.md", "README-secret.md"])
    assert ignore.matches("CHANGES.md")
    assert not ignore.matches("README.md")
    assert ignore.matches("README-secret.md")
    ignore = DockerIgnore(["*.md", "README-secret.md", "!README*.md"])
    assert not ignore.matches("README-secret.md")


def test_exception_reincludes_under_excluded_dir() -> None:
    ignore = DockerIgnore(["build", "!build/keep/**", "node_modules"])
    assert ignore.matches("build")
    assert ignore.matches("build/out.o")
    assert not ignore.matches("build/keep/a.txt")
    assert not ignore.can_skip_dir("build")  # something below may come back
    assert ignore.can_skip_dir("node_modules")
    assert ignore.can_skip_dir("build/tmp")  # no exception can reach below it
    assert not ignore.can_skip_dir("src")  # not excluded at all


@pytest.mark.parametrize(
    ("patterns", "directory", "skippable"),
    [
        (["a"], "a", True),
        (["a", "!a/b"], "a", False),
        (["a", "!a/b"], "a/c", True),
        (["a", "!*/b"], "a", False),
        (["a", "!x/*"], "a", True),
        (["a", "!**/keep"], "a", False),
        (["a", "!a/[bc]"], "a", False),
        (["*", "!a"], "a", False),  # not excluded in the first place
        (["a/**", "!a/b/**"], "a/b", False),
        (["a/**", "!b/**"], "a", False),  # "a/**" matches below "a", not "a" itself
        (["a/**", "!b/**"], "a/x", True),
    ],
)
def test_can_skip_dir(patterns: list[str], directory: str, skippable: bool) -> None:
    assert DockerIgnore(patterns).can_skip_dir(directory) is skippable


def test_reading_like_ignorefile_readall() -> None:
    """moby/patternmatcher ignorefile_test.go TestReadAll (without the illegal "!" lines)."""
    content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n"
    ignore = DockerIgnore(content.splitlines())
    assert ignore.patterns == ("test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path")
    assert ignore.has_exceptions


def test_lone_exclamation_is_an_error() -> None:
    with pytest.raises(DockerIgnoreError, match="illegal exclusion"):
        DockerIgnore(["docs", "! "])


def test_cleaning_and_whitespace() -> None:
    ignore = DockerIgnore(["  docs/  ", "\ufeffignored-bom-only-first-line", "./a/../b//c/"])
    assert ignore.patterns == ("docs", "\ufeffignored-bom-only-first-line", "b/c")
    assert DockerIgnore(["\ufefffirst"]).patterns == ("first",)
    assert DockerIgnore([" # not a comment"]).patterns == ("# not a comment",)
    assert DockerIgnore(["/"]).matches("anything") is False


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / ".dockerignore"
    path.write_bytes(b"\xef\xbb\xbf*.log\r\n!keep.log\r\n")
    ignore = DockerIgnore.from_file(path)
    assert ignore.patterns == ("*.log", "!keep.log")
    assert ignore.matches("x.log") and not ignore.matches("keep.log")
    assert not DockerIgnore.from_file(tmp_path / "missing")


def test_paths_are_cleaned_before_matching() -> None:
    ignore = DockerIgnore(["a/b"])
    assert ignore.matches("./a/b")
    assert ignore.matches("/a/b/c")
    assert ignore.matches("a//b")
    assert not ignore.matches(".")


def test_escaped_character_is_literal() -> None:
    # Go's filepath.Match: "\d" is the letter d, not a regexp digit class.
    assert DockerIgnore(["a\\d"]).matches("ad")
    assert not DockerIgnore(["a\\d"]).matches("a1")


def test_compile_glob_and_go_clean() -> None:
    assert compile_glob("*.txt").fullmatch("a.txt")
    assert not compile_glob("*.txt").fullmatch("d/a.txt")
    assert compile_glob("[^a]").fullmatch("/")  # as Go: a negated class may match "/"
    assert compile_glob("[z-a]x") is not None  # reversed range: valid, matches nothing
    assert not compile_glob("[z-a]x").fullmatch("mx")
    assert go_clean("") == "."
    assert go_clean("a/../..") == ".."
    assert go_clean("/../a/./b/") == "/a/b"
    assert go_clean("//a") == "/a"
