"""Connections the way Exchange uses them: several messages per session, parallel sessions per queue,
one Front End proxy session per inbound session, and the settings that bound them."""

from __future__ import annotations

import filecmp
from datetime import datetime
from pathlib import Path

import pytest
from conftest import BASELINE_TOML, folder_rows, sessions

from labsim.engine.driver import run_scenario
from labsim.engine.queueing import connections_wanted
from labsim.errors import TopologyError
from labsim.scenario.loader import load_scenario
from labsim.topology.changes import apply_change
from labsim.topology.defaults import default_lab

EXO_USER = "ramki@cloudmonkeys.xyz"
ONPREM_USER = "raghu@cloudmonkeys.xyz"
INTERNET_USER = "alex@fabrikam.com"


# --- the rule: how many connections a queue opens ----------------------------------------------------
def test_a_queue_without_a_connection_opens_one_per_twenty_messages() -> None:
    assert connections_wanted(1, [], 20, 20, 1000) == 1
    assert connections_wanted(20, [], 20, 20, 1000) == 1
    assert connections_wanted(21, [], 20, 20, 1000) == 2
    assert connections_wanted(1000, [], 20, 20, 1000) == 20  # MaxPerDomainOutboundConnections


def test_open_connections_take_what_they_can_carry_first() -> None:
    assert connections_wanted(5, [1], 20, 20, 1000) == 0  # 19 more fit on the open one
    assert connections_wanted(25, [1], 20, 20, 1000) == 1
    assert connections_wanted(25, [20], 20, 20, 1000) == 2  # a full connection carries no more
    assert connections_wanted(100, [1] * 20, 20, 20, 1000) == 0  # the queue is at its limit


def test_the_server_wide_limit_caps_new_connections() -> None:
    assert connections_wanted(100, [], 20, 20, 3) == 3
    assert connections_wanted(100, [], 20, 20, 0) == 0


# --- the settings ---------------------------------------------------------------------------------------
def test_settings_default_to_exchange_values() -> None:
    lab = default_lab()
    assert {sc.smtp_max_messages_per_connection for sc in lab.organization.send_connectors} == {20}
    transport = lab.organization.server("CMHYBD01").transport
    assert (transport.max_per_domain_outbound_connections, transport.max_outbound_connections,
            transport.intra_org_connector_smtp_max_messages_per_connection) == (20, 1000, 20)


def test_cmdlets_set_and_check_the_connection_settings() -> None:
    lab = default_lab()
    name = lab.organization.send_connectors[0].name
    apply_change(lab, "Set-SendConnector", {"Identity": name, "SmtpMaxMessagesPerConnection": 3})
    assert lab.organization.send_connectors[0].smtp_max_messages_per_connection == 3
    apply_change(lab, "Set-TransportService", {"Identity": "CMHYBD01", "MaxPerDomainOutboundConnections": 2})
    assert lab.organization.server("CMHYBD01").transport.max_per_domain_outbound_connections == 2
    with pytest.raises(TopologyError):
        apply_change(lab, "Set-SendConnector", {"Identity": name, "SmtpMaxMessagesPerConnection": 0})
    with pytest.raises(TopologyError):
        apply_change(lab, "Set-TransportService", {"Identity": "CMHYBD01", "MaxOutboundConnections": 1})
    apply_change(lab, "Set-TransportService", {"Identity": "CMHYBD01", "MaxOutboundConnections": "Unlimited",
                                               "MaxPerDomainOutboundConnections": "unlimited"})
    transport = lab.organization.server("CMHYBD01").transport
    assert (transport.max_outbound_connections, transport.max_per_domain_outbound_connections) == (None, None)
    with pytest.raises(TopologyError):  # a limited total below an unlimited per-domain limit
        apply_change(lab, "Set-TransportService", {"Identity": "CMHYBD01", "MaxOutboundConnections": 50})


