"""Offering a kept session without CPython 3.11's copy (labsim.pki.resume._DirectSessionSetter):
the session resumes as often as Schannel's cache allows, however it reaches OpenSSL."""

from __future__ import annotations

import ssl
import sys
from datetime import timedelta

import pytest
from test_tls_resume import T0, _connect

from labsim.pki import CertStore, LabPki, resume
from labsim.topology.defaults import default_lab
from labsim.topology.model import StoreEntry


@pytest.fixture(scope="module")
def pki() -> LabPki:
    return LabPki(default_lab(), 1)


def _stores(pki: LabPki) -> tuple[CertStore, CertStore]:
    return (CertStore(pki, [StoreEntry(certificate="mail-cloudmonkeys")], owner="CMHYBD01"),
            CertStore(pki, [StoreEntry(certificate="eop")], owner="EXO"))


async def _reuses(pki: LabPki, times: int) -> list[tuple[bool, bool]]:
    server, client = _stores(pki)
    try:
        ctx = server.server_context(server.entries[0])
        seen = [await _connect(ctx, client, T0 + timedelta(minutes=i)) for i in range(times)]
        return [(s["client_reused"], s["server_reused"]) for s in seen]
    finally:
        server.close()
        client.close()


@pytest.mark.skipif(sys.version_info[:2] != (3, 11) or sys.implementation.name != "cpython",
                    reason="the direct offer is for CPython 3.11's _ssl layout only")
async def test_the_kept_session_is_offered_directly_and_resumes_every_time(pki: LabPki,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    direct = resume._DirectSessionSetter()
    monkeypatch.setattr(resume, "_DIRECT", direct)
    offered: list[bool] = []
    real = direct.offer

    def spy(ctx: ssl.SSLContext, sslobj: ssl.SSLObject, session: ssl.SSLSession) -> bool:
        offered.append(real(ctx, sslobj, session))
        return offered[-1]

    monkeypatch.setattr(direct, "offer", spy)
    # one session, offered on three connections in turn: each resumes (OpenSSL shares, not copies)
    assert await _reuses(pki, 4) == [(False, False), (True, True), (True, True), (True, True)]
    assert offered == [True, True, True]


async def test_without_the_direct_offer_the_setter_resumes_the_same_way(pki: LabPki,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume._DIRECT, "offer", lambda ctx, sslobj, session: False)
    assert await _reuses(pki, 3) == [(False, False), (True, True), (True, True)]


async def test_a_session_of_another_context_is_left_to_the_setter(pki: LabPki) -> None:
    server, client = _stores(pki)
    try:
        await _connect(server.server_context(server.entries[0]), client, T0)
        session = client.sessions._kept[(0, "192.168.1.13", 25, None)].session
        other = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # not the context the session belongs to
        sslobj = ssl.SSLContext.wrap_bio(other, ssl.MemoryBIO(), ssl.MemoryBIO(), False, "x.example")
        assert resume._DIRECT.offer(other, sslobj, session) is False
        with pytest.raises(ValueError, match="different SSLContext"):
            sslobj.session = session
    finally:
        server.close()
        client.close()
