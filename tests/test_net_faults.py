"""Network faults between virtual hosts, moved around: the evidence follows the fault.

Each test runs a small scenario over real loopback sockets (about 0.2 s each) and reads the logs
and summary it wrote. The scenarios/net-*.toml files show the seeds' versions; here the same
mechanisms are put between other host pairs to show nothing is tied to one path.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from conftest import Run, folder_rows, run_cli, run_text, sessions

from labsim.net.proxy import ResetLink

UNABLE = 'Primary target IP address responded with: "421 4.2.1 Unable to connect."'
DROPPED = '441 4.4.1 Error encountered while communicating with primary target IP address: ' \
          '"421 4.4.2 Connection dropped due to SocketError."'


def run(write_scenario, tmp_path: Path, body: str, name: str = "s", head: str = "") -> Run:
    return run_text(write_scenario, tmp_path, body, name, head=head)


def data(rows: list[list[str]]) -> list[str]:
    return [r[7] + " " + r[8] for r in rows]


def test_drop_between_edge_and_internet_gives_unable_to_connect_on_the_edge(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "New-LabNetworkRule"
        Name = "blackhole"
        Source = "CMEDGE01"
        Destination = "203.0.113.0/24"
        Ports = [25]
        Action = "Drop"

        [[message]]
        id = "out"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["alex@fabrikam.com"]
        """, head='duration = "00:20:00"\n')
    m = r.message("out")
    assert m["fate"] == "pending"
    assert m["pending"][0]["server"] == "CMEDGE01" and UNABLE in m["pending"][0]["last_error"]
    rows = folder_rows(r.out, "CMEDGE01", "Edge", "SmtpSend")
    fails = [x for x in data(rows) if "Winsock error code: 10060" in x]
    assert fails and all("203.0.113.25:25" in x for x in fails)
    # the connect timeout costs virtual time: 21 s between 'attempting to connect' and the failure
    first = next(s for s in sessions(rows).values() if any("10060" in x[8] for x in s))
    assert first[1][8] == "attempting to connect" and first[1][0][17:19] == "00" and first[2][0][17:19] == "21"


def test_refuse_gives_winsock_10061_and_the_socket_variant_of_the_failover_text(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "Set-TransportService"
        Identity = "CMHYBD01"
        IntraOrgConnectorProtocolLoggingLevel = "Verbose"

        [[change]]
        cmdlet = "New-LabNetworkRule"
        Name = "reject"
        Source = "CMHYBD01"
        Destination = "CMEDGE01"
        Ports = [25]
        Action = "Refuse"

        [[message]]
        id = "out"
        at = "+00:01:00"
        from = "priya@cloudmonkeys.xyz"
        to = ["alex@fabrikam.com"]
        """, head='duration = "00:05:00"\n')
    last_error = r.message("out")["pending"][0]["last_error"]
    assert last_error.startswith("441 4.4.1 Error encountered while communicating with primary target IP address: "
                                 '"Failed to connect. Winsock error code: 10061, Win32 error code: 10061."')
    assert any("No connection could be made because the target machine actively refused it 192.168.1.25:25." in x
               for x in data(folder_rows(r.out, "CMHYBD01", "Hub", "SmtpSend")))


def test_exo_refused_by_another_target_is_4_4_316(write_scenario, tmp_path):
    # EXO's connector delivery to the Edge's published address (a second outbound connector)
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "Set-OutboundConnector"
        Identity = "Outbound to 8f2c6a9e-0d1b-4c55-9a57-3b1e2a7c4d10"
        SmartHosts = ["smtp.cloudmonkeys.xyz"]
        TlsDomain = "mail.cloudmonkeys.xyz"

        [[change]]
        cmdlet = "New-LabNetworkRule"
        Name = "edge firewall"
        Source = "EXO-OUT"
        Destination = "27.7.57.242"
        Action = "Refuse"

        [[message]]
        id = "in"
        at = "+00:01:00"
        from = "ramki@cloudmonkeys.xyz"
        to = ["priya@cloudmonkeys.xyz"]
        """, head='duration = "00:05:00"\n')
    assert r.message("in")["pending"][0]["last_error"].startswith("450 4.4.316 Connection refused")