# --- in the logs ------------------------------------------------------------------------------------------
def _scenario(tmp_path: Path, name: str, messages: list[tuple[str, str]], changes: str = "") -> Path:
    """hybrid-baseline's lab and logging, with `messages` (sender, recipient) all at the same instant."""
    head = BASELINE_TOML.read_text(encoding="utf-8").split("[[message]]", 1)[0]
    head = head.replace('id = "hybrid-baseline"', f'id = "{name}"', 1)
    parts = [head, changes]
    for i, (sender, rcpt) in enumerate(messages):
        parts.append(f'[[message]]\nid = "m{i}"\nat = "+00:00:05"\nfrom = "{sender}"\nto = ["{rcpt}"]\n'
                     f'subject = "burst {i}"\n\n')
    path = tmp_path / f"{name}.toml"
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _run(path: Path, out: Path):
    result = run_scenario(load_scenario(path), out=out)
    assert result.summary["internal_errors"] == []
    return result


def _delivered(result) -> int:
    return sum(1 for m in result.summary["messages"] if m.get("fate") == "delivered")


def _messages_per_session(rows: list[list[str]]) -> list[int]:
    return [sum(1 for r in ss if r[6] == ">" and r[7].startswith("MAIL FROM")) for ss in sessions(rows).values()]


def test_a_burst_from_the_internet_uses_parallel_sessions_that_carry_several_messages(tmp_path: Path) -> None:
    path = _scenario(tmp_path, "burst-in", [(INTERNET_USER, ONPREM_USER)] * 25)
    result = _run(path, tmp_path / "out")
    assert _delivered(result) == 25
    by_session = sessions(folder_rows(tmp_path / "out", "CMEDGE01", "Edge", "SmtpReceive"))
    carried = {sid: sum(1 for r in ss if r[6] == "<" and r[7].startswith("MAIL FROM")) for sid, ss in by_session.items()}
    fabrikam = {sid: n for sid, n in carried.items() if n}
    # 25 messages, 20 per connection: two connections side by side (MaxPerDomainOutboundConnections 20),
    # both opened at the same virtual time
    assert len(fabrikam) == 2 and sum(fabrikam.values()) == 25 and max(fabrikam.values()) <= 20
    starts = {by_session[sid][0][0] for sid in fabrikam}
    assert len(starts) == 1


def test_messages_follow_each_other_with_mail_from_after_the_250(tmp_path: Path) -> None:
    changes = ('[[change]]\ncmdlet = "Set-SendConnector"\nIdentity = "Outbound to Office 365"\n'
               'ProtocolLoggingLevel = "Verbose"\nSmtpMaxMessagesPerConnection = 3\n\n')
    path = _scenario(tmp_path, "burst-up", [(ONPREM_USER, EXO_USER)] * 7, changes)
    result = _run(path, tmp_path / "out")
    assert _delivered(result) == 7
    rows = [r for r in folder_rows(tmp_path / "out", "CMHYBD01", "Hub", "SmtpSend")
            if r[1] == "Outbound to Office 365"]
    carried = _messages_per_session(rows)
    assert sum(carried) == 7 and max(carried) == 3  # SmtpMaxMessagesPerConnection
    for ss in sessions(rows).values():
        lines = [r[7] for r in ss if r[6] in (">", "<")]
        assert "RSET" not in lines
        for i, line in enumerate(lines):
            if line.startswith("MAIL FROM") and i > 0 and lines[i - 1].startswith("250 2.6.0"):
                break
        else:
            if sum(1 for x in lines if x.startswith("MAIL FROM")) > 1:
                pytest.fail(f"no MAIL FROM right after a 250 2.6.0 in {lines}")
        assert lines[-2] == "QUIT"


def test_the_front_end_proxies_an_inbound_session_through_one_proxy_session(tmp_path: Path) -> None:
    changes = ('[[change]]\ncmdlet = "Set-FrontendTransportService"\nIdentity = "CMHYBD01"\n'
               'IntraOrgConnectorProtocolLoggingLevel = "Verbose"\n\n')
    path = _scenario(tmp_path, "burst-down", [(EXO_USER, ONPREM_USER)] * 5, changes)
    result = _run(path, tmp_path / "out")
    assert _delivered(result) == 5
    out = tmp_path / "out"
    inbound = sessions(folder_rows(out, "CMHYBD01", "FrontEnd", "SmtpReceive"))
    carried_in = [sum(1 for r in ss if r[6] == "<" and r[7].startswith("MAIL FROM")) for ss in inbound.values()]
    assert carried_in == [5]  # EXO's connection carries the five messages
    proxy = [r for r in folder_rows(out, "CMHYBD01", "FrontEnd", "SmtpSend")
             if r[1] == "Inbound Proxy Internal Send Connector"]
    assert _messages_per_session(proxy) == [5]  # one proxy session for the inbound session
    rows = [r[7] for r in next(iter(sessions(proxy).values())) if r[6] == ">"]
    assert rows[-1] == "QUIT" and rows.count("QUIT") == 1


