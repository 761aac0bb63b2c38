"""The Dockerfile word lexer against BuildKit's own expectations.

Cases come from moby/buildkit ``frontend/dockerfile/shell/lex_test.go`` (TestProcessWithMatches,
TestShellParserMandatoryEnvVars, TestConvertShellPatternToRegex, TestReversePattern, the
platform example) and its ``envVarTest`` / ``wordsTest`` tables.
"""

from __future__ import annotations

import pytest

from graphbuild.dockerfile.errors import DockerfileSyntaxError
from graphbuild.dockerfile.shell import (
    ShellLex,
    go_quote,
    reverse_pattern,
    shell_pattern_regex,
    trim_space,
)

ENV_VAR_TEST_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}

# envVarTest: (source, expected) with "error" meaning the lexer must fail.
ENV_VAR_TEST = [
    ("hello", "hello"), ("he'll'", "hell"), ("he'llo", "error"), ("he\\'llo", "he'llo"),
    ("he\\\\'llo", "error"), ("abc\\tdef", "abctdef"), ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"), ("'abc\\tdef'", "abc\\tdef"), ("hello\\", "hello"),
    ("hello\\\\", "hello\\"), ('"hello', "error"), ('"hello\\"', "error"),
    ("\"hel'lo\"", "hel'lo"), ("'hello", "error"), ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"), ("'hello\\\\there'", "hello\\\\there"),
    ("\"''\"", "''"), ("$.", "$."), ("he$1x", "hex"), ("he$.x", "he$.x"), ("he$pwd.", "he."),
    ("he$PWD", "he/home"), ("he\\$PWD", "he$PWD"), ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"), ('"he\\\\$PWD"', "he\\/home"), ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"), ("he\\${}", "he${}"), ("he\\${}xx", "he${}xx"), ("${}", "error"),
    ("${}aaa", "error"), ("he${}", "error"), ("he${}xx", "error"), ("he${hi}", "he"),
    ("he${hi}xx", "hexx"), ("he${PWD}", "he/home"), ("he${.}", "error"),
    ("he${XXX:-000}xx", "he000xx"), ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"), ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"), ("he${XXX:YYY}", "error"), ("he${XXX?}", "error"),
    ("he${XXX:?}", "error"), ("he${PWD?}", "he/home"), ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"), ("he${NULL:?}", "error"), ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"), ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"), ("he${PWD:+000}xx", "he000xx"), ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"), ("\"he'$PWD'\"", "he'/home'"), ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"), ("'\\$PWD'", "\\$PWD"), ("'\"hello\"'", '"hello"'),
    ("'he\\$PWD'", "he\\$PWD"), ("he${PWD", "error"), ("he${PWD:=000}xx", "error"),
    ("he${PWD:+${PWD}:}xx", "he/home:xx"), ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"), ("안녕하세요", "안녕하세요"),
    ("안'녕'하세요", "안녕하세요"), ("안'녕하세요", "error"), ("안녕\\'하세요", "안녕'하세요"),
    ("안\\\\'녕하세요", "error"), ("안녕\\t하세요", "안녕t하세요"),
    ('"안녕\\t하세요"', "안녕\\t하세요"), ("'안녕\\t하세요", "error"),
    ("안녕하세요\\", "안녕하세요"), ("안녕하세요\\\\", "안녕하세요\\"), ('"안녕하세요', "error"),
    ("안녕$1x", "안녕x"), ("$KOREAN", "한국어"), ("안녕$KOREAN", "안녕한국어"),
    ("${{aaa}", "error"), ("${aaa}}", "}"), ("${aaa", "error"), ("${{aaa", "error"),
    ("${{aaa}}", "error"), ("${{aaa}bbb}", "error"),
]


@pytest.mark.parametrize(("source", "expected"), ENV_VAR_TEST)
def test_env_var_table(source: str, expected: str) -> None:
    lex = ShellLex()
    if expected == "error":
        with pytest.raises(DockerfileSyntaxError):
            lex.process_word(source, ENV_VAR_TEST_ENV)
    else:
        assert lex.process_word(source, ENV_VAR_TEST_ENV) == expected


# wordsTest: each ENV line adds to the environment of the following cases.
WORDS_TEST = """\
hello | hello
hello${hi}bye | hellobye
ENV hi=hi
hello${hi}bye | hellohibye
ENV space=abc  def
hello${space}bye | helloabc,defbye
hello"${space}"bye | helloabc  defbye
hello "${space}"bye | hello,abc  defbye
ENV leading=  ab c
hello${leading}def | hello,ab,cdef
hello"${leading}" def | hello  ab c,def
hello"${leading}" | hello  ab c
hello${leading} | hello,ab,c
ENV trailing=ab c   \n\
hello${trailing} | helloab,c
hello${trailing}d | helloab,c,d
hello"${trailing}"d | helloab c   d
hel"lo${trailing}" | helloab c   \n\
hello" there  " | hello there  \n\
hello there     | hello,there
hello\\ there | hello there
hello" there | error
hello\\" there | hello",there
hello"\\\\there" | hello\\there
hello"\\there" | hello\\there
hello'\\\\there' | hello\\\\there
hello'\\there' | hello\\there
hello'$there' | hello$there
"""