def test_reset_on_another_pair_drops_the_session_on_both_sides(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "New-LabNetworkRule"
        Name = "flaky"
        Source = "FABRIKAM-MX"
        Destination = "CMEDGE01"
        Action = "Reset"
        ResetAfterBytes = 40000

        [[message]]
        id = "big"
        at = "+00:01:00"
        from = "alex@fabrikam.com"
        to = ["raghu@cloudmonkeys.xyz"]
        size = 120000
        """, head='duration = "00:03:00"\n')
    assert r.message("big")["fate"] == "pending"
    rows = folder_rows(r.out, "CMEDGE01", "Edge", "SmtpReceive")
    ends = [s[-1] for s in sessions(rows).values()]
    assert ends and all(e[6] == "-" and e[8] == "Remote(ConnectionReset)" for e in ends)
    assert all(any(x[7].startswith("354 ") for x in s) for s in sessions(rows).values())  # cut during DATA


def test_latency_and_bandwidth_show_in_virtual_timestamps(write_scenario, tmp_path):
    def receive_gap(extra: str) -> tuple[float, str]:
        r = run(write_scenario, tmp_path, extra + """
            [[message]]
            id = "in"
            at = "+00:01:00"
            from = "ramki@cloudmonkeys.xyz"
            to = ["raghu@cloudmonkeys.xyz"]
            size = 100000
            """, name=f"lat{len(extra)}")
        rows = folder_rows(r.out, "CMHYBD01", "FrontEnd", "SmtpReceive")
        s = next(iter(sessions(rows).values()))
        ehlo = [x for x in s if x[6] == "<" and x[7].startswith("EHLO")][0]
        banner = s[1]
        t = lambda x: float(x[0][14:16]) * 60 + float(x[0][17:23])  # noqa: E731
        # EXO sends the message as one BDAT chunk (the Front End offers CHUNKING): the body's transfer
        # lies between the reply before it (RCPT's 250) and the queued reply
        body_at = next(i for i, x in enumerate(s) if x[6] == "<" and x[7].startswith(("BDAT ", "DATA")))
        go_ahead = [x for x in s[:body_at] if x[6] == ">"][-1]
        queued = [x for x in s if "Queued mail for delivery" in x[7]][0]
        return t(ehlo) - t(banner), t(queued) - t(go_ahead)

    base_gap, base_body = receive_gap("")
    slow_gap, slow_body = receive_gap("""
        [[change]]
        cmdlet = "New-LabNetworkRule"
        Name = "slow"
        Source = "EXO-OUT"
        Destination = "CMHYBD01"
        Action = "Latency"
        LatencyMs = 200

        [[change]]
        cmdlet = "New-LabNetworkRule"
        Name = "thin"
        Source = "EXO-OUT"
        Destination = "CMHYBD01"
        Action = "Bandwidth"
        BandwidthKbps = 512
        """)
    assert slow_gap - base_gap == pytest.approx(0.4, abs=0.002)  # one round trip of 2 x 200 ms more
    # the 100 KB body needs about 1.6 s at 512 kbit/s (64 KB/s) instead of milliseconds, plus a round trip
    assert base_body < 0.1 and 1.6 < slow_body - base_body < 2.4


def test_slow_close_delays_the_senders_disconnect_row(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "New-LabNetworkRule"
        Name = "slow close"
        Source = "CMHYBD01"
        Destination = "EXO"
        Action = "SlowClose"
        SlowCloseMs = 3000

        [[message]]
        id = "out"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["ramki@cloudmonkeys.xyz"]
        """)
    rows = [x for x in folder_rows(r.out, "CMHYBD01", "Hub", "SmtpSend") if x[1] == "Outbound to Office 365"]
    quit_reply, disconnect = rows[-2], rows[-1]
    assert quit_reply[7].startswith("221") and disconnect[6] == "-"
    assert float(disconnect[0][17:23]) - float(quit_reply[0][17:23]) == pytest.approx(3.0, abs=0.002)


