"""The Dockerfile parser: BuildKit's ``frontend/dockerfile/parser`` (v0.12 grammar) in pure Python.

It turns text into instructions the way BuildKit does — directives, continuation lines, comments
inside continuations, flags, per-instruction argument splitting, JSON versus shell form and
heredocs — so ``value`` here is what BuildKit's AST holds. Meaning (ARG scope, expansion, typed
commands) is ``instructions.py``'s job.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from graphbuild.dockerfile.errors import DockerfileSyntaxError
from graphbuild.dockerfile.shell import ShellLex, go_quote, is_space, trim_left_space, trim_space

DEFAULT_ESCAPE = "\\"
# Directives BuildKit v0.12 knows; any other `# key=value` line ends the directive block.
VALID_DIRECTIVES = ("syntax", "escape")
HEREDOC_COMMANDS = frozenset({"add", "copy", "run"})
MAX_LINE_BYTES = 64 * 1024  # bufio.MaxScanTokenSize: BuildKit reads no longer line

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")  # BuildKit's reWhitespace: ASCII only
# Go's \s is [\t\n\f\r ]; Python's would match Unicode spaces too.
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_HEREDOC = re.compile(r"([0-9]*)<<(-?)([^<]*)\Z")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


@dataclass(frozen=True)
class Heredoc:
    """A ``<<NAME`` body. ``content`` is raw; ``chomped`` strips tabs as ``<<-`` asks."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    file_descriptor: int = 0

    @property
    def chomped(self) -> str:
        return chomp_heredoc(self.content) if self.chomp else self.content


@dataclass
class Instruction:
    """One instruction as BuildKit's AST node holds it.

    For ONBUILD, ``sub_cmd``/``sub_flags`` name the trigger and ``value``/``json`` are the
    trigger's arguments (as BuildKit's AST nests them). ``original`` is the logical line, after
    continuations are joined, without heredoc bodies.
    """

    cmd: str
    flags: list[str]
    value: list[str]
    json: bool
    original: str
    start_line: int
    end_line: int
    heredocs: list[Heredoc] = field(default_factory=list)
    sub_cmd: str | None = None
    sub_flags: list[str] = field(default_factory=list)
    keyword: str = ""  # the keyword as written, e.g. "From"


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    directives: dict[str, str]
    escape: str
    path: str = "Dockerfile"


class _ArgumentError(Exception):
    """An instruction's arguments are malformed; parse() adds the line."""


class _NotJSON(Exception):
    """Not a JSON string array: BuildKit falls back to the shell form."""


def chomp_heredoc(content: str) -> str:
    """``<<-`` strips leading tabs from every line (BuildKit's ChompHeredocContent)."""
    return _LEADING_TABS.sub("", content)


# -- directives and physical lines -------------------------------------------------------------


class _Directives:
    """Parser directives: only at the top, each once; the first other line ends them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.done = False
        self.escape = DEFAULT_ESCAPE
        self.continuation = _continuation_regex(DEFAULT_ESCAPE)

    def feed(self, line: str) -> None:
        if self.done:
            return
        if not line.startswith("#"):
            self.done = True
            return
        match = _DIRECTIVE.match(trim_left_space(line[1:]))
        key = match.group(1).lower() if match else ""
        if key not in VALID_DIRECTIVES:
            self.done = True
            return
        if key in self.values:
            raise _ArgumentError(f"only one {key} parser directive can be used")
        value = match.group(2)
        if key == "escape":
            if value not in ("`", "\\"):
                raise _ArgumentError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self.continuation = _continuation_regex(value)
        self.values[key] = value


def _continuation_regex(escape: str) -> re.Pattern[str]:
    # An escape at the end continues the line, unless it is itself escaped.
    esc = re.escape(escape)
    return re.compile(f"([^{esc}]){esc}[ \\t]*\\Z|^{esc}[ \\t]*\\Z")


def _physical_lines(text: str) -> list[str]:
    """Lines with their ``\\n`` kept, as BuildKit's scanLines splits them."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _is_comment(line: str) -> bool:
    return trim_left_space(line).startswith("#")


def _process_line(directives: _Directives, raw: str, strip_left: bool) -> str:
    """BuildKit's processLine: directive bookkeeping, and comments become empty."""
    line = _trim_newline(raw)
    if strip_left:
        line = trim_left_space(line)
    directives.feed(line)
    return "" if _is_comment(line) else line


def _trim_continuation(line: str, directives: _Directives) -> tuple[str, bool]:
    """(line without its continuation escape, whether the logical line ends here)."""
    if directives.continuation.search(line):
        return directives.continuation.sub(r"\1", line), False
    return line, True


