"""Tokens -> an AST of small frozen dataclasses (no evaluation here).

The grammar is PowerShell's, cut to what admins type at an Exchange Management Shell prompt:

    script     := statement ((';' | NL) statement)*
    statement  := $var '=' pipeline | pipeline
    pipeline   := element ('|' element)*
    element    := command | expression              (an expression only first)
    command    := NAME (-Param[:value] | value)*    (binding to parameters happens at run time,
                                                     where the cmdlet's switches are known)
    expression := compare (-and|-or|-xor compare)*
    compare    := additive (-eq|-ne|-like|-match|-gt|... additive)*
    additive   := array (('+'|'-') array)*
    array      := unary (',' unary)*                (the comma binds tighter than -eq, as in PowerShell)
    unary      := (-not | '!') unary | postfix
    postfix    := primary ('.' Member | '[' expression ']')*
    primary    := number | 'string' | "string" | $var | ( pipeline ) | $( script ) | @( script )
                | @{ key = value; ... } | { script } | bareword

Errors are `ParseError`s worded as PowerShell's parser words them, with the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

from .errors import ParseError
from .lexer import Token, tokenize

MAX_DEPTH = 64  # nesting of (), {}, @(), @{}: deeper is refused (no recursion error, no hang)

COMPARISON = {"eq", "ne", "gt", "ge", "lt", "le", "like", "notlike", "match", "notmatch", "contains",
              "notcontains", "in", "notin"}
COMPARISON |= {p + op for op in list(COMPARISON) for p in ("i", "c")}
LOGICAL = {"and", "or", "xor"}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d+)?|\.\d+)(kb|mb|gb|tb)?", re.IGNORECASE)
_MULTIPLIER = {"kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3, "tb": 1024 ** 4}


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass(frozen=True)
class Str:
    text: str
    expand: bool = False


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class ArrayLit:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class HashLit:
    pairs: tuple[tuple[str, Pipeline], ...]


@dataclass(frozen=True)
class Block:
    body: Script
    text: str = ""


@dataclass(frozen=True)
class Sub:
    body: Script
    array: bool = False  # @( ... ): always an array


@dataclass(frozen=True)
class Member:
    target: Expr
    name: str


@dataclass(frozen=True)
class Index:
    target: Expr
    index: Expr


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Expr


@dataclass(frozen=True)
class Binary:
    op: str
    left: Expr
    right: Expr


Expr = Union[Const, Str, Var, ArrayLit, HashLit, Block, Sub, Member, Index, Unary, Binary]


@dataclass(frozen=True)
class Param:
    name: str
    value: Expr | None = None  # only for -Name:value
    pos: int = 0


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[Param | Expr, ...]
    pos: int = 0


@dataclass(frozen=True)
class Pipeline:
    elements: tuple[Command | Expr, ...]


@dataclass(frozen=True)
class Assign:
    name: str
    value: Pipeline


@dataclass(frozen=True)
class Script:
    statements: tuple[Assign | Pipeline, ...]


def parse(text: str) -> Script:
    """The whole input as a script; raises ParseError."""
    p = _Parser(text)
    script = p.script(("EOF",))
    p.ts.expect_kind("EOF")
    return script


def number(word: str) -> int | float | None:
    """A bare word PowerShell reads as a number (`10`, `-5`, `1.5`, `10MB`), else None."""
    m = _NUMBER.fullmatch(word)
    if not m:
        return None
    mult = _MULTIPLIER.get((m.group(3) or "").lower(), 1)
    core = word[:len(word) - len(m.group(3) or "")]
    value: int | float = float(core) if "." in core else int(core)
    return value * mult


class _Tokens:
    """The token stream: one token of look-ahead, the nesting depth, and errors worded as
    PowerShell's parser words them, with the column."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def is_op(self, *values: str) -> bool:
        return self.tok.kind == "OP" and self.tok.value in values

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        return ParseError(message, (tok or self.tok).pos + 1)

    def unexpected(self) -> ParseError:
        t = self.tok
        if t.kind == "EOF":
            return self.error("Incomplete input: the statement is not complete.")
        shown = t.value if t.kind != "PARAM" else "-" + t.value
        if t.kind == "STR":
            shown = self.text[t.pos:t.pos + 40].split("\n")[0]
        return self.error(f"Unexpected token '{shown}' in expression or statement.")

    def expect_op(self, value: str, message: str) -> None:
        if not self.is_op(value):
            raise self.error(message)
        self.advance()

    def expect_kind(self, kind: str) -> None:
        if self.tok.kind != kind:
            raise self.unexpected()

    def nested(self) -> _Depth:
        return _Depth(self)

    def skip_separators(self) -> None:
        while self.tok.kind == "NL" or self.is_op(";"):
            self.advance()

    def skip_newlines(self) -> None:
        while self.tok.kind == "NL":
            self.advance()

    def at_end(self, end: tuple[str, ...]) -> bool:
        """At a token in `end` (a kind, or an OP value such as ')'), or at the end of the input."""
        t = self.tok
        return t.kind == "EOF" or t.kind in end or (t.kind == "OP" and t.value in end)

    def element_end(self) -> bool:
        """At the end of a pipeline element: a new line, '|', ';', ')', '}' or the end of the input."""
        t = self.tok
        return t.kind in ("EOF", "NL") or (t.kind == "OP" and t.value in "|;)}")


