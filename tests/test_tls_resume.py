"""TLS session resumption (labsim.pki.resume): sessions resume as Schannel's caches would let them,
and whether they do changes no byte of a run's output."""

from __future__ import annotations

import asyncio
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import BASELINE_TOML

from labsim.engine.driver import run_scenario
from labsim.pki import CertStore, LabPki, thumbprint
from labsim.pki.resume import CLIENT_CACHE_TIME, ClientSessionCache
from labsim.pki.store import peer_chain
from labsim.scenario.loader import load_scenario
from labsim.topology.defaults import default_lab
from labsim.topology.model import StoreEntry

T0 = datetime(2026, 5, 1, 6, tzinfo=timezone.utc)
KEY = (0, "192.168.1.13", 25, None)


@pytest.fixture(scope="module")
def pki() -> LabPki:
    return LabPki(default_lab(), 1)


async def _connect(server_ctx: ssl.SSLContext, client: CertStore, now: datetime) -> dict[str, Any]:
    """One STARTTLS-like upgrade over 127.0.0.1 with the client's cache, as smtp.client does it."""
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await writer.start_tls(server_ctx)
        obj = writer.get_extra_info("ssl_object")
        seen["server_reused"], seen["server_chain"] = obj.session_reused, peer_chain(obj)
        writer.write(b"ok")
        await writer.drain()
        writer.close()
        done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        with client.sessions.offering(KEY, now):
            await asyncio.wait_for(writer.start_tls(client.client_context(client.entries[0])), 5)
        obj = writer.get_extra_info("ssl_object")
        chain = client.sessions.resumed_chain(KEY, obj)
        if chain is None:
            chain = peer_chain(obj)
            client.sessions.keep(KEY, obj, chain, now)
        seen["client_reused"], seen["client_chain"] = obj.session_reused, chain
        assert await asyncio.wait_for(reader.read(2), 5) == b"ok"
        writer.close()
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()
    return seen


async def test_a_second_connection_resumes_and_both_ends_still_see_the_full_chains(pki: LabPki) -> None:
    server = CertStore(pki, [StoreEntry(certificate="mail-cloudmonkeys")], owner="CMHYBD01")
    client = CertStore(pki, [StoreEntry(certificate="eop")], owner="EXO")
    try:
        ctx = server.server_context(server.entries[0])
        first = await _connect(ctx, client, T0)
        second = await _connect(ctx, client, T0 + timedelta(minutes=5))
        assert (first["client_reused"], first["server_reused"]) == (False, False)
        assert (second["client_reused"], second["server_reused"]) == (True, True)
        leaf_ca = [thumbprint(pki.issued("mail-cloudmonkeys").cert), thumbprint(pki.ca("public-issuing").cert)]
        assert [thumbprint(c) for c in second["client_chain"]] == leaf_ca  # kept from the full handshake
        assert [thumbprint(c) for c in second["server_chain"]] == [
            thumbprint(pki.issued("eop").cert), thumbprint(pki.ca("public-issuing").cert)]
    finally:
        server.close()
        client.close()


async def test_a_session_older_than_client_cache_time_is_not_offered(pki: LabPki) -> None:
    server = CertStore(pki, [StoreEntry(certificate="mail-cloudmonkeys")], owner="CMHYBD01")
    client = CertStore(pki, [StoreEntry(certificate="eop")], owner="EXO")
    try:
        ctx = server.server_context(server.entries[0])
        await _connect(ctx, client, T0)
        late = await _connect(ctx, client, T0 + CLIENT_CACHE_TIME)
        assert (late["client_reused"], late["server_reused"]) == (False, False)
        again = await _connect(ctx, client, T0 + CLIENT_CACHE_TIME + timedelta(seconds=1))
        assert again["client_reused"]  # the late full handshake's session is the one kept now
    finally:
        server.close()
        client.close()


async def test_a_new_server_context_does_a_full_handshake(pki: LabPki) -> None:
    # A receiver whose certificates changed builds a new context: its cache is empty, the offered
    # session is refused and the handshake is a full one (with the new chain).
    server = CertStore(pki, [StoreEntry(certificate="mail-cloudmonkeys")], owner="CMHYBD01")
    client = CertStore(pki, [StoreEntry(certificate="eop")], owner="EXO")
    try:
        await _connect(server.server_context(server.entries[0]), client, T0)
        fresh = await _connect(server.server_context(server.entries[0]), client, T0 + timedelta(minutes=1))
        assert (fresh["client_reused"], fresh["server_reused"]) == (False, False)
        assert len(fresh["client_chain"]) == 2
    finally:
        server.close()
        client.close()


def _spaced_scenario(tmp_path: Path) -> Path:
    """hybrid-baseline's lab with messages a minute apart in all four directions (one session each)."""
    head = BASELINE_TOML.read_text(encoding="utf-8").split("[[message]]", 1)[0]
    head = head.replace('id = "hybrid-baseline"', 'id = "tls-resume"', 1)
    internet, onprem, exo = "alex@fabrikam.com", "raghu@cloudmonkeys.xyz", "ramki@cloudmonkeys.xyz"
    pairs = [(internet, onprem), (exo, onprem), (onprem, exo), (onprem, internet)]
    parts = [head]
    for i in range(12):
        sender, rcpt = pairs[i % 4]
        parts.append(f'[[message]]\nid = "m{i}"\nat = "+00:{i + 1:02d}:00"\nfrom = "{sender}"\nto = ["{rcpt}"]\n'
                     f'subject = "spaced {i}"\n\n')
    path = tmp_path / "tls-resume.toml"
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_resumed_sessions_write_the_same_bytes_as_full_handshakes(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario(_spaced_scenario(tmp_path))
    resumed: list[int] = []
    real = ClientSessionCache.resumed_chain

    def counting(self: ClientSessionCache, key: Any, sslobj: ssl.SSLObject) -> Any:
        chain = real(self, key, sslobj)
        resumed.append(chain is not None)
        return chain

    monkeypatch.setattr(ClientSessionCache, "resumed_chain", counting)
    result = run_scenario(scenario, out=tmp_path / "resuming")
    assert result.summary["internal_errors"] == []
    assert sum(resumed) >= 6, resumed  # later sessions to the same receivers resumed

    monkeypatch.setattr(ClientSessionCache, "keep", lambda *args, **kwargs: None)  # nothing to offer
    resumed.clear()
    run_scenario(load_scenario(_spaced_scenario(tmp_path)), out=tmp_path / "full")
    assert resumed and not any(resumed)
    assert _tree(tmp_path / "resuming") == _tree(tmp_path / "full")