# -- splitting an instruction (split_command.go, line_parsers.go) -----------------------------


def split_command(line: str) -> tuple[str, list[str], str]:
    """(keyword, flags, arguments) of a logical line."""
    parts = _WHITESPACE.split(trim_space(line), maxsplit=1)
    args, flags = "", []
    if len(parts) == 2:
        args, flags = _extract_flags(parts[1])
    return parts[0], flags, trim_space(args)


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Leading ``--flag[=value]`` words. Go walks bytes here, so non-ASCII bytes become
    Latin-1 characters (``é`` reads as ``Ã©``) and 0x85/0xA0 bytes count as spaces."""
    data = line.encode("utf-8")
    size = len(data)
    words: list[str] = []
    word: list[str] = []
    phase, quote, blank_ok, pos = "spaces", "", False, 0
    while pos < size:
        ch = chr(data[pos])
        if phase == "spaces":
            if is_space(ch):
                pos += 1
                continue
            if ch != "-" or pos + 1 == size or data[pos + 1] != ord("-"):
                return data[pos:].decode("utf-8", "replace"), words
            phase = "word"
        if phase == "word" and is_space(ch):
            text = "".join(word)
            if text == "--":
                return data[pos:].decode("utf-8", "replace"), words
            if blank_ok or text:
                words.append(text)
            phase, word, blank_ok = "spaces", [], False
        elif phase == "word" and ch in "'\"":
            quote, blank_ok, phase = ch, True, "quote"
        elif phase == "quote" and ch == quote:
            phase = "word"
        elif ch == "\\":
            if pos + 1 == size:  # a trailing backslash is dropped
                phase = "word"
            else:
                pos += 1
                word.append(chr(data[pos]))
        else:
            word.append(ch)
        pos += 1
    text = "".join(word)
    if phase != "spaces" and text != "--" and (blank_ok or text):
        words.append(text)
    return "", words


def parse_words(rest: str, escape: str) -> list[str]:
    """BuildKit's parseWords: split on whitespace, keeping quotes and escapes in the words."""
    words: list[str] = []
    word: list[str] = []
    phase, quote, blank_ok = "spaces", "", False
    pos, size = 0, len(rest)
    while pos < size:
        ch = rest[pos]
        if phase == "spaces":
            if is_space(ch):
                pos += 1
                continue
            phase = "word"
        if phase == "word":
            if is_space(ch):
                if blank_ok or word:
                    words.append("".join(word))
                phase, word, blank_ok = "spaces", [], False
                pos += 1
                continue
            if ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
            if ch == escape:
                if pos + 1 == size:  # an escape at the end of the line is dropped
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        if ch == quote:
            phase = "word"
        if ch == escape and quote != "'":
            if pos + 1 == size:
                phase = "word"
                pos += 1
                continue
            pos += 1
            word.append(ch)
            ch = rest[pos]
        word.append(ch)
        pos += 1
    if phase != "spaces" and (blank_ok or word):
        words.append("".join(word))
    return words


def _go_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # Go's float64 decoding fails here, which means "not JSON"
        raise _NotJSON(text)
    return value


def _no_constant(text: str) -> None:
    raise _NotJSON(text)  # NaN, Infinity: Python's json accepts them, Go's does not


def _fix_surrogates(text: str) -> str:
    # Go replaces unpaired UTF-16 surrogates from \u escapes with U+FFFD.
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


_JSON = json.JSONDecoder(parse_float=_go_float, parse_int=_go_float, parse_constant=_no_constant)


def parse_json_array(rest: str) -> list[str]:
    """A JSON array of strings, or _NotJSON; a non-string element is an error, as in BuildKit."""
    rest = trim_left_space(rest)
    if not rest.startswith("["):
        raise _NotJSON(rest)
    try:  # BuildKit decodes the first JSON value and ignores whatever follows it
        data, _ = _JSON.raw_decode(rest)
    except (ValueError, RecursionError):
        raise _NotJSON(rest) from None
    if not all(isinstance(item, str) for item in data):
        raise _ArgumentError(
            "when using JSON array syntax, arrays must be comprised of strings only")
    return [_fix_surrogates(item) for item in data]


@dataclass
class _Node:
    """The parts of a logical line the dispatch table produces."""

    keyword: str
    flags: list[str]
    value: list[str]
    json: bool = False
    child: _Node | None = None


def _parse_maybe_json(rest: str) -> tuple[list[str], bool]:
    if not rest:
        return [], False
    try:
        return parse_json_array(rest), True
    except _NotJSON:
        return [rest], False


