"""One message over an open `ClientSession`: shadow redundancy's verbs, XPROXYFROM, MAIL, RCPT, then
DATA or one BDAT chunk; every reply filed in the caller's `MessageResult` (`client_rules.refuse`).
"""

from __future__ import annotations

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX

from ..logs import protocol_text as T
from ..rules import verbs as V
from ..rules.shadow_redundancy import MAX_DISCARD_IDS as SHADOW_MAX_DISCARD_IDS
from .client_rules import SOCKET_ERRORS, Abort, crlf_body, refuse, wire_lines
from .client_session import ClientSession
from .send_spec import BANDWIDTH, REAL_TIMEOUT, MessageResult, OutboundMessage


async def send_message(session: ClientSession, msg: OutboundMessage, result: MessageResult) -> None:
    """Send `msg` over `session`, filing every reply in `result`; raises `Abort` when the session fails."""
    sender, peer = session.spec.sender, session.peer
    rset, session.rset_due = session.rset_due, False
    if msg.shadow_request is not None or msg.heartbeat is not None:
        if msg.shadow_request is None:
            session.rset_due, rset = rset, False  # a heartbeat is no message: the RSET waits for one
        else:
            rset = False  # RsetShadowSmtpCommand's RSET is the one
        if not await _shadow_verbs(session, msg, result):
            return
    if msg.proxy_from is not None and "XPROXYFROM" in peer:
        if session.proxy_seq or rset:
            # a proxy session taken again for the next message (ResetSession, then
            # PrepareForNextMessageOnCachedSession: RSET, then XPROXYFROM again before MAIL FROM)
            if session.proxy_seq:
                session.log.info("", T.proxying_inbound_context(msg.proxy_from.session_id))
            await session.command("RSET")
            rset = False
        session.proxy_seq += 1
        resp = await session.command(V.xproxyfrom_command(msg.proxy_from, session.proxy_seq))
        if resp.code != 250:
            result.reply = text = f"{resp.code} {resp.message}"
            refuse(result, resp.code, text, msg.recipients)
            return
    auth_as = msg.auth_as
    if auth_as is None and sender.exchange and ("AUTH" in peer or "X-EXPS" in peer):
        auth_as = V.header_of(msg.data, V.AUTH_AS_HEADER)  # the item's AuthAs, stamped when it was received
    oorg = V.header_of(msg.data, V.ORIGINATOR_ORG_HEADER) if "XOORG" in peer else None
    params = V.mail_from_params(
        sender, peer, size=len(msg.data), auth_as=auth_as, body=V.body_type(msg.data, msg.body),
        oorg=oorg, smtputf8=V.needs_smtputf8(msg.mail_from, msg.recipients))
    # word by word, in this order, as ever: an address that cannot be encoded fails the same way
    params_b = [p.encode() for p in params]
    mail_from = f"FROM:<{msg.mail_from}>"
    mail = (" ".join(("MAIL", mail_from, *params)), b" ".join((b"MAIL", mail_from.encode(), *params_b)))
    if V.pipelines(sender, peer):
        accepted = await _envelope_pipelined(session, msg, mail, rset, result)
    else:
        accepted = await _envelope(session, msg, mail, rset, result)
    if session.smtp is None or session.smtp.protocol is None:  # a 421 closed the connection
        if accepted or not result.reply or result.reply[:3] == "421":
            raise Abort(session.fail("socket", detail="SMTPServerDisconnected: Server not connected"))
        return  # MAIL FROM's refusal decided the message; the next one finds the connection gone
    if not accepted:
        if sender.exchange:
            session.rset_due = True  # SmtpOut's between-message RSET: sent with the next message, if any
        else:
            await session.command("RSET")
        return
    if V.uses_bdat(sender, peer) and msg.chunked is not False:
        await _bdat(session, msg, accepted, result)
        return
    resp = await session.command("DATA")
    if resp.code != 354:
        refuse(result, resp.code, f"{resp.code} {resp.message}", accepted)
        return
    body = PERIOD_REGEX.sub(b"..", crlf_body(msg.data))
    await _content(session, body + b".\r\n", len(body), accepted, result)


async def _envelope(session: ClientSession, msg: OutboundMessage, mail: tuple[str, bytes], rset: bool,
                    result: MessageResult) -> list[str]:
    """(RSET,) MAIL FROM, then each RCPT TO, each waiting for its reply; the recipients accepted."""
    if rset:
        await session.command("RSET")
    resp = await session.command(*mail)
    if resp.code != 250:
        result.reply = text = f"{resp.code} {resp.message}"
        refuse(result, resp.code, text, msg.recipients)
        return []
    accepted: list[str] = []
    for rcpt in msg.recipients:
        to = f"TO:<{rcpt}>"
        _file_rcpt(result, accepted, rcpt, await session.command("RCPT " + to, b"RCPT " + to.encode()))
    return accepted


