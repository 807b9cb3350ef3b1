"""The scenario file's schema (TOML), validated strictly so a typo fails on load.

```toml
id = "hybrid-baseline"
title = "..."
seed = 1
start = "2026-05-01T06:00:00Z"          # optional; the default organisation's start otherwise

[training]
symptom = "..."; evidence = "..."; root_cause = "..."; fix = "..."

[[change]]                               # applied before the lab starts (or at `at`)
cmdlet = "Set-ReceiveConnector"
Identity = 'CMHYBD01\\Default Frontend CMHYBD01'
ProtocolLoggingLevel = "Verbose"

[[message]]                              # traffic
id = "exo-to-onprem"; at = "+00:00:05"; from = "ramki@cloudmonkeys.xyz"; to = ["raghu@cloudmonkeys.xyz"]
subject = "..."

[[expect.message]]
id = "exo-to-onprem"; fate = "delivered"; mailbox = "onprem:raghu@cloudmonkeys.xyz"

[[expect.log]]
log = "CMHYBD01/FrontEnd/SmtpReceive"; contains = "Queued mail for delivery"
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Training(_Strict):
    symptom: str
    evidence: str
    root_cause: str
    fix: str


class Change(BaseModel):
    """A cmdlet and its parameters (any other keys); `at` makes it a timeline change."""

    model_config = ConfigDict(extra="allow")
    cmdlet: str
    at: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Message(_Strict):
    id: str
    at: str = "+00:00:00"
    sender: str = Field(alias="from")
    to: list[str]
    subject: str = "labsim test message"
    body: str = "This message was sent by labsim.\n"
    size: int | None = Field(None, ge=0, le=150 * 1024 * 1024)

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a message needs at least one recipient")
        for a in v:
            if "@" not in a:
                raise ValueError(f"{a!r} is not an e-mail address")
        return v


class MessageExpectation(_Strict):
    id: str
    fate: Literal["delivered", "pending", "failed", "partial"] | None = None
    mailbox: str | None = None  # "realm:address", realm onprem | exo | internet
    reason_contains: str | None = None


class LogExpectation(_Strict):
    log: str  # "<SERVER>/<FrontEnd|Hub|Edge|Mailbox>/<SmtpReceive|SmtpSend>"
    contains: str
    event: Literal["+", "-", ">", "<", "*"] | None = None
    min_count: int = Field(1, ge=0)
    absent: bool = False

    @field_validator("log")
    @classmethod
    def _log(cls, v: str) -> str:
        parts = v.strip("/").split("/")
        if len(parts) != 3 or parts[2] not in ("SmtpReceive", "SmtpSend"):
            raise ValueError(f"{v!r} is not SERVER/Service/SmtpReceive|SmtpSend (e.g. CMHYBD01/FrontEnd/SmtpReceive)")
        return v.strip("/")


class Expectations(_Strict):
    message: list[MessageExpectation] = Field(default_factory=list)
    log: list[LogExpectation] = Field(default_factory=list)


class Scenario(_Strict):
    id: str
    title: str
    seed: int = 1
    start: str | None = None
    duration: str | None = None  # how long after the last traffic the run may go on (TimeSpan)
    training: Training
    change: list[Change] = Field(default_factory=list)
    message: list[Message] = Field(default_factory=list)
    expect: Expectations = Field(default_factory=Expectations)

    @model_validator(mode="after")
    def _unique(self) -> "Scenario":
        ids = [m.id for m in self.message]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"message id(s) used twice: {', '.join(sorted(dup))}")
        for e in self.expect.message:
            if e.id not in ids:
                raise ValueError(f"expect.message refers to unknown message id {e.id!r}")
        return self