def _parse_maybe_json_list(rest: str) -> tuple[list[str], bool]:
    try:
        return parse_json_array(rest), True
    except _NotJSON:
        return _split_whitespace(rest), False


def _split_whitespace(rest: str) -> list[str]:
    return _WHITESPACE.split(rest) if rest else []


def _parse_name_val(rest: str, escape: str, keyword: str) -> list[str]:
    """ENV and LABEL: ``key=value ...``, or the legacy ``KEY value with spaces``."""
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _ArgumentError(f"{keyword} must have two arguments")
        return parts
    pairs: list[str] = []
    for word in words:
        if "=" not in word:
            raise _ArgumentError(f"Syntax error - can't find = in {go_quote(word)}. "
                                 "Must be of the form: name=value")
        pairs.extend(word.split("=", 1))
    return pairs


def _parse_health(rest: str) -> tuple[list[str], bool]:
    """HEALTHCHECK: a type word (CMD/NONE) and then a maybe-JSON command.

    Go scans bytes here too: only ASCII spaces (and 0x85/0xA0 bytes) separate the type."""
    data = rest.encode("utf-8")
    sep = 0
    while sep < len(data) and not is_space(chr(data[sep])):
        sep += 1
    nxt = sep
    while nxt < len(data) and is_space(chr(data[nxt])):
        nxt += 1
    if sep == 0:
        return [], False
    values, is_json = _parse_maybe_json(data[nxt:].decode("utf-8", "replace"))
    return [data[:sep].decode("utf-8", "replace"), *values], is_json


_LineParser = Callable[[str, str], tuple[list[str], bool]]
_DISPATCH: dict[str, _LineParser] = {
    "add": lambda rest, esc: _parse_maybe_json_list(rest),
    "arg": lambda rest, esc: (parse_words(rest, esc), False),
    "cmd": lambda rest, esc: _parse_maybe_json(rest),
    "copy": lambda rest, esc: _parse_maybe_json_list(rest),
    "entrypoint": lambda rest, esc: _parse_maybe_json(rest),
    "env": lambda rest, esc: (_parse_name_val(rest, esc, "ENV"), False),
    "expose": lambda rest, esc: (_split_whitespace(rest), False),
    "from": lambda rest, esc: (_split_whitespace(rest), False),
    "healthcheck": lambda rest, esc: _parse_health(rest),
    "label": lambda rest, esc: (_parse_name_val(rest, esc, "LABEL"), False),
    "maintainer": lambda rest, esc: ([rest] if rest else [], False),
    "run": lambda rest, esc: _parse_maybe_json(rest),
    "shell": lambda rest, esc: _parse_maybe_json(rest),
    "stopsignal": lambda rest, esc: ([rest] if rest else [], False),
    "user": lambda rest, esc: ([rest] if rest else [], False),
    "volume": lambda rest, esc: _parse_maybe_json_list(rest),
    "workdir": lambda rest, esc: ([rest] if rest else [], False),
}
KNOWN_COMMANDS = frozenset(_DISPATCH) | {"onbuild"}


def _node_from_line(line: str, escape: str) -> _Node:
    keyword, flags, rest = split_command(line)
    cmd = keyword.lower()
    if cmd == "onbuild":  # the AST nests the trigger under one empty-valued node
        child = _node_from_line(rest, escape) if rest else None
        return _Node(keyword, flags, [""] if child else [], False, child)
    parser = _DISPATCH.get(cmd)
    if parser is None:  # BuildKit keeps unknown instructions with one empty argument
        return _Node(keyword, flags, [""])
    values, is_json = parser(rest, escape)
    return _Node(keyword, flags, values, is_json)


# -- heredocs (parser.go) ----------------------------------------------------------------------

# BuildKit finds heredoc words with its shell lexer; v0.12 lacked ${VAR#…}-style modifiers.
_LINE_LEX = ShellLex(raw_quotes=True, raw_escapes=True, skip_unset_env=True, legacy_modifiers=True)
_WORD_LEX = ShellLex(skip_unset_env=True, legacy_modifiers=True)
_WORD_LEX_RAW = ShellLex(raw_quotes=True, skip_unset_env=True, legacy_modifiers=True)