def _words_cases() -> list[tuple[str, dict[str, str], list[str]]]:
    env: dict[str, str] = {}
    cases = []
    for line in WORDS_TEST.splitlines():
        if line.startswith("ENV "):
            key, value = line[3:].lstrip(" ").split("=", 1)
            env = {**env, key: value}
            continue
        test, expected = line.split("|")
        cases.append((test.strip(), env, expected.lstrip(" ").split(",")))
    return cases


@pytest.mark.parametrize(("source", "env", "expected"), _words_cases())
def test_words_table(source: str, env: dict[str, str], expected: list[str]) -> None:
    try:
        words = ShellLex().process_words(source, env)
    except DockerfileSyntaxError:
        words = ["error"]
    assert words == expected


# TestProcessWithMatches: (input, env, expected or None for an error, matched, unmatched).
WITH_MATCHES = [
    ("x", {"DUMMY": "dummy"}, "x", set(), set()),
    ("x ${UNUSED}", {"DUMMY": "dummy"}, "x ", set(), {"UNUSED"}),
    ("x ${FOO}", {"FOO": "y"}, "x y", {"FOO"}, set()),
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO:-}", {"FOO": "xxx", "BAR": ""}, "xxx", {"FOO"}, set()),
    ("${FOO:-}", {}, "", set(), {"FOO"}),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb ",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  ",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO?aaa}", {"FOO": "xxx", "BAR": ""}, "xxx", {"FOO"}, set()),
    ("${BAR?bbb}", {"FOO": "xxx", "BAR": ""}, "", {"BAR"}, set()),
    ("${BAZ?ccc}", {"FOO": "xxx", "BAR": ""}, None, set(), {"BAZ"}),
    ("${FOO:?aaa}", {"FOO": "xxx", "BAR": ""}, "xxx", {"FOO"}, set()),
    ("${BAR:?bbb}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${BAZ:?ccc}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${BAZ:?}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${FOO=aaa}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${FOO=:aaa}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${FOO=}", {}, None, set(), set()),
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x", {"FOO"}, set()),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx", {"FOO"}, set()),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y", {"FOO"}, set()),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy", {"FOO", "BAR"}, set()),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}, set()),
    ("${FOO#}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy", {"FOO"}, set()),
    ("${FOO##}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y", {"FOO"}, set()),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy.", {"FOO"}, {"ABC"}),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a", {"FOO"}, set()),
    ("${FOO%}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}, set()),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt", {"FOO", "NEEDLE"}, set()),
    ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
     "/tmp/bar.txt - /bar.txt", {"FOO", "NEEDLE"}, set()),
    ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
     {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"},
     "/foo/b/c.txt - /foo/c.txt", {"FOO", "NEEDLE", "REPLACEMENT"}, set()),
    ("${FOO/$NEEDLE/$REPLACEMENT}",
     {"FOO": "http://google.de", "NEEDLE": "http://", "REPLACEMENT": "https://"},
     "https://google.de", {"FOO", "NEEDLE", "REPLACEMENT"}, set()),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt", {"FOO"}, set()),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy", {"FOO", "BAR"}, set()),
    ("${FOO//ww}", {"FOO": "xxyy"}, None, set(), set()),
    ("${FOO//}", {"FOO": "xxyy"}, None, set(), set()),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO///}", {}, "", set(), {"FOO"}),
]


@pytest.mark.parametrize(("source", "env", "expected", "matched", "unmatched"), WITH_MATCHES)
def test_process_with_matches(source: str, env: dict[str, str], expected: str | None,
                              matched: set[str], unmatched: set[str]) -> None:
    lex = ShellLex()
    if expected is None:
        with pytest.raises(DockerfileSyntaxError):
            lex.process(source, env)
        return
    result = lex.process(source, env)
    assert result.result == expected
    assert result.matched == matched
    assert result.unmatched == unmatched


