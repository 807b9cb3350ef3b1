"""Message content on the server side: DATA and BDAT, and the hand-over of a complete message.

`ContentCommands` is the part of the session shell (`smtp.server.ServerSession`) that reads message
content: DATA through the policy's data parser (`smtp.framing`), BDAT chunks of a size known
before they are read. What the arguments mean and whether content is acceptable is decided by
plain functions (`smtp.commands`) and the policy; this class only moves the bytes in bounded
pieces (`smtp.wire.SessionInput`) and answers. Its state is the session's (`smtp.session_core`).
"""

from __future__ import annotations

from ..rules import replies as R
from .commands import has_bare_lf, header_over, parse_bdat
from .session_api import Envelope
from .session_core import SessionCore
from .wire import READ_CHUNK


class ContentCommands(SessionCore):
    """DATA, BDAT and the hand-over of a complete message: a part of ServerSession."""

    async def cmd_DATA(self, arg: str) -> None:
        policy = self.policy
        reply = policy.data_start(self)
        await self.reply(reply)
        if not reply.startswith("354"):
            return
        self.data_started = self.cursor
        limit = policy.max_size(self)
        max_header = policy.max_header_size(self)
        parser = policy.data_parser(self)
        inp = self.input
        buf = inp.buffer
        chunks: list[bytes] = []
        too_big = header_too_big = header_checked = False
        while not parser.done:
            if not buf:
                if not await inp.fill():
                    self.closed = True
                    raise ConnectionResetError("connection lost during DATA")
                self._check_expired(data=True)
            fed = parser.feed(bytes(buf[:READ_CHUNK]))
            del buf[:fed.consumed]
            if parser.size > limit:
                too_big = True
            if max_header is not None and not header_too_big and not header_checked:
                # the header so far: all text until the blank line is seen (the check stops after it)
                header = parser.header_bytes if parser.header_bytes is not None else parser.size
                header_checked = parser.header_bytes is not None
                if header > max_header:
                    header_too_big = True
                    policy.header_too_large(self, header, max_header)
            if not (too_big or header_too_big):
                chunks.append(fed.text)
        self.touch()
        refusal = (R.HEADERS_TOO_LARGE if header_too_big else R.TOO_LARGE if too_big
                   else policy.content_reply(self, bare_lf=parser.bare_lf))
        if refusal is not None:
            policy.abort_transaction(self)
            self.envelope = Envelope()
            await self.reply(refusal)
            return
        self.envelope.data = b"".join(chunks)
        await self._deliver()

    async def cmd_BDAT(self, arg: str) -> None:
        policy = self.policy
        args = parse_bdat(arg)
        count = args.count
        if count is None:
            await self._refuse_chunk(policy.bdat_malformed_reply(self, overflow=args.overflow))
            return
        last = args.last
        at_once = policy.bdat_refusal(self, len(self.envelope.data), count)
        if at_once is not None:  # refused before a byte of it is read; the session ends
            await self._refuse_chunk(at_once)
            return
        if not self.envelope.data:
            self.data_started = self.cursor
        self.envelope.chunked = True
        reply = policy.data_start(self)
        # The chunk is judged before it is read: a refused chunk is read and dropped piecewise.
        fits = len(self.envelope.data) + count <= policy.max_size(self)
        accepted = reply.startswith("354")
        chunk = await self.input.read_exactly(count, keep=accepted and fits)
        if chunk is None:
            self.closed = True
            raise ConnectionResetError("connection lost during BDAT")
        self.touch()
        if not accepted:
            await self.reply(reply)
            return
        data = self.envelope.data + chunk
        refusal = None
        if not fits:  # MessageTooLarge; the transaction is over (a new MAIL starts again)
            refusal = policy.bdat_too_large_reply(self)
        else:
            max_header = policy.max_header_size(self)
            if max_header is not None and header_over(data, max_header):
                policy.header_too_large(self, len(data), max_header)
                refusal = R.HEADERS_TOO_LARGE
            elif last:
                refusal = policy.content_reply(self, bare_lf=has_bare_lf(data))
        if refusal is not None:
            policy.abort_transaction(self)
            self.envelope = Envelope()
            await self.reply(refusal)
            return
        self.envelope.data = data
        if not last:
            await self.reply(R.BDAT_OK)
            return
        await self._deliver()

    async def _refuse_chunk(self, reply: str) -> None:
        """A BDAT command refused before its chunk is read: the reply, then the session ends (the
        chunk's bytes would otherwise be read as commands). Exchange: BdatSmtpInCommand.Parse fails
        with disconnectClient; Postfix: 521 or skip_bdat's shutdown of the input."""
        self.policy.abort_transaction(self)
        self.envelope = Envelope()
        await self.reply(reply)
        self.closed = True
        self.disconnect_reason = "Local"

    async def _deliver(self) -> None:
        self.messages += 1
        envelope, self.envelope = self.envelope, Envelope()
        if self.stopping:
            return  # the service stopped while the message came in: not accepted, shutdown() answers 421
        self.committing = True
        try:
            reply = await self.policy.deliver(self, envelope)
            self.touch()
            await self.reply(reply)
        finally:
            self.committing = False
