"""The Dockerfile parser against BuildKit's own (PyPI ``dockerfile``, BuildKit v0.12.5's parser).

The oracle only ships x86_64 Linux wheels: there a missing oracle fails the run; elsewhere the
oracle tests skip and the plain unit tests below still run.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphbuild.dockerfile.parser import (
    DockerfileSyntaxError,
    Heredoc,
    parse,
    parse_heredoc,
    split_command,
)

CORPUS = sorted((Path(__file__).parent / "dockerfile_corpus").glob("*.Dockerfile"))


def oracle() -> ModuleType:
    """BuildKit's parser; required on x86_64 Linux, where its wheels exist."""
    if platform.machine() == "x86_64" and sys.platform.startswith("linux"):
        return importlib.import_module("dockerfile")  # missing here is a failure, not a skip
    return pytest.importorskip("dockerfile")


def ours(text: str) -> object:
    """Our parse in the oracle's shape (its Python binding's conventions, see below)."""
    try:
        df = parse(text)
    except DockerfileSyntaxError as exc:
        return ("error", exc.message)
    rows = []
    for inst in df.instructions:
        # The binding reads heredocs from the ONBUILD trigger node, where BuildKit keeps none,
        # and appends heredoc bodies to ``original``; empty strings come back as None.
        docs = () if inst.cmd == "onbuild" else tuple(
            (doc.name, doc.file_descriptor, doc.content) for doc in inst.heredocs)
        original = inst.original
        if docs:
            original += "\n" + "".join(content + name + "\n" for name, _, content in docs)
        rows.append((inst.cmd or None, inst.sub_cmd, inst.json, original or None,
                     inst.start_line, inst.end_line, tuple(inst.flags), tuple(inst.value), docs))
    return rows


def theirs(text: str) -> object:
    lib = oracle()
    try:
        commands = lib.parse_string(text)
    except lib.GoParseError as exc:
        return ("error", str(exc))
    return [(c.cmd.lower() if c.cmd else None, c.sub_cmd.lower() if c.sub_cmd else None, c.json,
             c.original, c.start_line, c.end_line, c.flags, c.value,
             tuple((h.name, h.file_descriptor, h.content) for h in c.heredocs))
            for c in commands]


# -- the corpus ---------------------------------------------------------------------------------


