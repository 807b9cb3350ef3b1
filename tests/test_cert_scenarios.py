"""The certificate scenarios: each runs clean, its evidence is the seeds' own words, the fault moves
with the world (another server, another connector, the other side) and a repair makes mail flow.

Nothing here names a scenario to the lab: every fault is a change of state (a key, a store, a
trust list, a proxy, a connector setting), and the tests check that the evidence follows it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    FOUR_DIRECTIONS,
    SCENARIOS,
    SEEDS,
    exlog_check,
    folder_rows,
    scenario_text,
)

from labsim.engine.driver import RunResult, run_loaded
from labsim.engine.eventlog import event_log_folder, read_text_log
from labsim.engine.validate_connectors import run_validation
from labsim.pki.authority import LabPki
from labsim.scenario.loader import LoadedScenario, load_scenario
from labsim.scenario.model import Change, MessageExpectation
from labsim.topology.defaults import HYBRID_CERT_NAME

pytestmark = pytest.mark.integration

CATALOG = sorted(p.stem for p in SCENARIOS.glob("cert-*.toml"))
GUID = "8f2c6a9e-0d1b-4c55-9a57-3b1e2a7c4d10"
EDGE_DEFAULT = "CMEDGE01\\Default internal receive connector CMEDGE01"
FRONTEND = "CMHYBD01\\Default Frontend CMHYBD01"
WALL: dict[str, float] = {}
OUT: dict[str, Path] = {}  # the catalog runs, reused by the log-checker test


def seed(name: str) -> str:
    return next(SEEDS.glob(f"{name}_*.txt")).read_text(encoding="utf-8")


def seed_000_event_text() -> str:
    line = next(ln for ln in seed("000").splitlines() if ln.startswith("Failed to confirm domain capabilities"))
    return line.replace("‘", "'").replace("’", "'")  # the blog's typographic quotes


async def run(loaded: LoadedScenario, out: Path) -> RunResult:
    t0 = time.perf_counter()
    result = await run_loaded(loaded, out=out)
    WALL[loaded.scenario.id] = time.perf_counter() - t0
    return result


def events(out: Path, server: str, event_id: int | None = None) -> list[dict[str, str]]:
    return [e for e in read_text_log(event_log_folder(out, server) / "Application.txt")
            if event_id is None or e["Event ID"] == str(event_id)]


def texts(out: Path, server: str, service: str, kind: str) -> list[str]:
    return [" | ".join(r) for r in folder_rows(out, server, service, kind)]


def has(rows: list[str], needle: str) -> bool:
    return any(needle in r for r in rows)


def fate(result: RunResult, mid: str) -> dict:
    return next(m for m in result.summary["messages"] if m["id"] == mid)


def reasons(result: RunResult, mid: str) -> list[str]:
    m = fate(result, mid)
    return [f["reason"] for f in m["failed"]] + [p["last_error"] for p in m["pending"]]


# --- the catalog ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sid", CATALOG)
async def test_catalog_scenario_holds(sid, tmp_path):
    result = await run(load_scenario(sid), tmp_path / "out")
    OUT[sid] = tmp_path / "out"
    failed = [f"{o.what}: {o.detail}" for o in result.outcomes if not o.ok]
    assert result.ok, failed
    assert WALL[sid] < 60.0, f"{sid} took {WALL[sid]:.2f} s of wall time"  # a hang guard, not a speed test (make bench)


@pytest.mark.parametrize("sid", CATALOG)
async def test_catalog_scenario_logs_are_exchange_exact(sid, tmp_path):
    checker = exlog_check()
    out = OUT.get(sid)
    if out is None or not out.is_dir():  # run alone (-k): make the run here
        out = tmp_path / "out"
        await run(load_scenario(sid), out)
    check = subprocess.run([sys.executable, str(checker), str(out)], capture_output=True, text=True)
    assert "errors=0" in check.stdout, check.stdout + check.stderr


async def test_seed_000_event_11022_verbatim(tmp_path):
    out = tmp_path / "out"
    await run(load_scenario("cert-crl-offline"), out)
    found = events(out, "CMEDGE01", 11022)
    assert found and all(e["Source"] == "MSExchangeTransport" for e in found)
    assert found[0]["Description"] == seed_000_event_text()
    assert "<Data>RevocationOffline</Data>" in (event_log_folder(out, "CMEDGE01") / "Application.xml").read_text()


async def test_seed_002_no_credentials_and_connection_timed_out(tmp_path):
    out = tmp_path / "out"
    result = await run(load_scenario("cert-tlscertname-no-private-key"), out)
    send = texts(out, "CMHYBD01", "Hub", "SmtpSend")
    i = next(i for i, r in enumerate(send) if "TLS negotiation failed with error NoCredentials" in r)
    # seed 002's server (the last Exchange 2013 build) writes the certificate in six rows, as the KB quotes
    assert [r.rsplit(" | ", 1)[-1] for r in send[i - 6:i]] == [
        "Sending certificate", "Certificate subject", "Certificate issuer name", "Certificate serial number",
        "Certificate thumbprint", "Certificate alternate names"]
    assert "220 2.0.0 SMTP server ready" in send[i - 7]
    assert any('"421 4.4.1 Connection timed out." Attempted failover to alternate host' in r
               for r in reasons(result, "onprem-to-exo"))
    assert "421 4.4.1" in seed("002") and "NoCredentials" in seed("002")


async def test_seed_004_the_renewed_copy_is_the_one_sent(tmp_path):
    loaded = load_scenario("cert-renewed-duplicate")
    out = tmp_path / "out"
    await run(loaded, out)
    pki = LabPki(loaded.lab, loaded.scenario.seed)
    good, renewed = pki.issued("mail-cloudmonkeys").thumbprint, pki.issued("mail-cloudmonkeys-renewed").thumbprint
    send = texts(out, "CMHYBD01", "Hub", "SmtpSend")
    sent = [r for r in send if r.endswith(" | Certificate thumbprint")]
    assert sent and all(renewed in r and good not in r for r in sent)
    assert not any(good in r for r in send)
    assert "TLS negotiation failed with error NoCredentials" in seed("004")


async def test_seed_004_queue_text_is_its_builds(tmp_path):
    """Seed 004's 2016 server words its own failed TLS negotiation as `421 4.2.1 Unable to connect`;
    the same world on a 2019 server gives `421 4.4.1 Connection timed out` (the build decides)."""
    quoted = ('451 4.4.0 Primary target IP address responded with: "421 4.2.1 Unable to connect." Attempted '
              "failover to alternate host, but that did not succeed. Either there are no alternate hosts, or ")
    assert quoted in seed("004")
    loaded = load_scenario("cert-renewed-duplicate")
    result = await run(loaded, tmp_path / "out")
    assert any(r.startswith(quoted) for r in reasons(result, "onprem-to-exo"))
    loaded.lab.organization.server("CMHYBD01").build = "2019"
    result = await run(loaded, tmp_path / "out2019")
    assert any('"421 4.4.1 Connection timed out."' in r for r in reasons(result, "onprem-to-exo"))
    assert not any("Unable to connect" in r for r in reasons(result, "onprem-to-exo"))


async def test_seed_004_untrusted_root_strings(tmp_path):
    out = tmp_path / "out"
    result = await run(load_scenario("cert-untrusted-root"), out)
    text = "Outbound TLS authentication failed for auth level DomainValidation with error UntrustedRoot"
    assert text in seed("004") and has(texts(out, "CMHYBD01", "Hub", "SmtpSend"), text)
    assert [e["Source"] for e in events(out, "CMHYBD01", 2022)] and events(out, "CMHYBD01", 11022)
    result = await run(load_scenario("cert-missing-intermediate"), tmp_path / "out2")
    quoted = "450 4.4.317 Cannot connect to remote server [Message=UntrustedRoot]"
    assert quoted in seed("004") and quoted in reasons(result, "exo-to-onprem")


# --- the fault moves with the world -----------------------------------------------------------------

MESSAGES = FOUR_DIRECTIONS
VIA_EXO = f"""
[[change]]
cmdlet = "New-SendConnector"
Name = "Outbound via Office 365"
AddressSpaces = ["smtp:fabrikam.com;1"]
SmartHosts = ["cloudmonkeys-xyz.mail.protection.outlook.com"]
RequireTLS = true
TlsAuthLevel = "DomainValidation"
TlsDomain = "mail.protection.outlook.com"
TlsCertificateName = "{HYBRID_CERT_NAME}"
Fqdn = "mail.cloudmonkeys.xyz"
SourceTransportServers = ["CMHYBD01"]
CloudServicesMailEnabled = true
ProtocolLoggingLevel = "Verbose"
"""
EXO_VIA_EDGE = f"""
[[change]]
cmdlet = "Set-OutboundConnector"
Identity = "Outbound to {GUID}"
SmartHosts = ["smtp.cloudmonkeys.xyz"]
TlsDomain = "smtp.cloudmonkeys.xyz"

