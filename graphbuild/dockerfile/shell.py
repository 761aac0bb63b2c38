"""BuildKit's Dockerfile word lexer (``frontend/dockerfile/shell/lex.go``), in pure Python.

It removes quotes and escapes, expands ``$VAR`` / ``${VAR…}`` and splits words exactly as BuildKit
does, quirks included, because a Dockerfile means what BuildKit makes of it. The Go helpers that
the parser shares (whitespace, ``%q`` quoting) live here too, to keep one definition of each.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from graphbuild.dockerfile.errors import DockerfileSyntaxError

# Go's unicode.IsSpace: Python's str.isspace also accepts \x1c-\x1f, which Go does not.
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_GO_SPACE_STR = "".join(sorted(GO_SPACE))
_GO_SPACE_RE = re.compile(f"[{re.escape(_GO_SPACE_STR)}]+")
_PLAIN_SPECIAL = frozenset("$'\"\ufeff")  # what the pass below may change in a word
SPECIAL_PARAMS = frozenset("@*#?-$!0")
_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


def is_space(ch: str) -> bool:
    """Go's ``unicode.IsSpace``."""
    return ch in GO_SPACE


def trim_space(text: str) -> str:
    """Go's ``strings.TrimSpace``."""
    start, end = 0, len(text)
    while start < end and text[start] in GO_SPACE:
        start += 1
    while end > start and text[end - 1] in GO_SPACE:
        end -= 1
    return text[start:end]


def trim_left_space(text: str) -> str:
    """Go's ``bytes.TrimLeftFunc(s, unicode.IsSpace)``."""
    start = 0
    while start < len(text) and text[start] in GO_SPACE:
        start += 1
    return text[start:]


def _is_digit(ch: str) -> bool:
    return unicodedata.category(ch) == "Nd"  # Go's unicode.IsDigit; str.isdigit is wider


def _is_name_char(ch: str) -> bool:
    return ch.isalpha() or _is_digit(ch) or ch == "_"


