"""Tokens of the PowerShell subset an Exchange admin types.

One pass, no backtracking: every character is consumed by exactly one rule, so any input ends
in tokens or in one `ParseError` naming the column (tests/test_shell_parser.py checks that with
hypothesis). What PowerShell decides by parsing mode (a bare `192.168.1.11` is a string in a
command's arguments) is left to the parser: a run of ordinary characters is one WORD, and the
parser reads it as a number where PowerShell would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ParseError

# WORD: a bare word; STR: a quoted string (`expand` for "double quotes"); VAR: $name; PARAM: -Name
# (`colon` for -Name:value); MEMBER: the name after a '.'; OP: punctuation; NL: end of a line.
KINDS = ("WORD", "STR", "VAR", "PARAM", "MEMBER", "OP", "NL", "EOF")
_PUNCT = "|;,(){}[]=!"
_WORD_END = set(" \t\r\n|;,(){}=]") | {"\u00a0"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARNAME = re.compile(r"[A-Za-z0-9_?:]+")
_PARAM = re.compile(r"-([A-Za-z_][A-Za-z0-9_]*)(:?)")
MAX_LENGTH = 100_000  # a longer line is refused rather than lexed


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    pos: int  # 0-based offset in the line
    space: bool = False  # whitespace before it (PowerShell's `$a.b` vs `$a .b`)
    expand: bool = False  # a "double-quoted" string: $variables inside are expanded
    colon: bool = False  # -Param:value


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise ParseError(f"The input is longer than {MAX_LENGTH} characters.", 1)
    out: list[Token] = []
    i, n = 0, len(text)
    space = False

    def add(kind: str, value: str, pos: int, **kw: bool) -> None:
        nonlocal space
        out.append(Token(kind, value, pos, space, **kw))
        space = False

    while i < n:
        c = text[i]
        if c in " \t\r\u00a0":
            space = True
            i += 1
        elif c == "`" and i + 1 < n and text[i + 1] in "\r\n":  # line continuation
            i += 2
            space = True
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == "\n":
            add("NL", "\n", i)
            i += 1
        elif c in "'\u2018\u2019":
            start = i
            value, i = _single(text, i)
            add("STR", value, start)
        elif c in "\"\u201c\u201d":
            start = i
            value, i = _double(text, i)
            add("STR", value, start, expand=True)
        elif c == "$":
            start = i
            if i + 1 < n and text[i + 1] == "(":
                add("OP", "$(", i)
                i += 2
            elif i + 1 < n and text[i + 1] == "{":
                end = text.find("}", i + 2)
                if end < 0:
                    raise ParseError("Missing closing '}' of the variable name.", i + 1)
                add("VAR", text[i + 2:end], start)
                i = end + 1
            else:
                m = _VARNAME.match(text, i + 1)
                if not m:
                    add("WORD", "$", start)  # a lone '$' is a literal in PowerShell too
                    i += 1
                else:
                    name = m.group(0).rstrip(":")
                    add("VAR", name, start)
                    i = i + 1 + len(name)
        elif c == "@" and i + 1 < n and text[i + 1] in "({":
            add("OP", "@" + text[i + 1], i)
            i += 2
        elif c == "." and out and not space and out[-1].kind in ("VAR", "MEMBER") or (
                c == "." and out and not space and out[-1].kind == "OP" and out[-1].value in ")]"):
            m = _IDENT.match(text, i + 1)
            if not m:
                raise ParseError("Missing property name after reference operator.", i + 1)
            add("OP", ".", i)
            out.append(Token("MEMBER", m.group(0), i + 1))
            i = m.end()
        elif c in _PUNCT:
            add("OP", c, i)
            i += 1
        elif c in "-\u2013\u2014" and (m := _PARAM.match("-" + text[i + 1:i + 200])):
            add("PARAM", m.group(1), i, colon=bool(m.group(2)))
            i += len(m.group(0))
        else:
            start = i
            while i < n and text[i] not in _WORD_END and not (text[i] == "[" and i == start):
                if text[i] in "'\"" and i > start:  # a quote inside a word ends it (kept simple)
                    break
                i += 1
            if i == start:  # '[' at the start of a word: punctuation
                add("OP", text[i], i)
                i += 1
            else:
                add("WORD", text[start:i], start)
    out.append(Token("EOF", "", n, space))
    return out


def _single(text: str, i: int) -> tuple[str, int]:
    """'...' with '' for a quote; nothing expands."""
    start = i
    i += 1
    buf = []
    while i < len(text):
        c = text[i]
        if c in "'\u2018\u2019":
            if i + 1 < len(text) and text[i + 1] in "'\u2018\u2019":
                buf.append("'")
                i += 2
                continue
            return "".join(buf), i + 1
        buf.append(c)
        i += 1
    raise ParseError("The string is missing the terminator: '.", start + 1)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "`": "`", '"': '"', "$": "\x00$", "'": "'"}


def _double(text: str, i: int) -> tuple[str, int]:
    """"..." with `" / "" for a quote and backtick escapes; `$ stays a literal dollar (marked
    with a NUL before it so the evaluator does not expand it)."""
    start = i
    i += 1
    buf = []
    while i < len(text):
        c = text[i]
        if c == "`" and i + 1 < len(text):
            buf.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
            continue
        if c in "\"\u201c\u201d":
            if i + 1 < len(text) and text[i + 1] == '"':
                buf.append('"')
                i += 2
                continue
            return "".join(buf), i + 1
        buf.append(c)
        i += 1
    raise ParseError('The string is missing the terminator: ".', start + 1)