[[change]]
cmdlet = "Set-ReceiveConnector"
Identity = '{EDGE_DEFAULT}'
Fqdn = "smtp.cloudmonkeys.xyz"
"""


async def run_text(write_scenario, tmp_path: Path, body: str, name: str) -> tuple[RunResult, Path]:
    path = write_scenario(scenario_text(body + MESSAGES, sid=name, head='duration = "01:00:00"\n'), f"{name}.toml")
    out = tmp_path / name
    return await run(load_scenario(path), out), out


async def test_crl_offline_moves_to_the_mailbox_server(write_scenario, tmp_path):
    """The same dead proxy on CMHYBD01: 11022 now comes from its Front End, for the HCW capability, and
    its own DomainValidation to EOP fails too; the Edge is clean."""
    result, out = await run_text(write_scenario, tmp_path, """
[[change]]
cmdlet = "Set-LabWinHttpProxy"
Server = "CMHYBD01"
ProxyServer = "192.168.1.50:8080"
""", "crl-on-cmhybd01")
    ev = events(out, "CMHYBD01", 11022)
    assert ev and ev[0]["Source"] == "MSExchangeFrontEndTransport"
    assert ("'mail.protection.outlook.com:AcceptCloudServicesMail' on connector 'Default Frontend CMHYBD01'"
            in ev[0]["Description"] and "'RevocationOffline'" in ev[0]["Description"])
    assert not events(out, "CMEDGE01", 11022)
    assert has(texts(out, "CMHYBD01", "Hub", "SmtpSend"),
               "Outbound TLS authentication failed for auth level DomainValidation with error RevocationOffline")
    assert fate(result, "exo-to-onprem")["fate"] == fate(result, "onprem-to-exo")["fate"] == "pending"
    assert fate(result, "internet-to-onprem")["fate"] == "delivered"


async def test_missing_key_moves_to_the_edge_and_its_internet_connector(write_scenario, tmp_path):
    result, out = await run_text(write_scenario, tmp_path, f"""