def test_same_seed_same_bytes_with_parallel_and_reused_sessions(tmp_path: Path) -> None:
    mixed = [(INTERNET_USER, ONPREM_USER), (EXO_USER, ONPREM_USER), (ONPREM_USER, EXO_USER),
             (ONPREM_USER, INTERNET_USER)] * 8
    path = _scenario(tmp_path, "burst-mixed", mixed)
    first, second = _run(path, tmp_path / "a"), _run(path, tmp_path / "b")
    assert _delivered(first) == _delivered(second) == len(mixed)
    cmp = filecmp.dircmp(tmp_path / "a", tmp_path / "b")

    def differing(c: filecmp.dircmp) -> list[str]:
        found = list(c.diff_files) + list(c.left_only) + list(c.right_only)
        for sub in c.subdirs.values():
            found += differing(sub)
        return found

    assert differing(cmp) == []
    for a in (tmp_path / "a").rglob("*"):
        if a.is_file():
            assert a.read_bytes() == (tmp_path / "b" / a.relative_to(tmp_path / "a")).read_bytes()


def test_queues_share_max_outbound_connections_and_all_mail_gets_through(tmp_path: Path) -> None:
    changes = ('[[change]]\ncmdlet = "Set-TransportService"\nIdentity = "CMHYBD01"\n'
               'MaxPerDomainOutboundConnections = 1\nMaxOutboundConnections = 1\n\n')
    path = _scenario(tmp_path, "one-connection", [(ONPREM_USER, EXO_USER), (ONPREM_USER, INTERNET_USER)] * 3, changes)
    result = _run(path, tmp_path / "out")
    assert _delivered(result) == 6
    spans = sorted((ss[0][0], ss[-1][0]) for ss in sessions(folder_rows(tmp_path / "out", "CMHYBD01", "Hub",
                                                                          "SmtpSend")).values())
    assert len(spans) >= 2  # the EXO queue and the Edge queue each got a connection, one after the other
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start  # never two connections open at once


def test_a_service_that_stops_ends_held_sessions_and_the_queue_retries(tmp_path: Path) -> None:
    burst = [(ONPREM_USER, INTERNET_USER)] * 45
    free = _run(_scenario(tmp_path, "free", burst), tmp_path / "free")
    spans = [(ss[0][0], ss[-1][0]) for ss in sessions(folder_rows(tmp_path / "free", "CMHYBD01", "Hub",
                                                                   "SmtpSend")).values()]
    assert _delivered(free) == 45 and len(spans) > 1
    start, end = _iso(min(s for s, _ in spans)), _iso(max(e for _, e in spans))
    stop_at = (start + (end - start) / 2 - _iso(free.summary["start"])).total_seconds()
    changes = (f'[[change]]\nat = "+00:00:{stop_at:06.3f}"\ncmdlet = "Stop-Service"\nName = "MSExchangeTransport"\n'
               'Server = "CMEDGE01"\n\n[[change]]\nat = "+00:20:00"\ncmdlet = "Start-Service"\n'
               'Name = "MSExchangeTransport"\nServer = "CMEDGE01"\n\n')
    result = _run(_scenario(tmp_path, "stopped", burst, changes), tmp_path / "stopped")
    assert _delivered(result) == 45  # nothing lost
    by_session = sessions(folder_rows(tmp_path / "stopped", "CMHYBD01", "Hub", "SmtpSend"))
    cut = [ss for ss in by_session.values() if ss[-1][6] == "-" and ss[-1][8] == "Remote" and
           any(r[7].startswith("MAIL FROM") for r in ss)]
    assert cut  # the held connections ended when the Edge's service stopped
    stopped_at = max(_iso(ss[-1][0]) for ss in cut)
    later = sorted(_iso(ss[0][0]) for ss in by_session.values() if _iso(ss[0][0]) > stopped_at)
    assert later and (later[0] - stopped_at).total_seconds() >= 60  # QueueGlitchRetryInterval, not at once


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
