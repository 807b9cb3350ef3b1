"""The shell's evaluator over plain objects: the pipeline cmdlets, PowerShell's comparison rules,
the default table/list layouts and PowerShell's error texts (no lab involved)."""

from __future__ import annotations

import asyncio

import pytest

from labsim.shell.errors import ShellError
from labsim.shell.evaluator import builtins, render, run_text
from labsim.shell.objects import PSObject, View

QUEUE_VIEW = View(table=("Identity", "DeliveryType", "Status", "MessageCount", "NextHopDomain"))


def queues() -> list[PSObject]:
    def q(identity: str, dtype: str, status: str, count: int, hop: str) -> PSObject:
        return PSObject("Queue", {"Identity": identity, "DeliveryType": dtype, "Status": status,
                                  "MessageCount": count, "NextHopDomain": hop, "LastError": "",
                                  "Recipients": ["a@x.com", "b@y.com"]}, QUEUE_VIEW)
    return [q("EX1\\3", "SmartHostConnectorDelivery", "Retry", 2, "contoso.mail.protection.outlook.com"),
            q("EX1\\Submission", "Undefined", "Ready", 0, "Submission"),
            q("EX1\\Unreachable", "Unreachable", "Ready", 1, "Unreachable Domain")]


def run(text: str) -> list[str]:
    ctx = builtins()
    ctx.variables["q"] = queues()
    return render(ctx, asyncio.run(run_text(ctx, text)))


def values(text: str) -> list:
    ctx = builtins()
    ctx.variables["q"] = queues()
    return asyncio.run(run_text(ctx, text))


def test_default_view_is_the_types_table_with_dashes_as_long_as_each_header():
    lines = run("$q")
    assert lines[1] == "Identity        DeliveryType               Status MessageCount NextHopDomain"
    assert lines[2] == "--------        ------------               ------ ------------ -------------"
    assert lines[3].startswith("EX1\\3           SmartHostConnectorDelivery Retry  2")
    assert len(lines) == 7 and lines[0] == lines[-1] == ""


def test_where_object_script_block_and_simplified_syntax_agree():
    a = values('$q | Where-Object {$_.Status -eq "retry"}')  # -eq is case-insensitive
    b = values("$q | ? Status -eq Retry")
    assert [o.get("Identity") for o in a] == [o.get("Identity") for o in b] == ["EX1\\3"]
    assert [o.get("Identity") for o in values("$q | where {$_.MessageCount -gt 0 -and $_.Identity -like '*Unr*'}")] \
        == ["EX1\\Unreachable"]


def test_select_sort_measure_and_member_enumeration():
    assert values("($q | Sort-Object MessageCount -Descending | Select-Object -First 1).Identity") == ["EX1\\3"]
    assert values("$q.Identity") == ["EX1\\3", "EX1\\Submission", "EX1\\Unreachable"]
    assert values("($q | Measure-Object).Count") == [3]
    assert values("($q | Measure-Object MessageCount -Sum).Sum") == [3]
    sel = values("$q | select Identity,Status -First 2")
    assert [list(o.props) for o in sel] == [["Identity", "Status"]] * 2


def test_format_list_star_and_wildcards():
    lines = run("$q | Select-Object -First 1 | fl Next*,Status")
    assert lines == ["", "NextHopDomain : contoso.mail.protection.outlook.com", "Status        : Retry", ""]
    assert "Recipients    : {a@x.com, b@y.com}" in run("$q | Select-Object -First 1 | fl *")


def test_comparison_rules_of_powershell():
    assert values("'abc' -like 'A*'") == [True]
    assert values("'abc' -clike 'A*'") == [False]
    assert values("'Retry' -match '^re'") == [True]
    assert values("1,2,3 -gt 1") == [2, 3]  # a collection on the left filters
    assert values("'b@y.com' -in $q[0].Recipients") == [True]
    assert values("$q[0].Recipients -contains 'A@X.COM'") == [True]
    assert values("5 -eq '5'") == [True]  # the right side takes the left side's type
    assert values("$null -eq $x") == [True]
    assert values("($q | where {$_.Status -eq 'Suspended'}).Count") == [0]  # $null.Count is 0
    assert values("($q | Select-Object -First 1).Count") == [1]  # one object's Count is 1, as in PowerShell 3+


def test_variables_hashtables_and_string_expansion():
    assert values('$n = ($q | where MessageCount -gt 0).Count; "queues with mail: $n"') == ["queues with mail: 2"]
    assert values("$h = @{Add='1.2.3.4'; Remove='5.6.7.8'}; $h.Add") == ["1.2.3.4"]
    assert values('"total: $($q.Count) queues"') == ["total: 3 queues"]
    assert values("'$n stays'") == ["$n stays"]


@pytest.mark.parametrize("text, message", [
    ("Get-Qeueu", "The term 'Get-Qeueu' is not recognized as the name of a cmdlet, function, script file, or operable "
                  "program. Check the spelling of the name, or if a path was included, verify that the path is correct "
                  "and try again."),
    ("$q | Select-Object -Bogus 1", "A parameter cannot be found that matches parameter name 'Bogus'."),
    ("$q | Sort-Object -Property", "Missing an argument for parameter 'Property'. Specify a parameter of the required "
                                   "type and try again."),
    ("$q | Format-List a b", "A positional parameter cannot be found that accepts argument 'b'."),
])
def test_errors_are_worded_as_powershells(text, message):
    with pytest.raises(ShellError) as e:
        values(text)
    assert e.value.message == message


def test_unambiguous_parameter_prefix_binds():
    assert len(values("$q | Select-Object -Fir 2")) == 2