[[change]]
cmdlet = "Set-LabServerCertificate"
Server = "CMEDGE01"
Certificate = "mail-cloudmonkeys"
HasPrivateKey = false

[[change]]
cmdlet = "Set-SendConnector"
Identity = "EdgeSync - Default-First-Site-Name to Internet"
TlsCertificateName = "{HYBRID_CERT_NAME}"
""", "nokey-on-edge")
    assert has(texts(out, "CMEDGE01", "Edge", "SmtpSend"), "TLS negotiation failed with error NoCredentials")
    assert not has(texts(out, "CMHYBD01", "Hub", "SmtpSend"), "NoCredentials")
    assert fate(result, "onprem-to-internet")["fate"] == "pending"  # opportunistic TLS, yet no fallback
    assert any('"421 4.4.1 Connection timed out."' in r for r in reasons(result, "onprem-to-internet"))
    assert fate(result, "onprem-to-exo")["fate"] == fate(result, "exo-to-onprem")["fate"] == "delivered"


@pytest.mark.parametrize("server, broken", [("CMEDGE01", True), ("CMHYBD01", False)])
async def test_missing_intermediate_follows_the_server_eop_talks_to(write_scenario, tmp_path, server, broken):
    result, out = await run_text(write_scenario, tmp_path, EXO_VIA_EDGE + f"""