_QUOTE_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r",
                  "\t": r"\t", "\v": r"\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """Go's ``%q`` / ``strconv.Quote``, so error messages read as BuildKit's do."""
    out = ['"']
    for ch in text:
        if ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif ch == " " or (ch.isprintable() and ch not in GO_SPACE):
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _syntax_error(message: str) -> Exception:
    return DockerfileSyntaxError(message)


class _LexError(ValueError):
    """An error inside one word; ``ShellLex.process`` wraps it as BuildKit does."""


@dataclass
class _Words:
    """``wordsStruct``: splits on unquoted whitespace; quoted text never splits a word."""

    words: list[str] = field(default_factory=list)
    word: str = ""
    in_word: bool = False

    def add_char(self, ch: str) -> None:
        if ch in GO_SPACE:
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word, self.in_word = "", False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word, self.in_word = "", False
        return self.words


@dataclass
class Expansion:
    """What one word became, and which variables it read (set, and not set)."""

    result: str
    words: list[str]
    matched: set[str]
    unmatched: set[str]


class ShellLex:
    """BuildKit's ``shell.Lex``.

    ``raw_quotes`` / ``raw_escapes`` keep quote and escape characters in the output;
    ``skip_unset_env`` leaves references to unset variables as written;
    ``skip_process_quotes`` treats quotes as plain text (heredoc bodies);
    ``legacy_modifiers`` rejects ``${VAR#…}``, ``${VAR%…}`` and ``${VAR/…}`` as BuildKit v0.12 did,
    which decides whether a line's ``<<WORD`` is a heredoc the way that parser does.
    """

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset_env: bool = False,
        skip_process_quotes: bool = False,
        legacy_modifiers: bool = False,
    ) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"escape token must be \\ or `, not {escape!r}")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset_env = skip_unset_env
        self.skip_process_quotes = skip_process_quotes
        self.legacy_modifiers = legacy_modifiers

    def process(self, word: str, env: Mapping[str, str]) -> Expansion:
        """Expand ``word``; errors raise DockerfileSyntaxError with BuildKit's message."""
        if _PLAIN_SPECIAL.isdisjoint(word) and self.escape not in word:
            # nothing to expand, unquote or unescape (most words): the word as it is, split on
            # whitespace as the pass below would
            trimmed = word.strip(_GO_SPACE_STR)
            return Expansion(word, _GO_SPACE_RE.split(trimmed) if trimmed else [], set(), set())
        state = _Word(self, word, env)
        try:
            result, words = state.stop_on(None, self.raw_escapes)
        except _LexError as exc:
            raise _syntax_error(f"failed to process {go_quote(word)}: {exc}") from None
        return Expansion(result, words, state.matched, state.unmatched)

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """The word with quotes removed and variables expanded (``ProcessWord``)."""
        return self.process(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """The expansion split into words on unquoted whitespace (``ProcessWords``)."""
        return self.process(word, env).words


class _Word:
    """``shellWord``: one pass over one word with a text/scanner-like cursor."""

    def __init__(self, lex: ShellLex, text: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        # text/scanner skips a byte-order mark at the very start of its input.
        self.text = text.removeprefix("\ufeff")
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    # -- cursor ------------------------------------------------------------------------------

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def next(self) -> str | None:
        ch = self.peek()
        if ch is not None:
            self.pos += 1
        return ch

    def get_env(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    # -- grammar -----------------------------------------------------------------------------

    def stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        """``processStopOn``: read up to ``stop`` (consumed) or the end of the word."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str | None) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        quotes = not self.lex.skip_process_quotes
        while (ch := self.peek()) is not None:
            if stop is not None and ch == stop:
                self.next()
                return "".join(out), words.result()
            if ch == "$":
                text = self.dollar()
                out.append(text)
                words.add_string(text)
            elif quotes and ch in "'\"":
                text = self.single_quote() if ch == "'" else self.double_quote()
                out.append(text)
                words.add_raw(text)
            elif not self._plain(out, words):
                break
        if stop is not None:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def _plain(self, out: list[str], words: _Words) -> bool:
        """One ordinary character, or an escape and the character it escapes."""
        ch = self.next()
        if ch == self.lex.escape:
            if self.raw_escapes:
                words.add_raw(ch)
                out.append(ch)
            ch = self.next()
            if ch is None:  # an escape at the very end is dropped
                return False
            words.add_raw(ch)
        else:
            words.add_char(ch)
        out.append(ch)
        return True

    def single_quote(self) -> str:
        quote = self.next()
        out = [quote] if self.lex.raw_quotes else []
        while True:
            ch = self.next()
            if ch is None:
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        quote = self.next()
        out = [quote] if self.lex.raw_quotes else []
        while True:
            ch = self.peek()
            if ch is None:
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.lex.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if following is None:
                    continue
                if following in ('"', "$", self.lex.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        """``processName``: a digit run, one special parameter, or [letters digits _]."""
        out: list[str] = []
        while (ch := self.peek()) is not None:
            if not out and _is_digit(ch):
                while (ch := self.peek()) is not None and _is_digit(ch):
                    out.append(self.next())
                return "".join(out)
            if not out and ch in SPECIAL_PARAMS:
                return self.next()
            if not _is_name_char(ch):
                break
            out.append(self.next())
        return "".join(out)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value
        self.next()
        first = self.peek()
        if first is None:
            raise _LexError("syntax error: missing '}'")
        if first in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch == ":":
            op = self.next()
            return self.modifier(name, op, ":" + (op or "\ufffd"), null_is_unset=True)
        modifiers = "+-?" if self.lex.legacy_modifiers else "+-?#%"
        if ch is not None and ch in modifiers:
            return self.modifier(name, ch, ch, null_is_unset=False)
        if ch == "/" and not self.lex.legacy_modifiers:
            return self.substitute(name)
        raise _LexError(f"unsupported modifier ({ch or chr(0xFFFD)}) in substitution")

    def _word_until_brace(self, raw_escapes: bool) -> str:
        try:
            word, _ = self.stop_on("}", raw_escapes)
        except _LexError:
            if self.peek() is None:
                raise _LexError("syntax error: missing '}'") from None
            raise
        return word

    def modifier(self, name: str, op: str | None, written: str, *, null_is_unset: bool) -> str:
        """``${name-word}``, ``${name:+word}``, ``${name?msg}``, ``${name#pat}``, …"""
        pattern_op = op in ("#", "%") and not self.lex.legacy_modifiers
        word = self._word_until_brace(pattern_op)
        value, found = self.get_env(name)
        if self.lex.skip_unset_env and not found:
            return "${" + name + written + word + "}"
        empty = not found or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if op == "?":
            if not found:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if pattern_op:
            greedy = word.startswith(op)
            if greedy:
                word = word[1:]
            return trim_suffix(word, value, greedy) if op == "%" else trim_prefix(word, value, greedy)
        raise _LexError(f"unsupported modifier ({written}) in substitution")

    def substitute(self, name: str) -> str:
        """``${name/pattern/replacement}`` and ``${name//pattern/replacement}``."""
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.stop_on("/", True)
        except _LexError:
            if self.peek() is None:
                raise _LexError("syntax error: missing '/' in ${}") from None
            raise
        replacement = self._word_until_brace(True)
        value, found = self.get_env(name)
        if self.lex.skip_unset_env and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = shell_pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return _go_replace_all(regex, value, replacement)
        match = regex.search(value)
        if match is None:
            return value
        return value[: match.start()] + replacement + value[match.end():]


# -- ${VAR#pattern} helpers (lex.go's convertShellPatternToRegex and friends) ----------------


def shell_pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard (``*``, ``?``, ``\\`` escapes; no brackets) as a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            following = pattern[i] if i < len(pattern) else None
            if following in ("}", "/"):  # escaped only to get past ${…}'s own syntax
                continue
            if following not in ("*", "?", "\\"):
                shown = following if following is not None else "%!c(int32=-1)"
                raise _LexError(f"invalid pattern ({pattern}) in substitution: "
                                f"invalid escape '\\{shown}'")
            out.append("\\" + following)
            i += 1
            continue
        out.append("\\" + tok if tok in _REGEX_SPECIAL else tok)
    return re.compile("".join(out))


def trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    """``${VAR#pattern}`` (shortest) and ``${VAR##pattern}`` (longest)."""
    match = shell_pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def reverse_pattern(pattern: str) -> str:
    """Reverse a pattern but keep each escape in front of the character it escapes."""
    out = [""] * len(pattern)
    last = len(pattern) - 1
    i = 0
    while i <= last:
        tok = pattern[i]
        if tok == "\\" and i != last:
            out[last - i - 1] = tok
            out[last - i] = pattern[i + 1]
            i += 2
        else:
            out[last - i] = tok
            i += 1
    return "".join(out)


def trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    """``${VAR%pattern}`` / ``${VAR%%pattern}``: a prefix trim on the reversed strings."""
    return trim_prefix(reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _go_replace_all(regex: re.Pattern[str], value: str, template: str) -> str:
    """Go's ``Regexp.ReplaceAllString``: its empty-match rule and ``$name`` templates."""
    out: list[str] = []
    pos, last, prev_end = 0, 0, -1
    while pos <= len(value):
        match = regex.search(value, pos)
        if match is None:
            break
        start, end = match.span()
        accept = True
        if end == pos:  # an empty match at the search position
            accept = start != prev_end
            pos += 1
        else:
            pos = end
        prev_end = end
        if accept:
            out.append(value[last:start])
            out.append(_go_expand(template, match.group(0)))
            last = end
    out.append(value[last:])
    return "".join(out)


def _go_expand(template: str, whole: str) -> str:
    """Go's ``Regexp.Expand`` for a pattern with no groups: only ``$0`` means something."""
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if template.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        name, rest = _template_name(template, i + 1)
        if name is None:
            out.append("$")
            i += 1
            continue
        if name == "0":
            out.append(whole)
        i = rest
    return "".join(out)


def _template_name(template: str, i: int) -> tuple[str | None, int]:
    brace = i < len(template) and template[i] == "{"
    j = i + 1 if brace else i
    k = j
    while k < len(template) and _is_name_char(template[k]):
        k += 1
    if k == j:
        return None, i
    if brace:
        if k >= len(template) or template[k] != "}":
            return None, i
        return template[j:k], k + 1
    return template[j:k], k
