"""Issue 13 (rest): the lab behaviour the remaining exercises rely on, over real loopback.

An IP smart host on EXO's outbound connector is used as is (no DNS); the Edge's IP Allow list
lets a listed address past the block list providers; EOP's IP Allow List does not lift its block
list rejection; a block list's own delisting; a reissued certificate is used for the next TLS session.
"""

from __future__ import annotations

import pytest

from labsim.engine.driver import inject_message
from labsim.errors import TopologyError
from labsim.scenario.loader import load_scenario
from labsim.scenario.model import Message
from labsim.shell.session import LabSession
from labsim.topology.changes import apply_change
from labsim.topology.defaults import default_lab

EXO_OUT = "Outbound to 8f2c6a9e-0d1b-4c55-9a57-3b1e2a7c4d10"


async def _send(s: LabSession, key: str, sender: str, to: str, wait: float = 900) -> object:
    msg = Message.model_validate({"id": key, "from": sender, "to": [to], "subject": key})
    s.rt.scheduler.call_at(s.now(), f"message {key}", inject_message(s.rt, msg))
    await s.advance(wait)
    return s.rt.ledger.fates.get(key)


def _delivered(fate: object, realm: str) -> bool:
    return fate is not None and any(d["realm"] == realm for d in fate.delivered)  # type: ignore[attr-defined]


@pytest.mark.integration
@pytest.mark.parametrize("hop", ["27.7.57.241", "[27.7.57.241]"])
async def test_exo_ip_smart_host_is_used_without_dns(tmp_path, hop):
    s = LabSession(load_scenario("hybrid-baseline"), tmp_path)
    await s.start()
    try:
        # mail.cloudmonkeys.xyz no longer resolves: only an IP smart host can still reach CMHYBD01
        await s.change("Remove-LabDnsRecord", {"Server": "PUBLIC-DNS", "ZoneName": "cloudmonkeys.xyz",
                                               "Name": "mail.cloudmonkeys.xyz", "Type": "A"})
        fate = await _send(s, "by-name", "ramki@cloudmonkeys.xyz", "raghu@cloudmonkeys.xyz", wait=300)
        assert not _delivered(fate, "onprem")  # the control: the name does not resolve
        await s.change("Set-OutboundConnector", {"Identity": EXO_OUT, "SmartHosts": [hop]})
        fate = await _send(s, "by-ip", "ramki@cloudmonkeys.xyz", "raghu@cloudmonkeys.xyz")
        assert _delivered(fate, "onprem"), fate
        assert "4.4.312" not in str(fate)
    finally:
        await s.stop()


@pytest.mark.integration
async def test_edge_ip_allow_list_skips_the_block_list_providers_until_it_expires(tmp_path):
    s = LabSession(load_scenario("dns-blocklist-edge-provider"), tmp_path, exercise=True)  # never delisted
    await s.start()
    try:
        await s.advance(120)
        past = s.now().replace(tzinfo=None).isoformat()
        await s.change("Add-IPAllowListEntry", {"Server": "CMEDGE01", "IPRange": "203.0.113.0/24",
                                                "ExpirationTime": past})
        fate = await _send(s, "expired-entry", "alex@fabrikam.com", "raghu@cloudmonkeys.xyz", wait=300)
        assert fate is not None and "blocked using Spamhaus" in str(fate.failed)  # an expired entry is ignored
        await s.change("Add-IPAllowListEntry", {"Server": "CMEDGE01", "IPAddress": "203.0.113.25"})
        await s.change("Set-IPAllowListConfig", {"Server": "CMEDGE01", "ExternalMailEnabled": False})
        fate = await _send(s, "list-off", "alex@fabrikam.com", "raghu@cloudmonkeys.xyz", wait=300)
        assert fate is not None and fate.failed  # the list is not used for external mail
        await s.change("Set-IPAllowListConfig", {"Server": "CMEDGE01", "ExternalMailEnabled": True})
        fate = await _send(s, "allowed", "alex@fabrikam.com", "raghu@cloudmonkeys.xyz")
        assert _delivered(fate, "onprem"), fate
        await s.change("Remove-IPAllowListEntry", {"Server": "CMEDGE01", "Identity": "2"})
        fate = await _send(s, "removed", "alex@fabrikam.com", "raghu@cloudmonkeys.xyz", wait=300)
        assert fate is not None and fate.failed
    finally:
        await s.stop()


@pytest.mark.integration
async def test_eop_ip_allow_list_does_not_lift_the_block_list_but_delisting_does(tmp_path):
    s = LabSession(load_scenario("dns-blocklist-spamhaus-eop"), tmp_path, exercise=True)
    await s.start()
    try:
        await s.change("Set-HostedConnectionFilterPolicy", {"Identity": "Default", "IPAllowList": ["27.7.57.241"]})
        assert s.rt.model.tenant.connection_filter_policy.ip_allow_list == ["27.7.57.241"]
        fate = await _send(s, "allow-listed", "raghu@cloudmonkeys.xyz", "ramki@cloudmonkeys.xyz", wait=600)
        assert fate is not None and "blocked using Spamhaus" in str(fate.failed)
        await s.change("Remove-LabBlockListEntry", {"LookupDomain": "zen.spamhaus.org", "IPAddress": "27.7.57.241"})
        await s.advance(3600)  # EOP's resolver remembers the listing for its TTL (3600 s here)
        fate = await _send(s, "delisted", "raghu@cloudmonkeys.xyz", "ramki@cloudmonkeys.xyz")
        assert _delivered(fate, "exo"), fate
    finally:
        await s.stop()


