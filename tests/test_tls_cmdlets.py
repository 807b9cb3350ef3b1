"""topology.cmdlets_pki and `labsim validate`: certificate changes as an admin writes them, bad input
named clearly, and the connector test's exit codes."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from labsim.errors import TopologyError
from labsim.topology.changes import apply_change
from labsim.topology.defaults import default_lab


@pytest.fixture
def world():
    return default_lab()


def test_crl_server_modes(world):
    apply_change(world, "Set-LabCrlServer", {"Mode": "Hang"})
    assert world.network.crl_mode == "hang"
    with pytest.raises(TopologyError, match="-Mode 'sideways' is not one of up, down, hang"):
        apply_change(world, "Set-LabCrlServer", {"Mode": "sideways"})
    assert world.network.crl_mode == "hang"  # a rejected change leaves the world as it was


def test_winhttp_proxy_set_and_reset(world):
    apply_change(world, "Set-LabWinHttpProxy", {"Server": "cmedge01", "ProxyServer": "192.168.1.50:8080"})
    assert world.organization.server("CMEDGE01").winhttp_proxy == "192.168.1.50:8080"
    apply_change(world, "Set-LabWinHttpProxy", {"Server": "CMEDGE01", "ProxyServer": ""})
    assert world.organization.server("CMEDGE01").winhttp_proxy is None
    with pytest.raises(TopologyError, match="-ProxyServer: .proxy. is not an IPv4 address"):
        apply_change(world, "Set-LabWinHttpProxy", {"Server": "CMEDGE01", "ProxyServer": "proxy:80"})
    with pytest.raises(TopologyError, match="no server 'CMNOPE'"):
        apply_change(world, "Set-LabWinHttpProxy", {"Server": "CMNOPE", "ProxyServer": "1.2.3.4:80"})


def test_copy_import_strip_and_enable(world):
    apply_change(world, "Copy-LabCertificate", {"Identity": "mail-cloudmonkeys", "Name": "renewed",
                                                "NotAfter": "+400d"})
    copy = world.certificate("renewed")
    assert copy.subject == world.certificate("mail-cloudmonkeys").subject and copy.not_after == "+400d"
    apply_change(world, "Import-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "renewed",
                                                       "HasPrivateKey": False, "Services": []})
    entry = world.organization.server("CMHYBD01").certificates[-1]
    assert (entry.certificate, entry.has_private_key, entry.services) == ("renewed", False, [])
    apply_change(world, "Enable-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "renewed",
                                                       "Services": "smtp,IIS"})
    assert entry.services == ["SMTP", "IIS"]
    apply_change(world, "Enable-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "renewed",
                                                       "Services": "None"})
    assert entry.services == []
    apply_change(world, "Set-LabServerCertificate", {"Server": "CMHYBD01", "Certificate": "mail-cloudmonkeys",
                                                     "HasPrivateKey": False})
    assert world.organization.server("CMHYBD01").certificates[0].has_private_key is False


@pytest.mark.parametrize("cmdlet, params, problem", [
    ("Copy-LabCertificate", {"Identity": "mail-cloudmonkeys", "Name": "eop"}, "a certificate named 'eop' exists"),
    ("Copy-LabCertificate", {"Identity": "nope", "Name": "x"}, "no certificate 'nope'"),
    ("Copy-LabCertificate", {"Identity": "eop", "Name": "x", "Colour": "red"}, "unknown parameter -Colour"),
    ("Enable-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "eop", "Services": "SMTP"},
     "CMHYBD01 has no certificate 'eop' in its store"),
    ("Enable-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "mail-cloudmonkeys", "Services": "FTP"},
     "-Services 'FTP' is not one of"),
    ("Enable-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "mail-cloudmonkeys"}, "-Services is required"),
    ("Revoke-LabCertificate", {"Identity": "cmhybd01-selfsigned"}, "self-signed certificate has no CA"),
    ("Remove-LabIntermediateCertificate", {"Server": "CMHYBD01", "CertificateAuthority": "public-root"},
     "'public-root' is a root CA"),
    ("Remove-LabIntermediateCertificate", {"Server": "CMHYBD01", "CertificateAuthority": "nope"}, "no lab CA 'nope'"),
    ("Set-LabIntermediateStore", {"Server": "CMHYBD01", "Bogus": 1}, "unknown parameter -Bogus"),
    ("Set-LabCertificateAuthority", {"Identity": "public-root", "TrustedBy": ["mars"]}, "TrustedBy"),
    ("Set-LabServerCertificate", {"Server": "CMHYBD01"}, "-Certificate is required"),
])
def test_bad_input_names_the_cmdlet_and_the_problem(world, cmdlet, params, problem):
    before = world.model_dump()
    with pytest.raises(TopologyError) as info:
        apply_change(world, cmdlet, params)
    assert info.value.where.startswith(cmdlet) and problem in str(info.value)
    assert world.model_dump() == before


def test_intermediate_store_and_trust(world):
    apply_change(world, "Remove-LabIntermediateCertificate", {"Server": "CMHYBD01",
                                                              "CertificateAuthority": "public-issuing"})
    assert world.organization.server("CMHYBD01").intermediate_store == []
    with pytest.raises(TopologyError, match="does not have 'public-issuing'"):
        apply_change(world, "Remove-LabIntermediateCertificate", {"Server": "CMHYBD01",
                                                                  "CertificateAuthority": "public-issuing"})
    apply_change(world, "Import-LabIntermediateCertificate", {"Server": "CMHYBD01",
                                                              "CertificateAuthority": "public-issuing"})
    assert world.organization.server("CMHYBD01").intermediate_store == ["public-issuing"]
    apply_change(world, "Set-LabCertificateAuthority", {"Identity": "public-root", "TrustedBy": "exo,internet"})
    assert [str(s) for s in world.ca("public-root").trusted_by] == ["exo", "internet"]
    apply_change(world, "New-LabCertificateAuthority", {"Name": "rogue", "Subject": "CN=Rogue", "TrustedBy": []})
    assert world.ca("rogue").parent is None


def test_validate_cli_exit_codes_and_json():
    rc, out, err = run_cli(["validate", "hybrid-baseline"])
    assert rc == 0 and "2/2 connector(s) healthy" in out and "Success" in out
    rc, out, err = run_cli(["validate", "cert-wrong-tlsdomain", "--json"])
    data = json.loads(out)
    assert rc == 1 and data["scenario"] == "cert-wrong-tlsdomain"
    bad = [c for c in data["connectors"] if not c["ok"]]
    assert [c["connector"] for c in bad] == ["Outbound to Office 365"]
    assert "454 4.7.5 Certificate validation failure, reason:" in bad[0]["status"]
    rc, out, err = run_cli(["validate", "hybrid-baseline", "--at", "yesterday"])
    assert rc == 2 and err.startswith("labsim: --at:")
