"""Loading scenario files: the baseline loads; every kind of bad file stops with one clear error.

A bad file must be reported as a ScenarioError that names the file, the key and the problem,
before anything starts (no listener, no output).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import BASELINE_TOML, scenario_text

from labsim.errors import ScenarioError
from labsim.scenario.loader import find_scenario, list_scenarios, load_scenario

MESSAGE = """
[[message]]
id = "m"
from = "raghu@cloudmonkeys.xyz"
to = ["alex@fabrikam.com"]
"""


def load_error(write_scenario, text: str) -> tuple[ScenarioError, str]:
    path = write_scenario(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value, str(path)


def test_baseline_loads_with_its_changes_applied():
    loaded = load_scenario("hybrid-baseline")
    assert loaded.path.resolve() == BASELINE_TOML.resolve()
    assert loaded.scenario.id == "hybrid-baseline" and loaded.scenario.seed == 1
    assert loaded.start == datetime(2026, 5, 1, 6, 0, tzinfo=UTC) == loaded.lab.start
    hub = next(c for c in loaded.lab.organization.server("CMHYBD01").receive_connectors
               if c.name == "Default CMHYBD01")
    assert hub.protocol_logging_level == "Verbose"
    assert [m.id for m in loaded.scenario.message] == ["exo-to-onprem", "onprem-to-exo", "onprem-to-internet",
                                                       "internet-to-onprem"]
    assert load_scenario(str(BASELINE_TOML)).scenario.id == "hybrid-baseline"  # by file name as well


def test_timeline_changes_are_not_applied_at_load(write_scenario):
    path = write_scenario(scenario_text("""
        [[change]]
        cmdlet = "Set-ReceiveConnector"
        at = "+00:10:00"
        Identity = 'CMHYBD01\\Default Frontend CMHYBD01'
        ProtocolLoggingLevel = "None"
    """))
    loaded = load_scenario(path)
    df = loaded.lab.organization.server("CMHYBD01").receive_connectors[0]
    assert df.protocol_logging_level == "Verbose"
    assert loaded.scenario.change[0].params == {"Identity": r"CMHYBD01\Default Frontend CMHYBD01",
                                                "ProtocolLoggingLevel": "None"}


def test_start_may_be_set(write_scenario):
    loaded = load_scenario(write_scenario(scenario_text(head='start = "2027-01-02T03:04:05Z"\n')))
    assert loaded.start == datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC) == loaded.lab.start


def test_list_finds_scenarios_in_labsim_scenarios_and_skips_broken_files(tmp_path, monkeypatch):
    (tmp_path / "mine.toml").write_text(scenario_text(sid="my-case"), encoding="utf-8")
    (tmp_path / "broken.toml").write_text("id = \n", encoding="utf-8")
    monkeypatch.setenv("LABSIM_SCENARIOS", str(tmp_path))
    rows = {sid: (title, path) for sid, title, path in list_scenarios()}
    assert rows["my-case"] == ("test scenario", (tmp_path / "mine.toml").resolve())
    assert rows["hybrid-baseline"][0] == "Healthy hybrid mail flow in all four directions"
    assert find_scenario("my-case") == (tmp_path / "mine.toml").resolve()
    assert load_scenario("my-case").scenario.id == "my-case"


def test_unknown_id_and_missing_file():
    with pytest.raises(ScenarioError) as info:
        load_scenario("no-such-scenario")
    assert info.value.where == "no-such-scenario" and "`labsim list` shows every id" in info.value.problem
    with pytest.raises(ScenarioError) as info:  # a typo: the nearest ids, not all 32
        load_scenario("hybrid-basline")
    assert info.value.problem == "no scenario with this id (did you mean hybrid-baseline?)"
    with pytest.raises(ScenarioError) as info:
        load_scenario("cert-expire")
    assert "did you mean cert-expired" in info.value.problem and "dns-" not in info.value.problem
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario("missing/nothing.toml")


# --- bad files: (body appended to a valid head, or whole text), the key named, the problem -----------

BAD = {
    "bad TOML": ('id = "t"\ntitle = \n', None, "not valid TOML"),
    "unknown top-level key": (scenario_text(head='colour = "red"\n'), "colour", "unknown key"),
    "unknown key in a table": (scenario_text().replace('fix = "f"', 'fix = "f"\nfixx = "g"'),
                               "training.fixx", "unknown key"),
    "unknown key in a message": (scenario_text(MESSAGE + 'subjct = "typo"\n'), "message[0].subjct", "unknown key"),
    "missing training": ('id = "t"\ntitle = "T"\n', "training", "required key is missing"),
    "missing title": (scenario_text().replace('title = "test scenario"\n', ""), "title", "required key is missing"),
    "sender not in the lab": (scenario_text(MESSAGE.replace("raghu@cloudmonkeys.xyz", "eve@evil.example")),
                              "message[0].from", "eve@evil.example is not a mailbox of the lab"),
    "recipient not an address": (scenario_text(MESSAGE.replace('["alex@fabrikam.com"]', '["alex"]')),
                                 "message[0].to", "'alex' is not an e-mail address"),
    "no recipient": (scenario_text(MESSAGE.replace('["alex@fabrikam.com"]', "[]")),
                     "message[0].to", "at least one recipient"),
    "bad message at": (scenario_text(MESSAGE + 'at = "soon"\n'), "message[0].at", "not a TimeSpan: 'soon'"),
    "bad start": (scenario_text(head='start = "yesterday"\n'), "start", "not a time: 'yesterday'"),
    "bad duration": (scenario_text(head='duration = "forever"\n'), "duration", "not a TimeSpan: 'forever'"),
    "unknown cmdlet": (scenario_text('[[change]]\ncmdlet = "Set-Bogus"\n'), "change[0] (Set-Bogus)",
                       "unknown cmdlet (known: "),
    "unknown parameter": (scenario_text('[[change]]\ncmdlet = "Set-ReceiveConnector"\n'
                                        'Identity = "Default Frontend CMHYBD01"\nBogus = 1\n'),
                          "change[0] (Set-ReceiveConnector Default Frontend CMHYBD01)", "unknown parameter -Bogus"),
    "Exchange rule broken": (scenario_text('[[change]]\ncmdlet = "Set-ReceiveConnector"\n'
                                           'Identity = "Default Frontend CMHYBD01"\nAuthMechanism = ["Tls", "BasicAuthRequireTLS"]\n'),
                             "change[0]", "BasicAuthRequireTLS needs BasicAuth and Tls"),
    "bad parameter in a timeline change": (scenario_text('[[change]]\ncmdlet = "Set-SendConnector"\nat = "+1h"\n'
                                                         'Identity = "Outbound to Office 365"\nSmartHost = ["x"]\n'),
                                           "change[0] (Set-SendConnector Outbound to Office 365)",
                                           "unknown parameter -SmartHost"),
    "bad change at": (scenario_text('[[change]]\ncmdlet = "Set-ReceiveConnector"\nat = "later"\n'
                                    'Identity = "Default Frontend CMHYBD01"\n'), "change[0].at", "not a TimeSpan"),
    "second change broken": (scenario_text('[[change]]\ncmdlet = "Set-TransportService"\nIdentity = "CMHYBD01"\n'
                                           'IntraOrgConnectorProtocolLoggingLevel = "Verbose"\n'
                                           '[[change]]\ncmdlet = "Set-TransportService"\nIdentity = "CMHYBD99"\n'),
                             "change[1]", "no server 'CMHYBD99'"),
    "expectation for an unknown message": (scenario_text(MESSAGE + '[[expect.message]]\nid = "nope"\n'),
                                           "expect.message[0].id", "unknown message id 'nope'"),
    "message id used twice": (scenario_text(MESSAGE + MESSAGE), "message[1].id", "'m' is used twice"),
    "bad fate": (scenario_text(MESSAGE + '[[expect.message]]\nid = "m"\nfate = "lost"\n'),
                 "expect.message[0].fate", "delivered"),
    "bad log spec": (scenario_text('[[expect.log]]\nlog = "CMHYBD01/FrontEnd"\ncontains = "x"\n'),
                     "expect.log[0].log", "is not SERVER/Service/SmtpReceive|SmtpSend"),
    "bad log event": (scenario_text('[[expect.log]]\nlog = "CMHYBD01/FrontEnd/SmtpReceive"\ncontains = "x"\n'
                                    'event = "!"\n'), "expect.log[0].event", "'+'"),
    # A misspelt log spec names a folder that never exists: `absent = true` would hold vacuously.
    "misspelt log service": (scenario_text('[[expect.log]]\nlog = "CMHYBD01/Frontend/SmtpReceive"\ncontains = "x"\n'
                                           'absent = true\n'), "expect.log[0].log", "FrontEnd, Hub, Edge, Mailbox"),
    "log of an unknown server": (scenario_text('[[expect.log]]\nlog = "CMHYBD02/Hub/SmtpSend"\ncontains = "x"\n'),
                                 "expect.log[0].log", "no on-premises server 'CMHYBD02'"),
    "log service the server lacks": (scenario_text('[[expect.log]]\nlog = "CMEDGE01/Hub/SmtpSend"\ncontains = "x"\n'),
                                     "expect.log[0].log", "CMEDGE01 is an Edge server and keeps no Hub logs"),
    # A mailbox expectation without a realm could never hold: bad input, not a failed run.
    "mailbox without realm": (scenario_text(MESSAGE + '[[expect.message]]\nid = "m"\nmailbox = "alex@fabrikam.com"\n'),
                              "expect.message[0].mailbox", "is not realm:address"),
    "mailbox with unknown realm": (scenario_text(MESSAGE + '[[expect.message]]\nid = "m"\n'
                                                 'mailbox = "gmail:alex@fabrikam.com"\n'),
                                   "expect.message[0].mailbox", "onprem | exo | internet"),
    "message before the start": (scenario_text(MESSAGE + 'at = "-00:05:00"\n'), "message[0].at", "negative"),
    "timeline change before the start": (scenario_text('[[change]]\ncmdlet = "Set-ReceiveConnector"\nat = "-1h"\n'
                                                       'Identity = "Default Frontend CMHYBD01"\nFqdn = "x"\n'),
                                         "change[0].at", "negative"),
    "negative duration": (scenario_text(head='duration = "-1d"\n'), "duration", "negative"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_scenario_names_file_key_and_problem(write_scenario, case):
    text, key, problem = BAD[case]
    err, path = load_error(write_scenario, text)
    assert err.where.startswith(path)
    if key is not None:
        assert key in err.where
    assert problem in err.problem
    assert "\n" not in str(err)  # one line


def test_bad_toml_says_where_in_the_file(write_scenario):
    err, _ = load_error(write_scenario, 'id = "t"\ntitle = \n')
    assert "line 2" in err.problem


def test_log_spec_server_name_is_taken_as_the_lab_spells_it(write_scenario):
    loaded = load_scenario(write_scenario(scenario_text('[[expect.log]]\nlog = "cmedge01/Edge/SmtpSend"\n'
                                                        'contains = "x"\n')))
    assert loaded.scenario.expect.log[0].log == "CMEDGE01/Edge/SmtpSend"  # the folder name on disk