async def _envelope_pipelined(session: ClientSession, msg: OutboundMessage, mail: tuple[str, bytes], rset: bool,
                              result: MessageResult) -> list[str]:
    """(RSET,) MAIL FROM and every RCPT TO as one pipelined group (RFC 2920; SmtpOutSession's
    EnqueueNextPipeLinedCommands), then their replies in order. A refused MAIL refuses every
    recipient, whatever their RCPTs were answered (503 5.5.2)."""
    head = [("RSET", b"RSET")] if rset else []
    lines = [*head, mail, *[(f"RCPT TO:<{r}>", f"RCPT TO:<{r}>".encode()) for r in msg.recipients]]
    replies = await session.group(lines)
    if len(replies) <= len(head):  # a 421 to the RSET
        raise Abort(session.fail("socket", detail="SMTPServerDisconnected: Server not connected"))
    resp = replies[len(head)]
    if resp.code != 250:
        result.reply = text = f"{resp.code} {resp.message}"
        refuse(result, resp.code, text, msg.recipients)
        return []
    accepted: list[str] = []
    for rcpt, r in zip(msg.recipients, replies[len(head) + 1:]):
        _file_rcpt(result, accepted, rcpt, r)
    if len(replies) < len(lines):  # a 421 closed the connection before the group ended
        raise Abort(session.fail("socket", detail="SMTPServerDisconnected: Server not connected"))
    return accepted


def _file_rcpt(result: MessageResult, accepted: list[str], rcpt: str, r: aiosmtplib.SMTPResponse) -> None:
    if r.code in (250, 251):
        accepted.append(rcpt)
        result.rcpt_replies[rcpt] = f"{r.code} {r.message}"
    else:
        (result.rejected if r.code >= 500 else result.deferred)[rcpt] = f"{r.code} {r.message}"


async def _shadow_verbs(session: ClientSession, msg: OutboundMessage, result: MessageResult) -> bool:
    """Shadow redundancy's verbs (RsetShadowSmtpCommand, XShadowRequestSmtpCommand, XShadowSmtpCommand,
    XQDiscardSmtpCommand); False when no message follows (a heartbeat, or a refusal)."""
    if msg.heartbeat is not None:
        resp = await session.command(f"XSHADOW {msg.heartbeat}")
        if resp.code == 250:
            resp = await session.command(f"XQDISCARD {SHADOW_MAX_DISCARD_IDS}")
        result.reply = "\r\n".join(wire_lines(resp.code, resp.message))
        return False
    if "XSHADOWREQUEST" not in session.peer:  # the peer does not take shadow copies: fail over
        result.deferred.update({r: "XSHADOWREQUEST not offered" for r in msg.recipients})
        return False
    await session.command("RSET")
    resp = await session.command(f"XSHADOWREQUEST {msg.shadow_request}")
    if resp.code != 250:
        result.deferred.update({r: f"{resp.code} {resp.message}" for r in msg.recipients})
        return False
    return True


async def _bdat(session: ClientSession, msg: OutboundMessage, accepted: list[str], result: MessageResult) -> None:
    """The whole message as one `BDAT <n> LAST` chunk (no dot-stuffing), then its reply."""
    body = crlf_body(msg.data)
    command = V.bdat_command(len(body))
    session.log.sent(command)
    await _content(session, command.encode() + b"\r\n" + body, len(body), accepted, result)


async def _content(session: ClientSession, wire: bytes, size: int, accepted: list[str], result: MessageResult) -> None:
    """Send a message's content (DATA's dot-terminated body or a BDAT chunk with its command),
    taking the modelled transfer time of `size` bytes, then record the final reply."""
    assert session.smtp is not None and session.smtp.protocol is not None
    rate = session.plan.bandwidth or BANDWIDTH["lan" if session.latency < 0.002 else "wan"]
    session.advance(session.latency + size / rate)
    try:
        session.smtp.protocol.write(wire)
        final = await session.smtp.protocol.read_response(timeout=REAL_TIMEOUT)
    except SOCKET_ERRORS as exc:
        raise Abort(session.fail("socket", detail=str(exc))) from None
    session.advance()
    text = f"{final.code} {final.message}"
    session.log.received(text)
    if final.code == 250:
        result.delivered = accepted
    else:
        refuse(result, final.code, text, accepted)
    result.reply = text