[[change]]
cmdlet = "Remove-LabIntermediateCertificate"
Server = "{server}"
CertificateAuthority = "public-issuing"
""", f"inter-{server}")
    got = fate(result, "exo-to-onprem")
    if broken:
        assert got["fate"] == "pending"
        assert any("[Message=UntrustedRoot]" in r for r in reasons(result, "exo-to-onprem"))
    else:
        assert got["fate"] == "delivered"


async def test_subject_mismatch_moves_to_the_mailbox_server(write_scenario, tmp_path):
    result, out = await run_text(write_scenario, tmp_path, f"""
[[change]]
cmdlet = "New-LabCertificate"
Name = "cmhybd01-fqdn"
Subject = "CN=cmhybd01.cloudmonkeys.xyz"
Sans = ["cmhybd01.cloudmonkeys.xyz"]
Issuer = "public-issuing"
NotBefore = "-10d"

[[change]]
cmdlet = "Import-ExchangeCertificate"
Server = "CMHYBD01"
Certificate = "cmhybd01-fqdn"

[[change]]
cmdlet = "Set-ReceiveConnector"
Identity = '{FRONTEND}'
TlsCertificateName = ""
""", "mismatch-on-cmhybd01")
    assert any("[Message=SubjectMismatch Expected Subject: mail.cloudmonkeys.xyz. Presented Subject: "
               "CN=cmhybd01.cloudmonkeys.xyz." in r for r in reasons(result, "exo-to-onprem"))
    assert fate(result, "internet-to-onprem")["fate"] == "delivered"


async def test_wrong_tls_domain_moves_to_another_connector(write_scenario, tmp_path):
    result, out = await run_text(write_scenario, tmp_path, VIA_EXO.replace(
        'TlsDomain = "mail.protection.outlook.com"', 'TlsDomain = "cloudmonkeys.xyz"'), "tlsdomain-other-connector")
    rows = folder_rows(out, "CMHYBD01", "Hub", "SmtpSend")
    bad = "Outbound TLS authentication failed for auth level DomainValidation with error SubjectMismatch"
    assert any(r[1] == "Outbound via Office 365" and bad in r[8] for r in rows)
    assert not any(r[1] == "Outbound to Office 365" and bad in r[8] for r in rows)
    assert fate(result, "onprem-to-exo")["fate"] == "delivered"
    assert fate(result, "onprem-to-internet")["fate"] == "pending"
    assert [e["Event ID"] for e in events(out, "CMHYBD01", 2022)]


@pytest.mark.parametrize("change, status", [
    ('cmdlet = "Revoke-LabCertificate"\nIdentity = "eop"', "Revoked"),
    ('cmdlet = "Set-LabCertificate"\nIdentity = "eop"\nNotBefore = "-400d"\nNotAfter = "-1d"', "CertificateExpired"),
])
async def test_revoked_or_expired_moves_to_exchange_onlines_certificate(write_scenario, tmp_path, change, status):
    """The same fault on the other side's certificate: now on-prem's checks report it."""
    result, out = await run_text(write_scenario, tmp_path, f"[[change]]\n{change}\n", f"eop-{status}")
    assert has(texts(out, "CMHYBD01", "Hub", "SmtpSend"),
               f"Outbound TLS authentication failed for auth level DomainValidation with error {status}")
    assert has(texts(out, "CMHYBD01", "FrontEnd", "SmtpReceive"), f"Client certificate chain validation status: '{status}'")
    assert any(f"status '{status}'" in e["Description"] for e in events(out, "CMHYBD01", 11022))
    assert fate(result, "onprem-to-internet")["fate"] == "delivered"


async def test_fqdn_without_certificate_moves_to_the_edge(write_scenario, tmp_path):
    result, out = await run_text(write_scenario, tmp_path, f"""