class _Parser:
    """The grammar (the module docstring's), one method per rule, over a `_Tokens` stream."""

    def __init__(self, text: str) -> None:
        self.ts = _Tokens(text)

    # --- statements -----------------------------------------------------------------------------
    def script(self, end: tuple[str, ...]) -> Script:
        """Statements until a token in `end` (a kind, or an OP value such as ')')."""
        statements: list[Assign | Pipeline] = []
        self.ts.skip_separators()
        while not self.ts.at_end(end):
            statements.append(self.statement())
            if not (self.ts.tok.kind == "NL" or self.ts.is_op(";") or self.ts.at_end(end)):
                raise self.ts.unexpected()
            self.ts.skip_separators()
        return Script(tuple(statements))

    def statement(self) -> Assign | Pipeline:
        t = self.ts.tok
        if t.kind == "VAR" and self.ts.peek().kind == "OP" and self.ts.peek().value == "=":
            self.ts.advance()
            self.ts.advance()
            if self.ts.element_end():
                raise self.ts.error("You must provide a value expression following the '=' operator.")
            return Assign(t.value, self.pipeline())
        return self.pipeline()

    def pipeline(self) -> Pipeline:
        elements: list[Command | Expr] = [self.element(first=True)]
        while self.ts.is_op("|"):
            self.ts.advance()
            self.ts.skip_newlines()
            if self.ts.element_end():
                raise self.ts.error("An empty pipe element is not allowed.")
            elements.append(self.element(first=False))
        return Pipeline(tuple(elements))

    def element(self, first: bool) -> Command | Expr:
        t = self.ts.tok
        if self.ts.element_end():
            raise self.ts.error("An empty pipe element is not allowed.")
        if t.kind == "WORD" and number(t.value) is None:
            return self.command()
        if t.kind == "OP" and t.value in ("%", "?"):
            return self.command()
        if not first:
            raise self.ts.error("Expressions are only allowed as the first element of a pipeline.")
        return self.expression()

    def command(self) -> Command:
        name_tok = self.ts.advance()
        args: list[Param | Expr] = []
        while not self.ts.element_end():
            t = self.ts.tok
            if t.kind == "PARAM":
                self.ts.advance()
                value = None
                if t.colon:
                    if self.ts.element_end():
                        raise self.ts.error(f"Missing an argument for parameter '{t.value}'.")
                    value = self.argument()
                args.append(Param(t.value, value, t.pos))
            else:
                args.append(self.argument())
        return Command(name_tok.value, tuple(args), name_tok.pos)

    # --- command arguments ------------------------------------------------------------------------
    def argument(self) -> Expr:
        items = [self.arg_primary()]
        while self.ts.is_op(","):
            self.ts.advance()
            self.ts.skip_newlines()
            if self.ts.element_end() or self.ts.tok.kind == "PARAM":
                raise self.ts.error("Missing expression after ','.")
            items.append(self.arg_primary())
        return items[0] if len(items) == 1 else ArrayLit(tuple(items))

    def arg_primary(self) -> Expr:
        t = self.ts.tok
        if t.kind == "WORD":
            self.ts.advance()
            n = number(t.value)
            if n is not None:
                return Const(n)
            return Str(t.value)
        return self.postfix(self.primary())

    # --- expressions --------------------------------------------------------------------------------
    def expression(self) -> Expr:
        left = self.compare()
        while self.ts.tok.kind == "PARAM" and self.ts.tok.value.lower() in LOGICAL:
            op = self.ts.advance().value.lower()
            self._need_operand(op)
            left = Binary(op, left, self.compare())
        return left

    def _need_operand(self, op: str) -> None:
        self.ts.skip_newlines()
        if self.ts.element_end() or self.ts.is_op(","):
            raise self.ts.error(f"You must provide a value expression following the '-{op}' operator.")

    def compare(self) -> Expr:
        left = self.additive()
        while self.ts.tok.kind == "PARAM" and self.ts.tok.value.lower() in COMPARISON:
            op = self.ts.advance().value.lower()
            self._need_operand(op)
            left = Binary(op, left, self.additive())
        return left

    def additive(self) -> Expr:
        left = self.array()
        while self.ts.tok.kind == "WORD" and self.ts.tok.value in ("+", "-"):
            op = self.ts.advance().value
            self._need_operand(op)
            left = Binary(op, left, self.array())
        return left

    def array(self) -> Expr:
        items = [self.unary()]
        while self.ts.is_op(","):
            self.ts.advance()
            self._need_operand(",")
            items.append(self.unary())
        return items[0] if len(items) == 1 else ArrayLit(tuple(items))

    def unary(self) -> Expr:
        t = self.ts.tok
        if (t.kind == "PARAM" and t.value.lower() == "not") or (t.kind == "OP" and t.value == "!"):
            self.ts.advance()
            if self.ts.element_end():
                raise self.ts.error(f"Missing expression after unary operator '{'-not' if t.kind == 'PARAM' else '!'}'.")
            with self.ts.nested():
                return Unary("not", self.unary())
        return self.postfix(self.primary(expression=True))

    def postfix(self, node: Expr) -> Expr:
        while True:
            if self.ts.is_op(".") and self.ts.peek().kind == "MEMBER":
                self.ts.advance()
                node = Member(node, self.ts.advance().value)
            elif self.ts.is_op("[") and not self.ts.tok.space:
                self.ts.advance()
                with self.ts.nested():
                    index = self.expression()
                self.ts.expect_op("]", "Array index expression is missing or not valid.")
                node = Index(node, index)
            else:
                return node

    def primary(self, expression: bool = False) -> Expr:
        t = self.ts.tok
        if t.kind == "STR":
            self.ts.advance()
            return Str(t.value, t.expand)
        if t.kind == "VAR":
            self.ts.advance()
            return Var(t.value)
        if t.kind == "WORD":
            self.ts.advance()
            n = number(t.value)
            return Const(n) if n is not None else Str(t.value)
        if t.kind == "OP":
            if t.value == "(":
                self.ts.advance()
                with self.ts.nested():
                    self.ts.skip_newlines()
                    if self.ts.is_op(")"):
                        raise self.ts.error("An expression was expected after '('.")
                    inner = self.statement()
                    self.ts.skip_newlines()
                self.ts.expect_op(")", "Missing closing ')' in expression.")
                return Sub(Script((inner,)))
            if t.value in ("$(", "@("):
                self.ts.advance()
                with self.ts.nested():
                    body = self.script((")",))
                self.ts.expect_op(")", "Missing closing ')' in subexpression.")
                return Sub(body, array=t.value == "@(")
            if t.value == "{":
                self.ts.advance()
                with self.ts.nested():
                    body = self.script(("}",))
                end = self.ts.tok
                self.ts.expect_op("}", "Missing closing '}' in statement block or type definition.")
                return Block(body, self.ts.text[t.pos + 1:end.pos].strip())
            if t.value == "@{":
                self.ts.advance()
                with self.ts.nested():
                    return self.hash_literal()
        raise self.ts.unexpected()

    def hash_literal(self) -> HashLit:
        pairs: list[tuple[str, Pipeline]] = []
        self.ts.skip_separators()
        while not self.ts.is_op("}"):
            t = self.ts.tok
            if t.kind not in ("WORD", "STR", "MEMBER"):
                if t.kind == "EOF":
                    raise self.ts.error("Missing closing '}' in hash literal.")
                raise self.ts.error("Missing key before '=' in hash literal.")
            self.ts.advance()
            if not self.ts.is_op("="):
                raise self.ts.error("Missing '=' operator after key in hash literal.")
            self.ts.advance()
            self.ts.skip_newlines()
            if self.ts.element_end():
                raise self.ts.error("Missing statement after '=' in hash literal.")
            pairs.append((t.value, self.pipeline()))
            if not (self.ts.tok.kind == "NL" or self.ts.is_op(";", "}")):
                raise self.ts.error("Missing closing '}' in hash literal." if self.ts.tok.kind == "EOF"
                                 else "Unexpected token in hash literal; use ';' between entries.")
            self.ts.skip_separators()
        self.ts.advance()
        return HashLit(tuple(pairs))


class _Depth:
    def __init__(self, parser: _Tokens) -> None:
        self.p = parser

    def __enter__(self) -> None:
        self.p.depth += 1
        if self.p.depth > MAX_DEPTH:
            raise self.p.error(f"The input is nested more than {MAX_DEPTH} levels deep.")

    def __exit__(self, *exc: object) -> None:
        self.p.depth -= 1
