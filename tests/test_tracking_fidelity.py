"""Message tracking content against real rows (issue 10, docs/transport-fidelity.md §7): the SEND
rows' recipient-status is the next hop's RCPT reply, message-info carries Exchange's latency
breakdown, and a recipient given twice is delivered once."""

from __future__ import annotations

import re
from typing import Any

from conftest import run_text

from labsim.cli_views import read_tracking
from labsim.transport.tracking import latency_info

# A real intra-org SEND row's message-info (ELA sample, log-formats.md §4): one hop, local server
REAL_SEND_INFO = ("2024-01-07T00:00:05.535Z;LSRV=exchange.example.com:TOTAL-HUB=1.921|SMR=0.127(SMRDE=0.002|"
                  "SMRC=0.125(SMRCL=0.105|X-SMRCR=0.125))|CAT=1.698(CATOS=0.018)|QDM=0.010|SMSC=0.006(X-SMSDR=0.011)"
                  "|SMS=0.076(SMSMBXD=0.071)")
# what the lab writes must parse like it: arrival;(L)SRV=fqdn:TOTAL-PROC=s|NAME=s...
HOP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z;(L?SRV)=([^:]+):TOTAL-(HUB|EDGE|FE)=\d+\.\d{3}"
                 r"((\|[A-Z]+=\d+\.\d{3}(\([^)]*\)+)?)*)$")


def sends(rows: list[dict[str, Any]], server: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["Server"] == server and r["EventId"] in ("SEND", "SENDEXTERNAL")]


def test_the_pattern_accepts_a_real_row() -> None:
    assert HOP.match(REAL_SEND_INFO)


def test_latency_info_is_exchanges_format() -> None:
    from datetime import datetime, timezone
    t = datetime(2026, 5, 1, 6, 0, 0, 7000, tzinfo=timezone.utc)
    text = latency_info(t, "cmhybd01.cloudmonkeys.xyz", "HUB", 0.2171,
                        [("CAT", 0.0), ("QDE", 0.0004), ("SMS", 0.2141)], end_to_end=True)
    # components at or under 1 ms are left out (ComponentThresholdInterval); TOTAL always shows
    assert text == "2026-05-01T06:00:00.007Z;SRV=cmhybd01.cloudmonkeys.xyz:TOTAL-HUB=0.217|SMS=0.214"
    assert latency_info(t, "h", "EDGE", 0.0, [], end_to_end=False) == "2026-05-01T06:00:00.007Z;LSRV=h:TOTAL-EDGE=0.000"


def test_baseline_send_rows(baseline) -> None:
    rows = read_tracking(baseline.out)
    hub, edge = sends(rows, "CMHYBD01"), sends(rows, "CMEDGE01")
    assert hub and edge
    for r in hub + edge:
        m = HOP.match(r["MessageInfo"])
        assert m, r["MessageInfo"]
        # end to end (SRV) exactly when the message leaves the organisation; the process of the server
        assert (m.group(1) == "SRV") == (r["EventId"] == "SENDEXTERNAL")
        assert m.group(3) == ("EDGE" if r["Server"] == "CMEDGE01" else "HUB")
        assert "|SMS=" in m.group(4)
    # recipient-status is the next hop's reply to RCPT: Exchange/EOP say Recipient OK, fabrikam's MTA Ok
    by_to = {r["Recipients"]: r["RecipientStatus"] for r in edge if r["EventId"] == "SENDEXTERNAL"}
    assert by_to["alex@fabrikam.com"] == "250 2.1.5 Ok"
    assert all(r["RecipientStatus"] == "250 2.1.5 Recipient OK" for r in hub)
    # a Hub -> Mailbox SEND waited in a mailbox delivery queue (QDM), as in the real row
    assert any("|QDM=" in r["MessageInfo"] or r["MessageInfo"].endswith(":TOTAL-HUB=0.000")
               for r in hub if r["ConnectorId"] == "Intra-Organization SMTP Send Connector")


def test_a_duplicate_recipient_is_delivered_once(write_scenario, tmp_path) -> None:
    r = run_text(write_scenario, tmp_path, """
        [[message]]
        id = "dup"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["alex@fabrikam.com", "ALEX@fabrikam.com"]
        """, name="dup", duration="00:10:00")
    rows = read_tracking(r.out)
    out = [x for x in sends(rows, "CMEDGE01") if x["EventId"] == "SENDEXTERNAL"]
    assert [x["Recipients"] for x in out] == ["alex@fabrikam.com"]
    assert [x["Recipients"] for x in sends(rows, "CMHYBD01")] == ["alex@fabrikam.com"]
    assert r.message("dup")["fate"] == "delivered"