[[change]]
cmdlet = "Set-ReceiveConnector"
Identity = '{EDGE_DEFAULT}'
Fqdn = "nocert.cloudmonkeys.xyz"
""", "fqdn-on-edge")
    ev = events(out, "CMEDGE01", 12014)
    assert ev and ev[0]["Source"] == "MSExchangeTransport"
    assert ("domain name nocert.cloudmonkeys.xyz" in ev[0]["Description"]
            and "connector Default internal receive connector CMEDGE01" in ev[0]["Description"])
    assert not events(out, "CMHYBD01", 12014)
    assert fate(result, "internet-to-onprem")["fate"] == "delivered"  # fabrikam's MTA sends in the clear


async def test_attribution_fails_when_the_send_connector_presents_another_certificate(write_scenario, tmp_path):
    result, out = await run_text(write_scenario, tmp_path, VIA_EXO.replace(
        HYBRID_CERT_NAME, "<I>CN=CMHYBD01<S>CN=CMHYBD01"), "attribution-other-cert")
    assert any("550 5.7.64 TenantAttribution; Relay Access Denied" in r for r in reasons(result, "onprem-to-internet"))
    assert fate(result, "onprem-to-exo")["fate"] == "delivered"


async def test_crl_server_down_fails_both_sides(write_scenario, tmp_path):
    """The CA's distribution point itself is down: every validator gets RevocationOffline."""
    result, out = await run_text(write_scenario, tmp_path, """
[[change]]
cmdlet = "Set-LabCrlServer"
Mode = "down"
""", "crl-down")
    assert "450 4.4.317 Cannot connect to remote server [Message=RevocationOffline]" in reasons(result, "exo-to-onprem")
    assert has(texts(out, "CMHYBD01", "Hub", "SmtpSend"),
               "Outbound TLS authentication failed for auth level DomainValidation with error RevocationOffline")
    assert fate(result, "internet-to-onprem")["fate"] == "delivered"  # no revocation check on that path


async def test_crl_server_back_up_on_the_timeline(write_scenario, tmp_path):
    """Set-LabCrlServer as a timeline change reaches the running CRL server: the next retries validate."""
    result, out = await run_text(write_scenario, tmp_path, """
[[change]]
cmdlet = "Set-LabCrlServer"
Mode = "down"

[[change]]
cmdlet = "Set-LabCrlServer"
Mode = "up"
at = "+00:20:00"

[[change]]
cmdlet = "Retry-Queue"
Filter = "Status -eq 'Retry'"
at = "+00:20:01"
""", "crl-down-then-up")
    for mid in ("exo-to-onprem", "onprem-to-exo"):
        hop = next(h for h in fate(result, mid)["hops"] if h["event"] == "DELIVER")
        assert hop["time"] >= "2026-05-01T06:20:00"


async def test_certificate_close_to_expiry_raises_12018_once(write_scenario, tmp_path):
    result, out = await run_text(write_scenario, tmp_path, """
[[change]]
cmdlet = "Set-LabCertificate"
Identity = "mail-cloudmonkeys"
NotAfter = "+10d"
""", "expires-soon")
    ev = events(out, "CMHYBD01", 12018)
    assert len(ev) == 1 and ev[0]["Source"] == "MSExchangeFrontEndTransport"
    assert ev[0]["Description"].startswith("The STARTTLS certificate will expire soon: subject: CN=mail.cloudmonkeys.xyz")
    assert "hours remaining: 239." in ev[0]["Description"]  # +10 days from the start, seen 5 s later
    assert fate(result, "exo-to-onprem")["fate"] == "delivered"


async def test_certificate_not_enabled_for_smtp_is_unknown_credentials(write_scenario, tmp_path):
    """KB 4051498: the certificate TlsCertificateName names is not enabled for SMTP."""
    result, out = await run_text(write_scenario, tmp_path, """
[[change]]
cmdlet = "Enable-ExchangeCertificate"
Server = "CMHYBD01"
Certificate = "mail-cloudmonkeys"
Services = "None"
""", "unknown-credentials")
    assert has(texts(out, "CMHYBD01", "Hub", "SmtpSend"), "TLS negotiation failed with error UnknownCredentials")
    assert has(texts(out, "CMHYBD01", "FrontEnd", "SmtpReceive"), "TLS negotiation failed with error UnknownCredentials")
    assert fate(result, "onprem-to-exo")["fate"] == "pending"