@pytest.mark.parametrize(("env", "expected"), [
    ({"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
     "something-v1.2.3.linux-arm-v7.tar.gz"),
    ({"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm64", "TARGETVARIANT": ""},
     "something-v1.2.3.linux-arm64.tar.gz"),
    ({"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm64"},
     "something-v1.2.3.linux-arm64.tar.gz"),
])
def test_platform_release_name(env: dict[str, str], expected: str) -> None:
    release = ("something-${VERSION}.${TARGETOS}-${TARGETARCH}"
               "${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz")
    assert ShellLex().process_word(release, env) == expected


def test_mandatory_env_vars() -> None:
    lex = ShellLex()
    set_env, empty_env, unset_env = {"VAR": "plain", "ARG": "x"}, {"VAR": "", "ARG": "x"}, {
        "ARG": "x"}
    no_empty, no_unset = "${VAR:?message here$ARG}", "${VAR?message here$ARG}"
    assert lex.process_word(no_empty, set_env) == "plain"
    for env in (empty_env, unset_env):
        with pytest.raises(DockerfileSyntaxError, match="message herex"):
            lex.process_word(no_empty, env)
    assert lex.process_word(no_unset, set_env) == "plain"
    assert lex.process_word(no_unset, empty_env) == ""
    with pytest.raises(DockerfileSyntaxError, match="message herex"):
        lex.process_word(no_unset, unset_env)


def test_error_messages_match_buildkit() -> None:
    lex = ShellLex()
    with pytest.raises(DockerfileSyntaxError) as info:
        lex.process_word("${VAR:?}", {})
    assert info.value.message == 'failed to process "${VAR:?}": VAR: is not allowed to be unset'
    with pytest.raises(DockerfileSyntaxError) as info:
        lex.process_word("${VAR:?}", {"VAR": ""})
    assert info.value.message.endswith("VAR: is not allowed to be empty")
    for word, message in [("${", "syntax error: missing '}'"), ("${}", "bad substitution"),
                          ("${a", "unsupported modifier (\ufffd)"), ("${a:-b", "missing '}'"),
                          ("${a=b}", "unsupported modifier (=) in substitution"),
                          ("${a/b", "missing '/' in ${}"), ('"a', "matching double-quote"),
                          ("'a", "matching single-quote")]:
        with pytest.raises(DockerfileSyntaxError) as info:
            lex.process_word(word, {"a": "x"})
        assert message in info.value.message


@pytest.mark.parametrize(("pattern", "regex"), [
    ("*", "^.*"), ("?", "^."), ("\\*", "^\\*"),
    ("(()[]{\\}^$.\\*\\?|\\\\", "^\\(\\(\\)\\[\\]\\{\\}\\^\\$\\.\\*\\?\\|\\\\"),
])
def test_shell_pattern_to_regex(pattern: str, regex: str) -> None:
    assert shell_pattern_regex(pattern, greedy=True, anchored=True).pattern == regex


@pytest.mark.parametrize("pattern", ["\\", "\\x", "\\\\\\"])
def test_invalid_shell_patterns(pattern: str) -> None:
    with pytest.raises(ValueError):
        shell_pattern_regex(pattern, greedy=True, anchored=True)


@pytest.mark.parametrize(("pattern", "reversed_"), [
    ("a\\*c", "c\\*a"), ("\\\\\\ab", "b\\a\\\\"), ("ab\\", "\\ba"),
    ("👽\\🚀🖖", "🖖\\🚀👽"), ("\\\\b", "b\\\\"),
])
def test_reverse_pattern(pattern: str, reversed_: str) -> None:
    assert reverse_pattern(pattern) == reversed_


def test_backtick_escape_token() -> None:
    lex = ShellLex("`")
    assert lex.process_word("C:\\path\\$X", {"X": "x"}) == "C:\\path\\x"
    assert lex.process_word("a`$X `` b", {"X": "x"}) == "a$X ` b"
    assert lex.process_words("a` b c", {}) == ["a b", "c"]
    assert lex.process_word('"say `"hi`""', {}) == 'say "hi"'


def test_lexer_modes_used_by_the_parser() -> None:
    raw = ShellLex(raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    assert raw.process_words("RUN <<'EOF' a\\ b $UNSET ${U:-x}", {}) == [
        "RUN", "<<'EOF'", "a\\ b", "$UNSET", "${U:-x}"]
    # BuildKit's raw-escape quirk: an escape that escapes nothing is doubled inside "".
    assert raw.process_word('"E\\OF"', {}) == '"E\\\\OF"'
    heredoc = ShellLex(skip_process_quotes=True)
    assert heredoc.process_word("echo '$A' \"$A\" \\$A", {"A": "1"}) == "echo '1' \"1\" $A"
    legacy = ShellLex(skip_unset_env=True, legacy_modifiers=True)
    with pytest.raises(DockerfileSyntaxError):
        legacy.process_word("${A#b}", {})
    assert ShellLex(skip_unset_env=True).process_word("${A#b}", {}) == "${A#b}"


def test_word_splitting_rules() -> None:
    lex = ShellLex()
    assert lex.process_words('a "" b', {}) == ["a", "b"]  # empty quotes make no word
    assert lex.process_words("$V", {"V": " x  y "}) == ["x", "y"]
    assert lex.process_words('"$V"', {"V": " x  y "}) == [" x  y "]
    assert lex.process_word("\ufeffabc", {}) == "abc"  # text/scanner drops a leading BOM
    assert lex.process_word("$@$*$#$?$-$$$!$0$10", {"1": "one", "10": "ten"}) == "ten"


def test_replace_all_follows_go_regexp_rules() -> None:
    lex = ShellLex()
    assert lex.process_word("${V//x/-}", {"V": "axbxc"}) == "a-b-c"
    assert lex.process_word("${V//*/-}", {"V": "abc"}) == "-"  # no extra empty match
    assert lex.process_word("${V//b/[$$0]}", {"V": "abc"}) == "a[0]c"  # $$ is a parameter
    assert lex.process_word("${V//b/<\\$0>}", {"V": "abc"}) == "a<\\b>c"


def test_go_helpers() -> None:
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
    assert trim_space("\u00a0 x \x85\t") == "x"
    assert trim_space("\x1cx") == "\x1cx"  # not whitespace to Go
