"""Glob matching in time linear in the path, whatever the pattern.

A glob compiled to a backtracking regular expression (Python's ``re``) can take exponential time:
``*a*a*a*a*c`` against a long run of ``a`` tries every way to split it. Go's regexp (which
Docker's patternmatcher uses) is an automaton and cannot. This module matches the same token
language as an automaton too: the states are sets of pattern positions, each built once per
(state, character) and remembered (a lazy DFA, as RE2 does), so a path costs one dictionary
look-up per character once warm, and at most one pass over the pattern per character cold.

A pattern with at most one unbounded token (``*``, ``**``) cannot backtrack more than linearly,
so it keeps the faster ``re``; both engines accept exactly the same strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

# Tokens: ("lit", ch) one character; ("one",) any character but "/"; ("class", ranges,
# negated) a [...] class, ranges as (lo, hi) pairs (negated, it may match "/" as Go's does);
# ("star",) any run without "/"; ("dirs",) "(.*/)?": nothing, or anything ending in "/";
# ("rest",) ".*". As in the regexps they replace, "." (in "dirs" and "rest") never matches "\n".
Token = tuple
UNBOUNDED = frozenset({"star", "dirs", "rest"})
MAX_TRANSITIONS = 1 << 14  # per pattern; beyond it the remembered transitions start afresh


class Matcher(Protocol):
    def fullmatch(self, text: str) -> object: ...


def token_regex(token: Token) -> str:
    kind = token[0]
    if kind == "lit":
        return re.escape(token[1])
    if kind == "one":
        return "[^/]"
    if kind == "star":
        return "[^/]*"
    if kind == "dirs":
        return "(?:.*/)?"
    if kind == "rest":
        return ".*"
    _, ranges, negated = token
    body = "".join(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}"
                   for lo, hi in ranges)
    if negated:
        return f"[^{body}]" if body else "(?s:.)"
    return f"[{body}]" if body else "(?!)"


def compile_tokens(tokens: Sequence[Token]) -> Matcher:
    """A matcher whose ``fullmatch(text)`` is truthy when the whole of ``text`` matches."""
    tokens = tuple(tokens)
    if sum(t[0] in UNBOUNDED for t in tokens) <= 1:
        return re.compile("".join(map(token_regex, tokens)))
    return Automaton(tokens)


def _class_match(ranges, negated: bool, ch: str) -> bool:
    inside = any(lo <= ch <= hi for lo, hi in ranges)
    return inside != negated


class Automaton:
    """The tokens as a lazily built DFA. A state is a set of positions: ``i`` means "tokens
    before i are matched"; ``-1 - i`` means "inside the "dirs" token i, after a character
    that is not "/"" (it may not end there)."""

    def __init__(self, tokens: tuple[Token, ...]) -> None:
        self.tokens = tokens
        self.end = len(tokens)
        self._ids: dict[frozenset, int] = {}
        self._states: list[frozenset] = []
        self._rows: list[dict[str, int]] = []
        self._accepting: list[bool] = []
        self._start = self._intern(self._close({0}))
        self._dead = self._intern(frozenset())

    def __repr__(self) -> str:
        return f"Automaton({self.tokens!r})"

    def fullmatch(self, text: str) -> bool:
        state, rows, dead = self._start, self._rows, self._dead
        for ch in text:
            nxt = rows[state].get(ch)
            if nxt is None:
                nxt = self._step(state, ch)
            if nxt == dead:
                return False
            state = nxt
        return self._accepting[state]

    def _intern(self, positions: frozenset) -> int:
        sid = self._ids.get(positions)
        if sid is None:
            sid = self._ids[positions] = len(self._states)
            self._states.append(positions)
            self._rows.append({})
            self._accepting.append(self.end in positions)
        return sid

    def _close(self, positions) -> frozenset:
        """Add what the unbounded tokens may skip (they match the empty string)."""
        out = set(positions)
        for i in sorted(p for p in positions if p >= 0):
            while i < self.end and self.tokens[i][0] in UNBOUNDED:
                i += 1
                out.add(i)
        return frozenset(out)

    def _step(self, sid: int, ch: str) -> int:
        nxt: set[int] = set()
        for pos in self._states[sid]:
            if pos < 0:  # inside "dirs" token -1 - pos
                i = -1 - pos
                if ch == "/":
                    nxt.add(i)
                elif ch != "\n":
                    nxt.add(pos)
                continue
            if pos == self.end:
                continue
            token = self.tokens[pos]
            kind = token[0]
            if kind == "lit":
                if ch == token[1]:
                    nxt.add(pos + 1)
            elif kind == "one":
                if ch != "/":
                    nxt.add(pos + 1)
            elif kind == "class":
                if _class_match(token[1], token[2], ch):
                    nxt.add(pos + 1)
            elif kind == "star":
                if ch != "/":
                    nxt.add(pos)
            elif kind == "rest":
                if ch != "\n":
                    nxt.add(pos)
            elif ch == "/":  # "dirs": a "/" may end the group, or be more of its ".*"
                nxt.add(pos)
            elif ch != "\n":
                nxt.add(-1 - pos)
        result = self._intern(self._close(nxt))
        if len(self._states) > MAX_TRANSITIONS:  # a hostile pattern: keep memory bounded
            self._reset()
            return self._intern(self._close(nxt))
        self._rows[sid][ch] = result
        return result

    def _reset(self) -> None:
        self._ids.clear()
        self._states.clear()
        self._rows.clear()
        self._accepting.clear()
        self._start = self._intern(self._close({0}))
        self._dead = self._intern(frozenset())
