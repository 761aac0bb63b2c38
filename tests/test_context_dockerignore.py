""".dockerignore lines, COPY wildcards and --exclude patterns are matched in time linear in the
path (issue 12, "Hangs and exhaustion"): a line like ``*a*a*a…*c`` against a long name used to
backtrack exponentially in Python's ``re``. The automaton accepts exactly what the regexp
translation of Docker's patternmatcher accepts (checked on generated patterns and paths).

The builds go through a subprocess with a generous timeout, so a regression fails instead of
hanging the suite; nothing is timed."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from graphbuild.dockerfile.dockerignore import DockerIgnore, _translate, compile_glob
from graphbuild.dockerfile.globmatch import Automaton, token_regex

GUARD = 20
HOSTILE = "*a" * 30 + "*c"
LONG = "a" * 200


def build(ws, dockerfile: str, ignore: str = "") -> dict:
    ws.write({
        "p/BUILD.yaml": "img: {rule: image, platforms: [linux/amd64]}\n",
        "p/Dockerfile": dockerfile,
        "p/.dockerignore": ignore,
        f"p/{LONG}b": "kept\n",
        f"p/{LONG}c": "matches the hostile line\n",
        f"p/d/{LONG}b": "kept\n",
    })
    res = ws.run_subprocess("run", "//p:img", timeout=GUARD)
    assert res.code == 0, res
    return res


def files(ws) -> set[str]:
    import io
    import tarfile

    from graphbuild.oci.store import Store

    s = Store(ws.root / ".graphbuild" / "oci")
    manifest = s.read_json(s.lookup("//p:img[linux/amd64]")["digest"])
    out: set[str] = set()
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(s.read_bytes(layer["digest"]))) as tar:
            out.update(m.name for m in tar if m.isfile())
    return out


def test_a_backtracking_dockerignore_line_against_a_long_name(ws):
    build(ws, "FROM scratch\nCOPY . /app/\n", f"{HOSTILE}\n**/{HOSTILE}\n")
    got = files(ws)
    assert f"app/{LONG}b" in got and f"app/d/{LONG}b" in got
    assert f"app/{LONG}c" not in got


def test_a_backtracking_copy_wildcard_and_exclude(ws):
    build(ws, f"FROM scratch\nCOPY {HOSTILE} /one/\nCOPY --exclude={HOSTILE} . /two/\n")
    got = files(ws)
    assert f"one/{LONG}c" in got and f"one/{LONG}b" not in got
    assert f"two/{LONG}b" in got and f"two/{LONG}c" not in got


def test_the_matcher_is_linear_on_hostile_input():
    ignore = DockerIgnore([HOSTILE, f"**/{HOSTILE}/**", "!" + "*b" * 20 + "*"])
    assert not ignore.matches("a" * 4000 + "b")
    assert ignore.matches("x/" + "a" * 4000 + "c/y")
    assert compile_glob(HOSTILE).fullmatch("a" * 4000 + "c")
    assert not compile_glob(HOSTILE).fullmatch("a" * 4000 + "/c")


# -- the automaton and the regexp accept the same strings -----------------------------------------

PIECES = ["a", "b", "/", ".", "*", "**", "**/", "?", "[ab]", "[^a]", "[a-c]", "[^]", "\\*", "\n"]
TEXT = st.text(alphabet="ab/.c*\n", max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=7), st.lists(TEXT, max_size=6))
def test_automaton_accepts_what_the_regexp_accepts(pieces, texts):
    pattern = "".join(pieces)
    try:
        kind, tokens = _translate(pattern)
    except Exception:  # noqa: BLE001 - a bad pattern is refused the same way either way
        return
    regex = re.compile("".join(map(token_regex, tokens)))
    automaton = Automaton(tuple(tokens))
    for text in [*texts, pattern.replace("*", "a")]:
        assert bool(regex.fullmatch(text)) == automaton.fullmatch(text), (pattern, text, kind)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a*", "*b", "**/", "?", "[ab]", "c", "/"]), min_size=1,
                max_size=6), st.lists(st.text(alphabet="abc/", max_size=10), max_size=8))
def test_dockerignore_keeps_docker_semantics(pieces, paths):
    """With exceptions: the result is the patternmatcher algorithm over regexp matching."""
    pattern = "".join(pieces)
    ignore = DockerIgnore([pattern, "!" + pattern + "b"])
    for path in paths:
        clean = path.strip("/")
        if not clean or "//" in clean:
            continue
        expect = False
        for text, exclusion in ((pattern, False), (pattern + "b", True)):
            kind, tokens = _translate(DockerIgnore([text]).patterns[0])
            rx = re.compile("".join(map(token_regex, tokens)))
            parts = clean.split("/")
            candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            if kind == "regexp":
                matched = any(rx.fullmatch(c) for c in candidates)
            else:
                matched = DockerIgnore([text]).matches(clean)
            if matched:
                expect = not exclusion
        assert ignore.matches(clean) == expect, (pattern, clean)