def test_corpus_is_substantial() -> None:
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_matches_buildkit(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")  # bytes: keep \r\n line ends as written
    result = ours(text)
    assert not isinstance(result, tuple), result
    assert result == theirs(text)


# -- generated Dockerfiles ----------------------------------------------------------------------

KEYWORDS = ["FROM", "RUN", "CMD", "COPY", "ADD", "ENV", "ARG", "LABEL", "EXPOSE", "VOLUME",
            "WORKDIR", "USER", "ENTRYPOINT", "SHELL", "HEALTHCHECK", "ONBUILD", "MAINTAINER",
            "STOPSIGNAL", "from", "Run", "copy", "env", "Label", "FOO"]
HEREDOC_KEYWORDS = ["RUN", "COPY", "ADD", "run", "ONBUILD RUN", "ONBUILD COPY"]
ATOMS = [
    "a", "b", "x=1", 'k="v w"', "k='v'", '"q"', "'s'", "\\", "`", "\\ ", "$X", "${X}",
    "${X:-d}", "${X-d}", "${X#p}", "${X%p}", "${X/a/b}", "${X:+y}", "${X?}", "${X=y}", "${",
    "}", "--from=b", "--chmod=755", "--x", "--", "-x", "NONE", "CMD", "AS", "as", "=", "==",
    '"', "'", "#", "# c", "\\\\", '\\"', "\\$", "é", "→", "\u2003", "\t", "\r", "[1]", "[]",
    '["a"] x', "[NaN]", '["a"', "[1e400]", '["\\ud800"]', "<<EOF", "<<-EOF", '<<"EOF"',
    "<<'E'", "3<<EOF", "<<E\\OF", '<<E"O"F', "<<$X", "<< EOF", "<<E<<F",
]
TEXT = st.text(alphabet="abcXYZ019 _-=:./\\`$'\"{}[]<#é→\u2003\t", max_size=6)
WORD = st.one_of(st.sampled_from(ATOMS), TEXT, st.lists(TEXT, max_size=3).map(json.dumps))
FLAG = st.sampled_from(["--from=build", "--chmod=755", "--link", "--mount=type=cache,target=/x",
                        '--x="a b"', "--platform=$BUILDPLATFORM", "--interval=5s", "--é=→",
                        "--", "-x", "--a\\ b", "--'q'=1"])
FILLER = st.sampled_from(["", "   ", "\t", "# comment", "  # indented \\", "#"])


@st.composite
def _continued(draw: st.DrawFn, words: list[str], escape: str) -> str:
    """Words joined by spaces, some of the joins replaced by a continuation."""
    out = words[0]
    for word in words[1:]:
        if draw(st.integers(0, 4)) == 0:
            tail = draw(st.sampled_from([escape, escape + " ", escape + "\t", "\\", "`"]))
            fillers = draw(st.lists(FILLER, max_size=2))
            lead = draw(st.sampled_from(["", " ", "    "]))
            out += " " + tail + "\n" + "".join(f + "\n" for f in fillers) + lead + word
        else:
            out += draw(st.sampled_from([" ", "  ", "\t"])) + word
    return out


@st.composite
def instruction(draw: st.DrawFn, escape: str) -> str:
    heredoc = draw(st.integers(0, 3)) == 0
    keyword = draw(st.sampled_from(HEREDOC_KEYWORDS if heredoc else KEYWORDS))
    words = [keyword, *draw(st.lists(FLAG, max_size=2)), *draw(st.lists(WORD, max_size=5))]
    if draw(st.booleans()):
        words.append(json.dumps(draw(st.lists(TEXT, max_size=3))))
    names = []
    if heredoc:
        names = draw(st.lists(st.sampled_from(["EOF", "E", "EOT", "E\\OF", '"EOF"', "'E'"]),
                              min_size=1, max_size=2))
        for name in names:
            words.insert(draw(st.integers(1, len(words))),
                         draw(st.sampled_from(["<<", "<<-"])) + name)
    text = draw(_continued(words, escape))
    for name in names:  # a body and its terminator, maybe tab-indented for <<-
        body = draw(st.lists(st.sampled_from(["hello $X", "\tindented", "", " EOF", "EOF ",
                                              "# not a comment", "RUN x"]), max_size=3))
        terminator = draw(st.sampled_from(["", "\t"])) + name.strip("'\"").replace("\\", "")
        text += "\n" + "".join(line + "\n" for line in body) + terminator
    return text


@st.composite
def dockerfile_text(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.sampled_from([
        "# syntax=docker/dockerfile:1", "# escape=`", "# escape=\\", "#escape = `",
        " # ESCAPE=`", "# check=skip=all", "# not a directive", "", "\ufeff# escape=`",
    ]), max_size=3, unique=True))
    escape = "\\"
    for line in lines:
        if "escape" in line.lower() and "=" in line:
            escape = line.rsplit("=", 1)[1].strip()
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(FILLER))
        else:
            lines.append(draw(instruction(escape)))
    text = "\n".join(lines)
    if draw(st.booleans()):
        text += "\n"
    if draw(st.integers(0, 9)) == 0:
        text = text.replace("\n", "\r\n")
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dockerfile_text())
def test_generated_dockerfiles_match_buildkit(text: str) -> None:
    assert ours(text) == theirs(text)