# --- repairs: the fix at +N and mail flows --------------------------------------------------------

RETRY = ("Retry-Queue", {"Filter": "Status -eq 'Retry'"})
REPAIRS: dict[str, tuple[list[tuple[str, dict]], list[str]]] = {
    "cert-crl-offline": ([("Set-LabWinHttpProxy", {"Server": "CMEDGE01", "ProxyServer": ""})], ["exo-to-onprem"]),
    "cert-tlscertname-no-private-key": (
        [("Set-LabServerCertificate", {"Server": "CMHYBD01", "Certificate": "mail-cloudmonkeys", "HasPrivateKey": True}),
         RETRY], ["onprem-to-exo", "exo-to-onprem"]),
    "cert-renewed-duplicate": (
        [("Remove-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "mail-cloudmonkeys-renewed"}), RETRY],
        ["onprem-to-exo"]),
    "cert-missing-intermediate": (
        [("Import-LabIntermediateCertificate", {"Server": "CMHYBD01", "CertificateAuthority": "public-issuing"})],
        ["exo-to-onprem"]),
    "cert-untrusted-root": (
        [("Set-LabCertificateAuthority", {"Identity": "public-root", "TrustedBy": ["onprem", "exo", "internet"]}),
         RETRY], ["onprem-to-exo", "exo-to-onprem"]),
    "cert-revoked": (
        [("Copy-LabCertificate", {"Identity": "mail-cloudmonkeys", "Name": "mail-reissued", "NotBefore": "-1d",
                                  "NotAfter": "+395d"}),
         ("Import-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "mail-reissued"}),
         ("Remove-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "mail-cloudmonkeys"})],
        ["exo-to-onprem"]),
    "cert-expired": (
        [("Copy-LabCertificate", {"Identity": "mail-cloudmonkeys", "Name": "mail-renewed", "NotBefore": "-1d",
                                  "NotAfter": "+365d"}),
         ("Import-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "mail-renewed", "Services": ["SMTP", "IIS"]}),
         RETRY], ["onprem-to-exo", "exo-to-onprem"]),
    "cert-edge-subject-mismatch": (
        [("Remove-ExchangeCertificate", {"Server": "CMEDGE01", "Certificate": "cmedge01-fqdn"}),
         ("Set-ReceiveConnector", {"Identity": EDGE_DEFAULT, "Fqdn": "mail.cloudmonkeys.xyz"})], ["exo-to-onprem"]),
    "cert-wrong-tlsdomain": (
        [("Set-SendConnector", {"Identity": "Outbound to Office 365", "TlsDomain": "mail.protection.outlook.com"}),
         RETRY], ["onprem-to-exo"]),
    "cert-fqdn-no-certificate": (
        [("Set-ReceiveConnector", {"Identity": FRONTEND, "Fqdn": "mail.cloudmonkeys.xyz"})], ["exo-to-onprem"]),
    "cert-exo-attribution": (
        [("Set-InboundConnector", {"Identity": f"Inbound from {GUID}", "TlsSenderCertificateName": "mail.cloudmonkeys.xyz"})],
        ["after-fix"]),
    "cert-hybrid-san-missing": (
        [("Import-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "mail-cloudmonkeys-2026-reissued",
                                         "Services": ["SMTP", "IIS"]})], ["exo-to-onprem"]),
}


def test_every_scenario_has_a_repair():
    assert set(REPAIRS) == set(CATALOG)


@pytest.mark.parametrize("sid", sorted(REPAIRS))
async def test_repair_makes_mail_flow(sid, tmp_path):
    """The scenario as written, plus the admin's fix at +00:20:00: the failure evidence is in the logs
    (before the fix) and the mail is delivered after it."""
    loaded = load_scenario(sid)
    fixes, must_flow = REPAIRS[sid]
    for i, (cmdlet, params) in enumerate(fixes):
        loaded.scenario.change.append(Change(cmdlet=cmdlet, at=f"+00:20:{i:02d}", **params))
    if "after-fix" in must_flow:
        from labsim.scenario.model import Message
        loaded.scenario.message.append(Message.model_validate(
            {"id": "after-fix", "at": "+00:30:00", "from": "raghu@cloudmonkeys.xyz", "to": ["alex@fabrikam.com"]}))
    loaded.scenario.expect.message = [MessageExpectation(id=m, fate="delivered") for m in must_flow]
    loaded.scenario.duration = "02:00:00"
    loaded.scenario.expect.log = [e for e in loaded.scenario.expect.log if not e.absent]  # the fix ends those
    result = await run(loaded, tmp_path / "out")
    failed = [f"{o.what}: {o.detail}" for o in result.outcomes if not o.ok]
    assert result.ok, failed  # the delivered fates, and the scenario's own log/event evidence of the fault
    for mid in must_flow:
        hop = next(h for h in fate(result, mid)["hops"] if h["event"] == "DELIVER")
        assert hop["time"] >= "2026-05-01T06:20:00"


# --- validate -------------------------------------------------------------------------------------

async def test_validate_baseline_is_healthy():
    results, _ = await run_validation(load_scenario("hybrid-baseline"))
    assert [(r.side, r.connector) for r in results] == [
        ("Exchange Online", f"Outbound to {GUID}"), ("CMHYBD01", "Outbound to Office 365")]
    assert all(r.ok and r.status == "Success" for r in results)


VALIDATE_FAILS = {
    "cert-crl-offline": ("Exchange Online", "[Message=454 4.7.5 Certificate validation failure]"),
    "cert-tlscertname-no-private-key": ("CMHYBD01", '"421 4.4.1 Connection timed out."'),
    "cert-renewed-duplicate": ("CMHYBD01", '"421 4.2.1 Unable to connect."'),  # its 2016 of 2017
    "cert-missing-intermediate": ("Exchange Online", "[Message=UntrustedRoot]"),
    "cert-untrusted-root": ("CMHYBD01", "454 4.7.5 Certificate validation failure, reason:untrustedroot"),
    "cert-revoked": ("Exchange Online", "[Message=Revoked]"),
    "cert-expired": ("CMHYBD01", "454 4.7.5 The certificate specified in TlsCertificateName"),
    "cert-edge-subject-mismatch": ("Exchange Online", "[Message=SubjectMismatch Expected Subject"),
    "cert-wrong-tlsdomain": ("CMHYBD01", "454 4.7.5 Certificate validation failure, reason:subjectmismatch"),
    "cert-fqdn-no-certificate": ("Exchange Online", "[Message=451 5.7.3 STARTTLS is required to send mail]"),
    "cert-exo-attribution": ("CMHYBD01", "550 5.7.64 TenantAttribution; Relay Access Denied"),
    "cert-hybrid-san-missing": ("Exchange Online", "[Message=SubjectMismatch Expected Subject: mail.cloudmonkeys.xyz."),
}


def test_every_scenario_has_a_validation_expectation():
    assert set(VALIDATE_FAILS) == set(CATALOG)


@pytest.mark.parametrize("sid", sorted(VALIDATE_FAILS))
async def test_validate_names_the_failing_connector(sid):
    side, text = VALIDATE_FAILS[sid]
    results, _ = await run_validation(load_scenario(sid))
    failing = [r for r in results if not r.ok]
    assert any(r.side == side and text in r.status for r in failing), [(r.side, r.connector, r.status) for r in results]


async def test_cert_scenario_output_is_byte_identical(tmp_path):
    """Same scenario and seed, two runs: the same bytes, event logs included."""
    import filecmp

    a, b = tmp_path / "a", tmp_path / "b"
    await run_loaded(load_scenario("cert-crl-offline"), out=a)
    await run_loaded(load_scenario("cert-crl-offline"), out=b)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert Path("CMEDGE01/EventLog/Application.xml") in files
    match, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