def _can_contain_heredoc(node: _Node) -> bool:
    target = node.child if node.keyword.lower() == "onbuild" and node.child else node
    return target.keyword.lower() in HEREDOC_COMMANDS and not target.json


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc a word such as ``<<EOF``, ``<<-"EOF"`` or ``3<<EOF`` opens, else None."""
    match = _HEREDOC.match(word)
    if not match or not match.group(3):
        return None
    rest = match.group(3)
    words = _WORD_LEX.process_words(rest, {})
    if len(words) != 1:
        return None
    raw = _WORD_LEX_RAW.process_words(rest, {})
    if len(raw) != len(words):
        raise _ArgumentError(f"internal lexing of heredoc produced inconsistent results: {rest}")

    def quotes(text: str) -> int:
        return text.count("'") + text.count('"')

    digits = match.group(1)
    return Heredoc(
        name=words[0],
        content="",
        expand=quotes(words[0]) == quotes(raw[0]),  # any quoting turns expansion off
        chomp=match.group(2) == "-",
        file_descriptor=min(int(digits), 2**64 - 1) if digits else 0,
    )


def heredocs_from_line(line: str) -> list[Heredoc]:
    """Every heredoc a logical line opens, in order."""
    try:
        words = _LINE_LEX.process_words(line, {})
    except DockerfileSyntaxError:
        return []  # BuildKit ignores lexing errors here: the line just has no heredocs
    return [doc for word in words if (doc := parse_heredoc(word)) is not None]


# -- the parse loop ----------------------------------------------------------------------------


class _Lines:
    """A cursor over physical lines that counts them.

    Like Go's bufio.Scanner under BuildKit, it stops at a line of 64 KiB or more, as if the file
    ended there; parse() then reports ``too_long``."""

    def __init__(self, text: str) -> None:
        self._lines: Iterator[str] = iter(_physical_lines(text))
        self.number = 0
        self.too_long = False

    def next(self) -> str | None:
        line = None if self.too_long else next(self._lines, None)
        if line is not None and len(line) >= MAX_LINE_BYTES // 4 and len(
                line.rstrip("\n").encode("utf-8")) >= MAX_LINE_BYTES:
            self.too_long, line = True, None
        if line is not None:
            if self.number == 0:
                line = line.removeprefix("\ufeff")
            self.number += 1
        return line


def _logical_line(lines: _Lines, directives: _Directives, first: str) -> str | None:
    """Join a first line with its continuation lines; None for a comment or blank line."""
    line, done = _trim_continuation(_process_line(directives, first, True), directives)
    if done and not line:
        return None
    parts = [line]
    while not done and (raw := lines.next()) is not None:
        line = _process_line(directives, raw, False)
        if _is_comment(raw) or not trim_left_space(line):
            continue  # comment lines and empty lines inside a continuation are skipped
        line, done = _trim_continuation(line, directives)
        parts.append(line)
    return "".join(parts)


def _read_heredocs(lines: _Lines, docs: list[Heredoc], start: int) -> list[Heredoc]:
    filled = []
    for doc in docs:
        body: list[str] = []
        while True:
            raw = lines.next()
            if raw is None:
                raise DockerfileSyntaxError("unterminated heredoc", start)
            candidate = _trim_newline(raw)
            if doc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == doc.name:
                break
            body.append(raw)
        filled.append(Heredoc(doc.name, "".join(body), doc.expand, doc.chomp, doc.file_descriptor))
    return filled


def _instruction(lines: _Lines, directives: _Directives, line: str, start: int) -> Instruction:
    try:
        node = _node_from_line(line, directives.escape)
        docs = (heredocs_from_line(line)
                if "<<" in line and _can_contain_heredoc(node) else [])
    except _ArgumentError as exc:
        raise DockerfileSyntaxError(str(exc), start) from None
    except DockerfileSyntaxError as exc:  # from lexing a heredoc word
        exc.line = start
        raise
    heredocs = _read_heredocs(lines, docs, start)
    child = node.child
    return Instruction(
        cmd=node.keyword.lower(), flags=node.flags,
        value=child.value if child else node.value, json=child.json if child else node.json,
        original=line, start_line=start, end_line=lines.number, heredocs=heredocs,
        sub_cmd=child.keyword.lower() if child else None,
        sub_flags=child.flags if child else [], keyword=node.keyword,
    )


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text as BuildKit does; DockerfileSyntaxError names the line."""
    directives = _Directives()
    lines = _Lines(text)
    instructions: list[Instruction] = []
    try:
        while (raw := lines.next()) is not None:
            start = lines.number
            try:
                line = _logical_line(lines, directives, raw)
            except _ArgumentError as exc:  # a directive error
                raise DockerfileSyntaxError(str(exc), lines.number) from None
            if line is not None:
                instructions.append(_instruction(lines, directives, line, start))
        if not instructions:
            raise DockerfileSyntaxError("file with no instructions", lines.number or None)
        if lines.too_long:
            raise DockerfileSyntaxError(
                f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES - 1}",
                lines.number + 1)
    except DockerfileSyntaxError as exc:
        exc.path = path
        raise
    return Dockerfile(instructions, dict(directives.values), directives.escape, path)
