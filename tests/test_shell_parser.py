"""The shell's lexer and parser: what admins type parses to the right tree; any other text ends
in one ParseError with a column (never another exception, never a hang)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.shell.errors import ParseError
from labsim.shell.lexer import tokenize
from labsim.shell.parser import (
    ArrayLit,
    Assign,
    Binary,
    Block,
    Command,
    Const,
    HashLit,
    Member,
    Param,
    Pipeline,
    Str,
    Sub,
    Unary,
    Var,
    parse,
)


def only(text: str) -> Pipeline:
    script = parse(text)
    assert len(script.statements) == 1
    st_ = script.statements[0]
    assert isinstance(st_, Pipeline)
    return st_


def test_where_object_script_block_pipeline():
    p = only('Get-Queue | Where-Object {$_.Status -eq "Retry"} | fl *')
    assert [e.name for e in p.elements if isinstance(e, Command)] == ["Get-Queue", "Where-Object", "fl"]
    block = p.elements[1].args[0]
    assert isinstance(block, Block) and block.text == '$_.Status -eq "Retry"'
    cond = block.body.statements[0].elements[0]
    assert cond == Binary("eq", Member(Var("_"), "Status"), Str("Retry", expand=True))
    assert p.elements[2].args == (Str("*"),)


def test_arguments_barewords_numbers_arrays_and_colon_values():
    p = only("Set-TransportService CMHYBD01 -ExternalDNSServers 8.8.8.8,8.8.4.4 -Port 25 -Resubmit:$true")
    args = p.elements[0].args
    assert args[0] == Str("CMHYBD01")
    assert args[1] == Param("ExternalDNSServers", None, args[1].pos)
    assert args[2] == ArrayLit((Str("8.8.8.8"), Str("8.8.4.4")))
    assert args[4] == Const(25)
    assert args[5].name == "Resubmit" and args[5].value == Var("true")


def test_hashtable_add_and_quoted_identity():
    p = only("Set-ReceiveConnector 'CMHYBD01\\Inbound from Office 365' -RemoteIPRanges @{Add='192.168.1.50'}")
    args = p.elements[0].args
    assert args[0] == Str("CMHYBD01\\Inbound from Office 365")
    assert isinstance(args[2], HashLit) and args[2].pairs[0][0] == "Add"


def test_assignment_member_of_subexpression_and_operators():
    s = parse("$q = Get-Queue; (Get-TransportService X).InternalDNSServers -contains '1.2.3.4' -and -not $false")
    assert isinstance(s.statements[0], Assign) and s.statements[0].name == "q"
    expr = s.statements[1].elements[0]
    assert isinstance(expr, Binary) and expr.op == "and"
    assert isinstance(expr.left, Binary) and expr.left.op == "contains"
    assert isinstance(expr.left.left, Member) and isinstance(expr.left.left.target, Sub)
    assert expr.right == Unary("not", Var("false"))


def test_comma_binds_tighter_than_comparison():
    expr = only("1,2 -contains 2").elements[0]
    assert expr == Binary("contains", ArrayLit((Const(1), Const(2))), Const(2))


def test_dots_in_words_are_words_but_member_access_after_a_variable():
    assert only("Resolve-DnsName cmhybd01.cloudmonkeys.xyz").elements[0].args == (Str("cmhybd01.cloudmonkeys.xyz"),)
    assert only("$x.Count").elements[0] == Member(Var("x"), "Count")
    with pytest.raises(ParseError) as e:
        parse("$x .Count")
    assert e.value.message == "Unexpected token '.Count' in expression or statement."


@pytest.mark.parametrize("text, message, column", [
    ("Get-Queue |", "An empty pipe element is not allowed.", 12),
    ("Get-Queue | | fl", "An empty pipe element is not allowed.", 13),
    ("Get-Queue 'abc", "The string is missing the terminator: '.", 11),
    ('Write-Output "abc', 'The string is missing the terminator: ".', 14),
    ("Get-Queue | where {$_.Status -eq 'Retry'", "Missing closing '}' in statement block or type definition.", 41),
    ("(Get-Queue", "Missing closing ')' in expression.", 11),
    ("@{Add=1", "Missing closing '}' in hash literal.", 8),
    ("$x = ", "You must provide a value expression following the '=' operator.", 6),
    ("1 -eq", "You must provide a value expression following the '-eq' operator.", 6),
    ("Get-Queue | 5", "Expressions are only allowed as the first element of a pipeline.", 13),
])
def test_bad_input_is_one_parse_error_worded_as_powershell(text, message, column):
    with pytest.raises(ParseError) as e:
        parse(text)
    assert e.value.message == message
    assert e.value.column == column


def test_deep_nesting_is_refused_not_a_recursion_error():
    with pytest.raises(ParseError) as e:
        parse("(" * 5000 + "1" + ")" * 5000)
    assert "nested more than" in e.value.message


def test_overlong_input_is_refused():
    with pytest.raises(ParseError):
        tokenize("a" * 200_001)


_ALPHABET = st.sampled_from(list("$-_.,;|(){}[]@=!'\"`# \t\n*?\\:+0123456789aeqlkntGQ") + ["-eq", "Get-Queue", "$_",
                                                                                        "@{", "@(", "$(", "{$_."])


@settings(max_examples=600, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_any_shell_like_text_parses_or_is_one_parse_error(text):
    try:
        parse(text)
    except ParseError as exc:
        assert exc.message and exc.column >= 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_unicode_text_parses_or_is_one_parse_error(text):
    try:
        parse(text)
    except ParseError as exc:
        assert exc.message
