"""The client's TLS step: STARTTLS (or Exchange's X-ANONYMOUSTLS) with the client certificate, the
Send log's TLS rows, resumption (pki.resume) and the check of the server's chain the policy asks for.

`tls_rows` (what the log shows after a handshake) needs no I/O; `TlsStep` is the shell around the
upgrade. `_tls_by_verb` upgrades after a verb aiosmtplib does not know (X-ANONYMOUSTLS), the way
aiosmtplib's own STARTTLS does; it sets the two aiosmtplib attributes that upgrade sets
(`SMTPProtocol._over_ssl`, `SMTP._reset_server_state`), the only private use of aiosmtplib here.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

import aiosmtplib

from ..logs import protocol_text as T
from ..pki.errors import NoCredentialsError
from ..pki.store import peer_chain
from ..rules.tls_policy import (
    needs_validation,
    server_certificate_ok,
    validation_domain,
)
from .client_rules import Abort
from .send_spec import REAL_TIMEOUT

if TYPE_CHECKING:
    from .client_session import ClientSession


def tls_rows(lab: Any, stored: Any, src: Any, version: str, cipher: str, bits: int,
             chain: list) -> list[tuple[str, str]]:
    """The Send log's `*` rows after a handshake: our certificate (if any), the TLS success row, the
    peer's certificate (if it sent one)."""
    rows = list(lab.certificate_rows(stored, src)) if stored is not None else []
    rows.append(("", T.tls_success_context("client", version, cipher, bits, 256)))
    if chain:
        rows.extend(lab.peer_certificate_rows(chain[0], src))
    return rows


class TlsStep:
    """One TLS upgrade of a `ClientSession` by `verb`; raises `Abort` when it fails."""

    def __init__(self, session: ClientSession, verb: str) -> None:
        self.s = session
        self.verb = verb

    async def run(self) -> None:
        s, verb = self.s, self.verb
        assert s.smtp is not None
        tls = s.tls
        stored = tls.client_cert
        ctx_error: NoCredentialsError | None = None
        ctx: ssl.SSLContext | None = None
        try:
            ctx = tls.store.client_context(stored)
        except NoCredentialsError as exc:
            ctx_error = exc
        if ctx is None:
            await self._no_credentials(ctx_error)
            return
        s.log.sent(verb)
        s.advance()
        # Schannel's client cache: offer the session of the last full handshake with this target
        # (pki.resume); the log rows are the same either way.
        cache = tls.store.sessions
        resume_key = (-1 if stored is None else stored.index, s.target.ip, s.target.port, tls.sni)
        try:
            with cache.offering(resume_key, s._now()):
                if verb == "STARTTLS":
                    resp = await s.smtp.starttls(tls_context=ctx, server_hostname=tls.sni, timeout=REAL_TIMEOUT)
                else:
                    resp = await _tls_by_verb(s.smtp, verb, ctx, tls.sni)
        except aiosmtplib.SMTPResponseException as exc:
            s.advance()
            s.log.received(f"{exc.code} {exc.message}")
            raise Abort(s.fail("response", response=f"{exc.code} {exc.message}")) from None
        except (aiosmtplib.SMTPException, ssl.SSLError, ConnectionError) as exc:
            cache.forget(resume_key)
            s.advance()
            s.log.info("", T.tls_negotiation_failed("IllegalMessage"))
            raise Abort(s.fail("tls_failed", status="IllegalMessage", detail=str(exc))) from None
        s.advance()
        s.log.received(f"{resp.code} {resp.message}")
        s.advance(2 * s.latency)  # the handshake: two round trips
        assert s.smtp.transport is not None  # STARTTLS just succeeded on this connection
        sslobj = s.smtp.transport.get_extra_info("ssl_object")
        version, (cipher, _, bits) = sslobj.version(), sslobj.cipher()
        s.anonymous_tls = verb == "X-ANONYMOUSTLS"
        chain = cache.resumed_chain(resume_key, sslobj)
        if chain is None:
            chain = peer_chain(sslobj)
            cache.keep(resume_key, sslobj, chain, s._now())
        s.tls_info = {"version": version, "cipher": cipher, "remote_chain": chain}
        for data, context in tls_rows(s.lab, stored, s.spec.src, version, cipher, bits, chain):
            s.log.info(data, context)
        await self._validate(chain)

    async def _no_credentials(self, ctx_error: NoCredentialsError | None) -> None:
        """The certificate's private key cannot be loaded: the verb goes out, then the handshake
        cannot start (seeds 002/004: NoCredentials; KB 4051498: UnknownCredentials)."""
        s = self.s
        stored = s.tls.client_cert
        status = ctx_error.status if ctx_error is not None else "NoCredentials"
        resp = await s.command(self.verb)
        if resp.code == 220 and stored is not None:
            for data, context in s.lab.certificate_rows(stored, s.spec.src):
                s.log.info(data, context)
        s.log.info("", T.tls_negotiation_failed(status))
        raise Abort(s.fail("tls_no_credentials", status=status, detail=str(ctx_error)))

    async def _validate(self, chain: list) -> None:
        """Classify the server's chain when the policy asks for it; a failure fails the attempt."""
        s = self.s
        plan = s.tls.plan()
        if not (needs_validation(plan) and s.spec.validate is not None):
            return
        domain = validation_domain(plan)
        result = await s.spec.validate(chain, domain)
        status = str(result.status)
        s.tls_info["status"] = status
        if not server_certificate_ok(plan, status):
            s.log.info("", T.outbound_tls_auth_failed(str(s.tls.auth_level), status))
            leaf = chain[0] if chain else None
            raise Abort(s.fail(
                "cert_validation", status=status, detail=result.detail, expected=domain,
                presented=s.lab.certificate_subject(leaf) if leaf is not None else None,
                thumbprint=s.lab.certificate_thumbprint(leaf) if leaf is not None else None))


async def _tls_by_verb(smtp: aiosmtplib.SMTP, verb: str, ctx: ssl.SSLContext,
                       sni: str | None) -> aiosmtplib.SMTPResponse:
    """TLS started by a verb other than STARTTLS (Exchange's X-ANONYMOUSTLS): the verb, its 220, then
    the same in-place upgrade aiosmtplib's starttls does (SMTPProtocol.start_tls, which only knows
    STARTTLS)."""
    protocol = smtp.protocol
    assert protocol is not None and protocol.transport is not None
    resp = await protocol.execute_command(verb.encode(), timeout=REAL_TIMEOUT)
    if resp.code != 220:
        raise aiosmtplib.SMTPResponseException(resp.code, resp.message)
    loop = asyncio.get_running_loop()
    try:
        transport = await loop.start_tls(protocol.transport, protocol, ctx,  # type: ignore[arg-type]
                                         server_side=False, server_hostname=sni, ssl_handshake_timeout=REAL_TIMEOUT)
    except (asyncio.TimeoutError, ConnectionError) as exc:
        raise aiosmtplib.SMTPServerDisconnected(f"TLS upgrade failed: {exc}") from exc
    protocol.transport = transport
    protocol._over_ssl = True  # what SMTPProtocol.start_tls records after its upgrade
    smtp.transport = transport
    smtp._reset_server_state()  # RFC 3207 4.2: forget the extensions learnt in the clear
    return resp
