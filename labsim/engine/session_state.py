"""Session state of the receivers that are not on-prem Exchange (EOP's front end, an Internet MTA).

On-prem Exchange keeps `rules.receive.ReceiveState` and `smtp.policy.ExchangeSessionExtra`; EOP and
a Postfix-like host need less: who is talking, the HELO name, TLS, the transaction.
"""

from __future__ import annotations

from typing import Any


class SimpleState:
    def __init__(self, remote_ip: str) -> None:
        self.remote_ip = remote_ip
        self.helo: str | None = None
        self.tls = False
        self.mail_from: str | None = None
        self.recipients: list[str] = []
        self.attribution: Any = None  # EOP: rules.exo attribution of the connection


class SessionExtra:
    def __init__(self) -> None:
        self.peer_chain: list[Any] | None = None
        self.tls: dict[str, Any] | None = None
        self.cert: Any = None
