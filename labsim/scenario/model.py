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

import re
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

# A scenario id names its output folder (labsim-out/<id>/), so it is a slug: ASCII letters, digits,
# '-', '_' and '.', starting with a letter or digit (never '.' or '..'), at most 64 characters.
SCENARIO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
INT32_MAX = 2147483647


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


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
            _address(a)
        return v

    @field_validator("sender")
    @classmethod
    def _from(cls, v: str) -> str:
        return _address(v)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not v or _CONTROL.search(v) or len(v) > 200:
            raise ValueError("a message id is 1-200 characters without control characters")
        return v

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str) -> str:
        if _CONTROL.search(v):
            raise ValueError("a subject is one line without control characters (no CR, LF or NUL)")
        return v


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A [[message]] as the loaded scenario keeps it: validated as `Message` (same checks, same
    errors with their place), then held in ~0.1 KB instead of a model's ~1 KB (a scenario of
    50,000 messages). Read like a Message (`id`, `at`, `sender`, `to`, `subject`, `body`, `size`;
    `to` is a tuple); `model()` gives the Message back."""

    id: str
    at: str
    sender: str
    to: tuple[str, ...]
    subject: str
    body: str
    size: int | None

    @classmethod
    def of(cls, m: Message) -> MessageRow:
        # Strings most messages share (times, addresses, the default body) are kept once.
        short = sys.intern
        return cls(m.id, short(m.at), short(m.sender), tuple(short(a) for a in m.to), m.subject,
                   short(m.body) if len(m.body) <= 256 else m.body, m.size)

    def model(self) -> Message:
        return Message.model_validate({"id": self.id, "at": self.at, "from": self.sender, "to": list(self.to),
                                       "subject": self.subject, "body": self.body, "size": self.size})

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return self.model().model_dump(**kwargs)


def _message_row(value: Any, handler: ValidatorFunctionWrapHandler | None) -> Message | MessageRow:
    if isinstance(value, (Message, MessageRow)):
        return value
    return MessageRow.of(Message.__pydantic_validator__.validate_python(value))


def message_row(table: Any) -> MessageRow:
    """One [[message]] table validated as a scenario validates it in its `message` list (raises
    pydantic's ValidationError): the loader's lazy path builds the list a table at a time."""
    return MessageRow.of(Message.__pydantic_validator__.validate_python(table))


# A scenario's [[message]]: validated as Message, kept as a MessageRow.
ScenarioMessage = Annotated[Message | MessageRow, WrapValidator(_message_row)]


def _address(a: str) -> str:
    """An SMTP address as a scenario gives it: local@domain, no spaces or control characters
    (they would end the SMTP command the address is sent in)."""
    if "@" not in a or _CONTROL.search(a) or " " in a or len(a) > 320:
        raise ValueError(f"{a!r} is not an e-mail address")
    return a


REALMS = ("onprem", "exo", "internet")
LOG_SERVICES = ("FrontEnd", "Hub", "Edge", "Mailbox")


class MessageExpectation(_Strict):
    id: str
    fate: Literal["delivered", "pending", "failed", "partial"] | None = None
    mailbox: str | None = None  # "realm:address", realm onprem | exo | internet
    reason_contains: str | None = None

    @field_validator("mailbox")
    @classmethod
    def _mailbox(cls, v: str | None) -> str | None:
        if v is None:
            return v
        realm, sep, address = v.partition(":")
        if not sep or realm not in REALMS or "@" not in address:
            raise ValueError(f"{v!r} is not realm:address with realm {' | '.join(REALMS)} "
                             "(e.g. onprem:raghu@cloudmonkeys.xyz)")
        return v


class LogExpectation(_Strict):
    log: str  # "<SERVER>/<FrontEnd|Hub|Edge|Mailbox>/<SmtpReceive|SmtpSend>"
    contains: str
    event: Literal["+", "-", ">", "<", "*"] | None = None
    min_count: int = Field(1, ge=0, le=INT32_MAX)
    absent: bool = False

    @field_validator("log")
    @classmethod
    def _log(cls, v: str) -> str:
        parts = v.strip("/").split("/")
        if len(parts) != 3 or parts[2] not in ("SmtpReceive", "SmtpSend"):
            raise ValueError(f"{v!r} is not SERVER/Service/SmtpReceive|SmtpSend (e.g. CMHYBD01/FrontEnd/SmtpReceive)")
        if parts[1] not in LOG_SERVICES:
            raise ValueError(f"{v!r}: the service must be one of {', '.join(LOG_SERVICES)} (it names the log folder)")
        return v.strip("/")


class EventExpectation(_Strict):
    """An Application event an on-prem server must (or, with `absent`, must not) have written:
    its id, optionally its source and a piece of its message text (engine.eventlog)."""

    server: str
    id: int = Field(ge=1, le=65535)
    source: str | None = None
    contains: str | None = None
    min_count: int = Field(1, ge=0, le=INT32_MAX)
    absent: bool = False


class TrackingExpectation(_Strict):
    """Message tracking rows that must (or, with `absent`, must not) exist: an event id, optionally
    on one server, from one source, for one scenario message, one recipient, and with a piece of
    text in any field (recipient-status, source-context, custom-data...)."""

    event_id: str
    server: str | None = None
    source: str | None = None
    message: str | None = None  # a [[message]] id
    recipient: str | None = None
    contains: str | None = None
    min_count: int = Field(1, ge=0, le=INT32_MAX)
    absent: bool = False

    @field_validator("event_id", "source")
    @classmethod
    def _upper(cls, v: str | None) -> str | None:
        return v.upper() if v else v


class Expectations(_Strict):
    message: list[MessageExpectation] = Field(default_factory=list)
    log: list[LogExpectation] = Field(default_factory=list)
    event: list[EventExpectation] = Field(default_factory=list)
    tracking: list[TrackingExpectation] = Field(default_factory=list)


# --- exercises (`labsim shell ID --exercise`; docs/shell.md) ------------------------------------
class Probe(_Strict):
    """A message the grader sends when the trainee asks for a grade; it must reach `mailbox`."""

    sender: str = Field(alias="from")
    to: list[str]
    mailbox: str  # "realm:address", as in [[expect.message]]
    subject: str = "labsim exercise probe"

    @field_validator("sender")
    @classmethod
    def _from(cls, v: str) -> str:
        return _address(v)

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a probe needs at least one recipient")
        return [_address(a) for a in v]

    @field_validator("mailbox")
    @classmethod
    def _mailbox(cls, v: str) -> str:
        realm, sep, address = v.partition(":")
        if not sep or realm not in REALMS or "@" not in address:
            raise ValueError(f"{v!r} is not realm:address with realm {' | '.join(REALMS)}")
        return v


class Requirement(_Strict):
    """A PowerShell condition over the lab (`test`, run in the trainee's shell) that must be true;
    `says` is what the grade prints when it is not (the right fix rather than a workaround)."""

    test: str = Field(min_length=1, max_length=2000)
    says: str = Field(min_length=1, max_length=500)


# A diagnosis objective (issue 13): the trainee names the cause with Submit-LabFinding and points
# at a protocol (or connectivity) log session that shows it; graded against the lab's own logs and
# network (docs/shell.md).
FindingCause = Literal["ConnectionReset", "ConnectionRefused", "ConnectionTimedOut", "SlowLink",
                       "ClientProtocolErrors", "DnsNonExistentDomain", "DnsServerFailure"]


class Finding(_Strict):
    cause: FindingCause
    log: str  # the log whose session is the evidence: "SERVER/Role/SmtpSend" as in [[expect.log]], or "SERVER/Role/Connectivity"
    matches: list[str] = Field(min_length=1)  # regexes over "event,data,context"; each must match a row of it
    link: bool = False  # the trainee must also name the link (-Link A,B); a lab network rule must fit the cause

    @field_validator("log")
    @classmethod
    def _log(cls, v: str) -> str:
        if len(v.split("/")) != 3 or not all(v.split("/")):
            raise ValueError(f"{v!r} is not SERVER/Role/SmtpSend|SmtpReceive|Connectivity")
        return v

    @field_validator("matches")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for x in v:
            try:
                re.compile(x)
            except re.error as exc:
                raise ValueError(f"{x!r} is not a regular expression: {exc}") from None
        return v


class ExerciseCheck(_Strict):
    probe: list[Probe] = Field(default_factory=list)
    wait: str = "00:30:00"  # how long (virtual) a probe may take to be delivered
    drained: bool = True  # no message left in any queue of any server after the probes
    require: list[Requirement] = Field(default_factory=list)
    finding: Finding | None = None


class Exercise(_Strict):
    objective: str = Field(min_length=1, max_length=500)
    hints: list[str] = Field(default_factory=list)
    # Timeline changes and messages at or after `fix_at` are the scenario's own fix and its proof:
    # an exercise starts without them (the trainee makes the fix).
    fix_at: str | None = None
    solution: list[str] = Field(min_length=1)  # the reference solution: shell command lines
    check: ExerciseCheck = Field(default_factory=ExerciseCheck)


class Scenario(_Strict):
    id: str
    title: str
    seed: int = Field(1, ge=0, le=2**63 - 1)
    start: str | None = None
    duration: str | None = None  # how long after the last traffic the run may go on (TimeSpan)
    training: Training
    change: list[Change] = Field(default_factory=list)
    # [builds] CMHYBD01 = "2016-early": the Exchange build a server runs - part of the world the
    # scenario starts from, not a fault (Set-LabServerBuild; docs/transport-fidelity.md §6)
    builds: dict[str, str] = Field(default_factory=dict)
    message: list[ScenarioMessage] = Field(default_factory=list)  # kept compact: MessageRow
    expect: Expectations = Field(default_factory=Expectations)
    exercise: Exercise | None = None
    # org (issue 12): the world the scenario starts from; absent = the default organisation.
    # Validated by topology.org_file when the scenario loads.
    organization: dict[str, Any] | None = None

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        if _CONTROL.search(v) or len(v) > 200:
            raise ValueError("a title is one line of at most 200 characters without control characters")
        return v

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SCENARIO_ID.fullmatch(v):
            raise ValueError(f"{v[:80]!r} is not a scenario id: use 1-64 ASCII letters, digits, '-', '_' "
                             "or '.', starting with a letter or digit (it names the output folder)")
        return v

    def reference_errors(self) -> list[tuple[str, str]]:
        """(key, problem) for message ids used twice or expected but never sent.

        Checked by the loader rather than by a model validator, so the error can name the exact
        key (`expect.message[2].id`) instead of the whole file.
        """
        errors: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, m in enumerate(self.message):
            if m.id in seen:
                errors.append((f"message[{i}].id", f"message id {m.id!r} is used twice"))
            seen.add(m.id)
        for i, e in enumerate(self.expect.message):
            if e.id not in seen:
                known = ", ".join(m.id for m in self.message) or "none"
                errors.append((f"expect.message[{i}].id",
                               f"refers to unknown message id {e.id!r} (messages: {known})"))
        for i, t in enumerate(self.expect.tracking):
            if t.message is not None and t.message not in seen:
                known = ", ".join(m.id for m in self.message) or "none"
                errors.append((f"expect.tracking[{i}].message",
                               f"refers to unknown message id {t.message!r} (messages: {known})"))
        return errors
