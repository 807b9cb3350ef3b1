"""The server session's command verbs other than message content: each asks its policy (and, for
MAIL and RCPT, the plain argument parsers of `smtp.commands`) and answers. DATA and BDAT are
`smtp.content`'s; the loop that reads commands and dispatches them is `smtp.server`'s.
"""

from __future__ import annotations

from ..rules import replies as R
from .commands import parse_mail, parse_rcpt
from .session_api import Envelope
from .session_core import SessionCore


class EnvelopeCommands(SessionCore):
    """EHLO/HELO, the TLS and Exchange verbs, MAIL, RCPT, RSET, NOOP, HELP, VRFY/EXPN, AUTH, QUIT."""

    async def cmd_EHLO(self, arg: str) -> None:
        await self.policy.ehlo(self, arg, extended=True)

    async def cmd_HELO(self, arg: str) -> None:
        await self.policy.ehlo(self, arg, extended=False)

    async def cmd_STARTTLS(self, arg: str) -> None:
        before = self.writer.get_extra_info("ssl_object")
        await self.policy.starttls(self, arg)
        if before is None and self.writer.get_extra_info("ssl_object") is not None:
            self.input.discard()  # nothing sent in the clear may count after the handshake

    async def cmd_X_ANONYMOUSTLS(self, arg: str) -> None:
        before = self.writer.get_extra_info("ssl_object")
        await self.policy.anonymous_tls(self, arg)
        if before is None and self.writer.get_extra_info("ssl_object") is not None:
            self.input.discard()

    async def cmd_X_EXPS(self, arg: str) -> None:
        await self.policy.exchange_auth(self, arg)

    async def cmd_XPROXYFROM(self, arg: str) -> None:
        await self.reply(await self.policy.xproxyfrom(self, arg))

    async def cmd_XSESSIONPARAMS(self, arg: str) -> None:
        await self.reply(await self.policy.xsessionparams(self, arg))

    # org3: shadow redundancy's verbs (rules.shadow_redundancy, engine.shadow)
    async def cmd_XSHADOWREQUEST(self, arg: str) -> None:
        await self.reply(await self.policy.xshadowrequest(self, arg))

    async def cmd_XSHADOW(self, arg: str) -> None:
        await self.reply(await self.policy.xshadow(self, arg))

    async def cmd_XQDISCARD(self, arg: str) -> None:
        await self.reply(await self.policy.xqdiscard(self, arg))

    async def cmd_MAIL(self, arg: str) -> None:
        parsed = parse_mail(arg)
        if isinstance(parsed, str):
            await self.reply(parsed)
            return
        reply = await self.policy.mail(self, parsed.address, parsed.params, parsed.size)
        if reply.startswith("250"):
            self.envelope = Envelope(mail_from=parsed.address, mail_params=parsed.params, declared_size=parsed.size)
        await self.reply(reply)

    async def cmd_RCPT(self, arg: str) -> None:
        address, refusal = parse_rcpt(arg)
        if refusal is None:
            refusal = self.policy.recipient_limit_reply(self, len(self.envelope.recipients))
        if refusal is not None:
            await self.reply(refusal)
            return
        reply = await self.policy.rcpt(self, address)
        if reply.startswith("250"):
            self.envelope.recipients.append(address)
        await self.reply(reply)

    async def cmd_RSET(self, arg: str) -> None:
        # RSET ends the mail transaction on both sides: the envelope here and the policy's state
        # (sender, recipients), so a DATA after it is a sequence error (503 5.5.2 Need mail command).
        self.policy.abort_transaction(self)
        self.envelope = Envelope()
        await self.reply(R.RESETTING)

    async def cmd_NOOP(self, arg: str) -> None:
        await self.reply(R.OK)

    async def cmd_HELP(self, arg: str) -> None:
        await self.policy.help(self, arg)

    async def cmd_VRFY(self, arg: str) -> None:
        await self.reply(R.CANNOT_VRFY)

    cmd_EXPN = cmd_VRFY

    async def cmd_AUTH(self, arg: str) -> None:
        await self.policy.auth(self, arg)

    async def cmd_QUIT(self, arg: str) -> None:
        await self.policy.quit(self)
        await self.reply(R.CLOSING)
        self.closed = True
