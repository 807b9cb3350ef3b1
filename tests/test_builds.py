"""Exchange builds (docs/transport-fidelity.md §6): the `build` of a server, Set-LabServerBuild, the
per-build tables (rules.builds, logs.certificate_rows) and the rows a 2013/early-2016 server writes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import folder_rows, run_text

from labsim.errors import TopologyError
from labsim.logs.certificate_rows import (
    received_certificate_rows,
    sending_certificate_rows,
)
from labsim.logs.protocol_text import SENDING_CERTIFICATE
from labsim.rules.builds import BUILD_TRAITS, received_id, traits
from labsim.topology.changes import apply_change
from labsim.topology.defaults import default_lab
from labsim.topology.model import EXCHANGE_BUILD_VERSIONS

NB, NA = datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc)
SEED_004_SUBJECT = "CN=webmail.exchangeservergeek.com, OU=Exchange Server Geek, O=SuperTekBoy, L=Cincinnati, S=Ohio, C=US"
SEED_004_ISSUER = "CN=DigiCert SHA2 Secure Server CA, O=DigiCert Inc, C=US"


def test_every_server_is_2019_unless_told():
    lab = default_lab()
    assert {s.build for s in lab.organization.servers} == {"2019"}
    assert {s.version for s in lab.organization.servers} == {EXCHANGE_BUILD_VERSIONS["2019"]}


def test_set_lab_server_build_sets_the_build_and_its_version():
    lab = default_lab()
    apply_change(lab, "Set-LabServerBuild", {"Identity": "CMHYBD01", "Build": "2016-early"})
    srv = lab.organization.server("CMHYBD01")
    assert (srv.build, srv.version) == ("2016-early", EXCHANGE_BUILD_VERSIONS["2016-early"])
    apply_change(lab, "Set-LabServerBuild", {"Identity": "CMHYBD01", "Build": "2019"})
    assert lab.organization.server("CMHYBD01").version == "15.02.1544.004"
    apply_change(lab, "Set-LabServerBuild", {"Identity": "CMHYBD01", "Build": "2013", "Version": "15.00.1497.002"})
    assert lab.organization.server("CMHYBD01").version == "15.00.1497.002"


@pytest.mark.parametrize(("params", "problem"), [
    ({"Identity": "CMHYBD01", "Build": "2010"}, "is not one of 2013, 2016-early, 2016, 2019"),
    ({"Identity": "CMHYBD01"}, "-Build is required"),
    ({"Identity": "NOSUCH", "Build": "2013"}, "NOSUCH"),
    ({"Identity": "CMHYBD01", "Build": "2013", "Colour": "red"}, "unknown parameter -Colour"),
])
def test_set_lab_server_build_rejects_bad_input_by_name(params, problem):
    with pytest.raises(TopologyError) as info:
        apply_change(default_lab(), "Set-LabServerBuild", dict(params))
    assert problem in str(info.value)


def test_build_traits_follow_the_samples():
    assert traits("2013").multi_row_certificates and traits("2016-early").multi_row_certificates
    assert not traits("2016").multi_row_certificates and not traits("2019").multi_row_certificates
    assert traits("2019").frontend_smtputf8 and not traits("2016").frontend_smtputf8  # JPB vs QAZ
    assert set(BUILD_TRAITS) == set(EXCHANGE_BUILD_VERSIONS)
    assert received_id("15.01.2375.007") == "15.1.2375.7" and received_id("15.02.1544.004") == "15.2.1544.4"


def test_multi_row_certificate_lines_are_seed_004s():
    rows = sending_certificate_rows("2016-early", SEED_004_SUBJECT, SEED_004_ISSUER, "07A7C02B0DF809CAB510F58A270A7DE9",
                                    "CE3A3D779940A6855B53E2F69EF2DA4BC374D3EE", NB, NA,
                                    ["autodiscover.exchangeservergeek.com"])
    assert rows == [
        ("", "Sending certificate"),
        (SEED_004_SUBJECT, "Certificate subject"),
        (SEED_004_ISSUER, "Certificate issuer name"),
        ("07A7C02B0DF809CAB510F58A270A7DE9", "Certificate serial number"),
        ("CE3A3D779940A6855B53E2F69EF2DA4BC374D3EE", "Certificate thumbprint"),
        ("autodiscover.exchangeservergeek.com", "Certificate alternate names"),
    ]
    one = sending_certificate_rows("2019", "CN=x", "CN=y", "01", "AB", NB, NA, ["x", "y"])
    assert len(one) == 1 and one[0][1] == SENDING_CERTIFICATE and one[0][0].endswith(" x;y")
    assert received_certificate_rows("AB") == [("", "Received certificate"), ("AB", "Certificate thumbprint")]


def test_a_2013_server_writes_multi_row_certificates_and_its_build_in_received(write_scenario, tmp_path: Path):
    r = run_text(write_scenario, tmp_path, """
[[change]]
cmdlet = "Set-LabServerBuild"
Identity = "CMHYBD01"
Build = "2013"

[[message]]
id = "in"
at = "+00:01:00"
from = "ramki@cloudmonkeys.xyz"
to = ["raghu@cloudmonkeys.xyz"]
""", "b2013", duration="00:10:00")
    assert r.message("in")["fate"] == "delivered"
    rows = folder_rows(r.out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    contexts = [x[8] for x in rows if x[6] == "*"]
    assert "Certificate issuer name" in contexts and "Certificate thumbprint" in contexts
    assert not any(c.startswith("Sending certificate Subject") for c in contexts)
    eml = next((r.out / "mailboxes").rglob("*.eml")).read_text()
    assert " id 15.0.1497.10" in eml


def test_a_scenarios_builds_table_sets_the_world_and_is_not_a_fault(write_scenario):
    from conftest import scenario_text

    from labsim.errors import ScenarioError
    from labsim.scenario.loader import load_scenario

    loaded = load_scenario(write_scenario(scenario_text(head='[builds]\nCMHYBD01 = "2013"\n')))
    assert loaded.lab.organization.server("CMHYBD01").build == "2013"
    assert loaded.scenario.change == []
    with pytest.raises(ScenarioError) as info:
        load_scenario(write_scenario(scenario_text(head='[builds]\nCMHYBD01 = "2010"\n'), "bad.toml"))
    assert "builds.CMHYBD01" in str(info.value) and "2010" in str(info.value)