def test_allow_list_cmdlets_refuse_bad_input():
    lab = default_lab()
    for cmdlet, params, words in [
        ("Add-IPAllowListEntry", {"Server": "CMHYBD01", "IPAddress": "203.0.113.25"}, "not an Edge"),
        ("Add-IPAllowListEntry", {"Server": "CMEDGE01"}, "one of -IPAddress or -IPRange"),
        ("Add-IPAllowListEntry", {"Server": "CMEDGE01", "IPAddress": "10.0.0.0/8"}, "use -IPRange"),
        ("Add-IPAllowListEntry", {"Server": "CMEDGE01", "IPRange": "nonsense"}, "not an IP address"),
        ("Remove-IPAllowListEntry", {"Server": "CMEDGE01", "Identity": "9"}, "no IP Allow list entry"),
        ("Set-HostedConnectionFilterPolicy", {"IPAllowList": ["10.0.0.0/16"]}, "/24 to /32"),
        ("Set-HostedConnectionFilterPolicy", {"Identity": "Strict", "IPAllowList": []}, "no connection filter policy"),
        ("Remove-LabBlockListEntry", {"LookupDomain": "zen.spamhaus.org", "IPAddress": "27.7.57.241"}, "not listed"),
        ("Remove-LabBlockListEntry", {"LookupDomain": "zen.spamhaus.org", "IPAddress": "x"}, "not an IPv4"),
    ]:
        with pytest.raises(TopologyError) as exc:
            apply_change(lab, cmdlet, dict(params))
        assert words in str(exc.value), (cmdlet, params, str(exc.value))
    apply_change(lab, "Add-IPAllowListEntry", {"IPAddress": "203.0.113.25"})
    with pytest.raises(TopologyError, match="already on the IP Allow list"):
        apply_change(lab, "Add-IPAllowListEntry", {"IPRange": "203.0.113.25"})
    apply_change(lab, "Set-HostedConnectionFilterPolicy", {"IPAllowList": {"Add": ["192.0.2.0/24"]}})
    apply_change(lab, "Set-HostedConnectionFilterPolicy", {"IPAllowList": {"Add": ["192.0.2.9"], "Remove": ["192.0.2.0/24"]}})
    assert lab.tenant.connection_filter_policy.ip_allow_list == ["192.0.2.9"]


@pytest.mark.integration
async def test_a_certificate_created_at_run_time_is_accepted_by_eop(tmp_path, monkeypatch):
    """cert-revoked: after the reissue, CMHYBD01 presents the new certificate to EOP. EOP's TLS
    context trusts the lab's leaves as they were when it was built; without the accept-any callback
    (pki.accept_any's fallback) a context built before the reissue ended that handshake with
    'TLS negotiation failed with error IllegalMessage', restart or not."""
    import labsim.pki.store as store

    monkeypatch.setattr(store, "accept_any_client_certificate", lambda ctx: False)
    s = LabSession(load_scenario("cert-revoked"), tmp_path, exercise=True)
    await s.start()
    try:
        fate = await _send(s, "before", "raghu@cloudmonkeys.xyz", "ramki@cloudmonkeys.xyz", wait=300)
        assert _delivered(fate, "exo")  # EOP's context exists now, built with the revoked certificate's leaf only
        await s.change("New-LabCertificate", {"Name": "mail-cloudmonkeys-2026", "Subject": "CN=mail.cloudmonkeys.xyz",
                                              "Sans": ["mail.cloudmonkeys.xyz"], "Issuer": "public-issuing",
                                              "NotBefore": "-1d", "NotAfter": "+365d"})
        await s.change("Import-ExchangeCertificate", {"FileName": "C:\\certs\\mail-cloudmonkeys-2026.pfx"})
        await s.change("Enable-ExchangeCertificate", {"Thumbprint": s.rt.pki.issued("mail-cloudmonkeys-2026").thumbprint,
                                                      "Services": "SMTP", "Force": True})
        await s.change("Remove-ExchangeCertificate", {"Thumbprint": s.rt.pki.issued("mail-cloudmonkeys").thumbprint})
        fate = await _send(s, "after", "raghu@cloudmonkeys.xyz", "alex@fabrikam.com", wait=1800)
        assert _delivered(fate, "internet"), fate
        s.rt.flush_logs()
        sent = "".join(p.read_text(encoding="utf-8") for p in tmp_path.rglob("SEND*.LOG"))
        assert "IllegalMessage" not in sent
    finally:
        await s.stop()