def test_load_balancer_snat_moves_sessions_to_the_default_connector_and_transparent_mode_does_not(
        write_scenario, tmp_path):
    common = """
        [[change]]
        cmdlet = "New-ReceiveConnector"
        Server = "CMHYBD01"
        Name = "From EOP"
        TransportRole = "FrontendTransport"
        RemoteIPRanges = ["40.92.0.0/15"]
        Fqdn = "mail.cloudmonkeys.xyz"
        AuthMechanism = ["Tls"]
        PermissionGroups = ["AnonymousUsers", "ExchangeServers"]
        TlsCertificateName = '<I>CN=labsim Public Issuing CA 1, O=labsim Public Trust, C=US<S>CN=mail.cloudmonkeys.xyz'
        TlsDomainCapabilities = ["mail.protection.outlook.com:AcceptCloudServicesMail"]
        ProtocolLoggingLevel = "Verbose"

        [[change]]
        cmdlet = "Set-LabNatRule"
        PublicIp = "27.7.57.241"
        Server = "LB01"

        [[message]]
        id = "in"
        at = "+00:01:00"
        from = "ramki@cloudmonkeys.xyz"
        to = ["raghu@cloudmonkeys.xyz"]
        """
    lb = """
        [[change]]
        cmdlet = "New-LabLoadBalancer"
        Name = "LB01"
        Vip = "192.168.1.60"
        SnatIp = "192.168.1.61"
        Backends = ["CMHYBD01"]
        PreserveClientIp = {keep}
        """
    snat = run(write_scenario, tmp_path, lb.format(keep="false") + common, name="snat")
    rows = folder_rows(snat.out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    assert {r[1] for r in rows} == {"CMHYBD01\\Default Frontend CMHYBD01"}
    assert {r[5].split(":")[0] for r in rows} == {"192.168.1.61"}  # the balancer's SNAT address
    keep = run(write_scenario, tmp_path, lb.format(keep="true") + common, name="keep")
    rows = folder_rows(keep.out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    assert {r[1] for r in rows} == {"CMHYBD01\\From EOP"}
    assert {r[5].split(":")[0] for r in rows} == {"40.93.131.26"}
    assert keep.message("in")["fate"] == "delivered"


def test_reset_link_lets_the_budget_through_then_resets_both_sides():
    async def scenario() -> tuple[bytes, str, str]:
        got = bytearray()
        server_saw: list[str] = []

        async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    chunk = await reader.read(1024)
                    if not chunk:
                        server_saw.append("eof")
                        return
                    got.extend(chunk)
                    writer.write(b"ok\n")
                    await writer.drain()
            except ConnectionResetError:
                server_saw.append("reset")

        from labsim.net.vnet import start_tcp_server
        srv = await start_tcp_server(server, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        sock, upstream_local = await ResetLink(10).connect(("127.0.0.1", port), "127.0.0.1")
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"12345")
        await writer.drain()
        assert await reader.readline() == b"ok\n"
        writer.write(b"67890")
        await writer.drain()
        assert await reader.readline() == b"ok\n"
        writer.write(b"X")  # the 11th byte: not forwarded, both sides reset
        await writer.drain()
        client = "open"
        try:
            if await asyncio.wait_for(reader.read(10), 2.0) == b"":
                client = "eof"
        except ConnectionResetError:
            client = "reset"
        await asyncio.sleep(0.05)
        srv.close()
        assert isinstance(upstream_local, tuple) and upstream_local[0] == "127.0.0.1"
        return bytes(got), client, server_saw[0] if server_saw else "nothing"

    got, client, server = asyncio.run(scenario())
    assert got == b"1234567890"
    assert client == "reset" and server == "reset"


def test_reset_link_passes_a_refused_upstream_to_the_caller():
    async def scenario() -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        with pytest.raises(ConnectionRefusedError):
            await ResetLink(10).connect(("127.0.0.1", port), "127.0.0.1")

    asyncio.run(scenario())


def test_net_scenarios_hold_their_expectations(tmp_path):
    for sid in ("net-port25-blocked-to-eop", "net-exo-to-onprem-refused", "net-reset-mid-session",
                "net-slow-link", "net-lb-vip-default-connector"):
        rc, stdout, _ = run_cli(["run", sid, "--out", str(tmp_path / sid)])
        assert rc == 0, stdout