PIECES = list("ab =-\"'\\`$#{}[]:<\n\n\t\r,é") + [
    "RUN ", "COPY ", "ONBUILD ", "ENV ", "LABEL ", "ARG ", "HEALTHCHECK ", "FROM ", "EOF",
    "<<", "--", "\\\n", "`\n", "# escape=`\n", "CMD ", "<<-E\n\tE\n"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_arbitrary_text_matches_buildkit(text: str) -> None:
    assert ours(text) == theirs(text)


@pytest.mark.parametrize("text", [
    'RUN ["a"] <<EOF\nx\nEOF\n',  # JSON form: decoded from the first value, no heredoc
    "RUN <<EOF ${a#b}\nx\nEOF\n",  # v0.12's lexer rejects ${a#b}: no heredoc on this line
    "RUN <<EOF ${a:-b}\nx\nEOF\n",
    "COPY --x=é --y=\"a b\" c d\n",  # flags are read bytewise: é becomes Ã©
    "ENV a=b c\n", "LABEL a\n", "RUN [1]\n", "RUN [1e400]\n", 'RUN ["\\ud800"]\n',
    "ONBUILD ONBUILD CMD x\n", "onbuild\n", "FOO bar\n", "RUN a \\", "RUN a \\\\\nRUN b\n",
    "# escape=`\nRUN a \\\nb\nRUN c`\nd", "\n# escape=`\nRUN c`\nd", "  \\\n   \\\nFROM a\n",
    "FROM a\nRUN <<EOF\nhi", "# escape=x\nFROM a", "# escape=\\\n# escape=\\\nFROM a", "",
    "RUN <<EOF\r\nx\r\nEOF\r\n", "HEALTHCHECK --interval=5s CMD [\"a\"]\nHEALTHCHECK NONE\n",
])
def test_known_edge_cases_match_buildkit(text: str) -> None:
    assert ours(text) == theirs(text)


@pytest.mark.parametrize("size", [65535, 65536])
@pytest.mark.parametrize("template", ["FROM a\n{}\nRUN b\n", "{}", "RUN <<E\n{}\nE\n"])
def test_line_length_limit_matches_buildkit(size: int, template: str) -> None:
    line = "RUN " + "é" * ((size - 4) // 2) + "x" * (size % 2)  # the limit counts bytes
    assert len(line.encode()) == size
    assert ours(template.format(line)) == theirs(template.format(line))


# -- plain unit tests (no oracle) ---------------------------------------------------------------


def test_directives_and_escape() -> None:
    df = parse("# syntax=docker/dockerfile:1\n#ESCAPE = `\nFROM a\nRUN x `\n  y\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "`"}
    assert df.escape == "`"
    assert [(i.cmd, i.value, i.start_line, i.end_line) for i in df.instructions] == [
        ("from", ["a"], 3, 3), ("run", ["x   y"], 4, 5)]


def test_directives_only_at_the_top() -> None:
    df = parse("# hello\n# escape=`\nFROM a\n")
    assert df.directives == {} and df.escape == "\\"


@pytest.mark.parametrize(("text", "message", "line"), [
    ("", "file with no instructions", None),
    ("# only a comment\n\n", "file with no instructions", 2),
    ("# escape=x\nFROM a\n", "invalid escape token 'x' does not match ` or \\", 1),
    ("# escape=`\n# escape=`\nFROM a\n", "only one escape parser directive can be used", 2),
    ("FROM a\nRUN <<EOF\nbody\n", "unterminated heredoc", 2),
    ("FROM a\n\nENV x=1 y\n",
     'Syntax error - can\'t find = in "y". Must be of the form: name=value', 3),
    ("FROM a\nLABEL lonely\n", "LABEL must have two arguments", 2),
    ("FROM a\nCMD [\"a\", 1]\n",
     "when using JSON array syntax, arrays must be comprised of strings only", 2),
])
def test_syntax_errors_carry_lines(text: str, message: str, line: int | None) -> None:
    with pytest.raises(DockerfileSyntaxError) as info:
        parse(text, path="svc/Dockerfile")
    assert info.value.message == message
    assert info.value.line == line
    assert info.value.path == "svc/Dockerfile"
    assert isinstance(info.value, ValueError)
    if line:
        assert f"svc/Dockerfile:{line}:" in str(info.value)


def test_heredoc_fields() -> None:
    df = parse('FROM a\nCOPY <<-"A" 2<<B /x\n\tfoo\n\tA\nbar $X\nB\nRUN <<E\\OF\nx\nEOF\n')
    copy, run = df.instructions[1], df.instructions[2]
    assert copy.heredocs == [Heredoc("A", "\tfoo\n", expand=False, chomp=True),
                             Heredoc("B", "bar $X\n", expand=True, file_descriptor=2)]
    assert copy.heredocs[0].chomped == "foo\n"
    assert (copy.start_line, copy.end_line) == (2, 6)
    assert copy.value == ['<<-"A"', "2<<B", "/x"]
    assert run.heredocs == [Heredoc("EOF", "x\n")]


def test_parse_heredoc_words() -> None:
    assert parse_heredoc("<<EOF") == Heredoc("EOF", "")
    assert parse_heredoc("<<'EOF'") == Heredoc("EOF", "", expand=False)
    assert parse_heredoc('<<E"O"F') == Heredoc("EOF", "", expand=False)
    assert parse_heredoc("<<-EOF") == Heredoc("EOF", "", chomp=True)
    assert parse_heredoc("12<<X") == Heredoc("X", "", file_descriptor=12)
    for word in ("<<", "EOF", "<<a b", "x<<EOF", "<<E<F"):
        assert parse_heredoc(word) is None


def test_json_and_shell_forms() -> None:
    df = parse('FROM a\nCMD ["a", "b c"]\nCMD a  b\nRUN [bad json]\nVOLUME ["/a", "/b"]\n'
               "VOLUME /c  /d\nSHELL [\"pwsh\", \"-c\"]\n")
    forms = [(i.cmd, i.json, i.value) for i in df.instructions[1:]]
    assert forms == [("cmd", True, ["a", "b c"]), ("cmd", False, ["a  b"]),
                     ("run", False, ["[bad json]"]), ("volume", True, ["/a", "/b"]),
                     ("volume", False, ["/c", "/d"]), ("shell", True, ["pwsh", "-c"])]


def test_env_label_arg_splitting() -> None:
    df = parse('FROM a\nENV PATH /usr/bin:$PATH\nENV a=1 b="2 3" c=d\\ e\n'
               'LABEL "k k"="v v" x=y\nARG A B=2 C="x y"\n')
    assert [i.value for i in df.instructions[1:]] == [
        ["PATH", "/usr/bin:$PATH"], ["a", "1", "b", '"2 3"', "c", "d\\ e"],
        ['"k k"', '"v v"', "x", "y"], ["A", "B=2", 'C="x y"']]


def test_onbuild_and_flags() -> None:
    df = parse("FROM a\nONBUILD COPY --from=x --chown=1:1 a b\nCOPY --link --from=build x y\n")
    onbuild, copy = df.instructions[1], df.instructions[2]
    assert (onbuild.cmd, onbuild.sub_cmd, onbuild.sub_flags, onbuild.value) == (
        "onbuild", "copy", ["--from=x", "--chown=1:1"], ["a", "b"])
    assert copy.flags == ["--link", "--from=build"]
    assert split_command("  RUN   --mount=type=cache,target=/x  --  make  ") == (
        "RUN", ["--mount=type=cache,target=/x"], "make")


def test_keyword_case_and_comments_in_continuations() -> None:
    df = parse("from a As B\nrun echo a \\\n# note\n\n   b\n")
    assert [(i.cmd, i.keyword, i.value) for i in df.instructions] == [
        ("from", "from", ["a", "As", "B"]), ("run", "run", ["echo a    b"])]
    assert df.instructions[1].end_line == 5
