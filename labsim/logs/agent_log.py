"""The transport agent log (AgentLog): what the anti-spam agents decided, one row per action.

Format (Exchange's `AgentLog` class in Microsoft.Exchange.Transport.Agent.AntiSpam.Common,
decompiled; a real 2016 file `AgentLog20220913-1.LOG`, shared reference samples):

    #Software: Microsoft Exchange Server
    #Version: 15.0.0.0
    #Log-type: Agent Log
    #Date: 2022-09-13T14:38:59.177Z
    #Fields: Timestamp,SessionId,LocalEndpoint,RemoteEndpoint,EnteredOrgFromIP,MessageId,P1FromAddress,
             P2FromAddresses,Recipient,NumRecipients,Agent,Event,Action,SmtpResponse,Reason,ReasonData,
             Diagnostics,NetworkMsgID,TenantID,Directionality

Files are named by UTC *day* (`AgentLogyyyyMMdd-n.LOG`: the real sample; the class writes through
Exchange's plain `Log`, not the hourly `AsyncLog` of the protocol logs). Folders (Microsoft Learn
"Transport logs"): `TransportRoles\\Logs\\Hub\\AgentLog`, `...\\FrontEnd\\AgentLog`, `...\\Edge\\AgentLog`.

A row (`LogAgentAction`): SessionId as X16; the endpoints as ip:port; EnteredOrgFromIP the remote
address of an external session; MessageId/P2FromAddresses from the message (empty before DATA);
P1FromAddress the MAIL FROM; for an RCPT event Recipient = that recipient and NumRecipients 1;
Agent, Event (the agent's event topic, e.g. OnRcptCommand), Action (RejectCommand, ...);
SmtpResponse the reply; Reason / ReasonData / Diagnostics from the agent's LogEntry (cut at 256
characters, line breaks as one space); Directionality the mail item's (Undefined when unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .csvfmt import join
from .logfile import DEFAULT_MAX_FILE_BYTES, LogStream

__all__ = ["AGENT_LOG_FIELDS", "AGENT_LOG_TYPE", "AgentLog", "AgentAction", "agent_log_folder"]

AGENT_LOG_FIELDS = ("Timestamp", "SessionId", "LocalEndpoint", "RemoteEndpoint", "EnteredOrgFromIP", "MessageId",
                    "P1FromAddress", "P2FromAddresses", "Recipient", "NumRecipients", "Agent", "Event", "Action",
                    "SmtpResponse", "Reason", "ReasonData", "Diagnostics", "NetworkMsgID", "TenantID",
                    "Directionality")
AGENT_LOG_TYPE = "Agent Log"
AGENT_LOG_PREFIX = "AgentLog"
AGENT_LOG_VERSION = "15.0.0.0"  # [REAL: the 2016 sample]
_MAX_CUSTOM = 256


def agent_log_folder(server_name: str, service: str) -> Path:
    if service not in ("Hub", "FrontEnd", "Edge"):
        raise ValueError(f"no agent log for service {service!r}")
    return Path(server_name, "TransportRoles", "Logs", service, "AgentLog")


def _clean(value: str, limit: int | None = _MAX_CUSTOM) -> str:
    """Line breaks become one space (ReplaceNewLinesWithSpace); custom strings are cut at 256."""
    out: list[str] = []
    previous_break = False
    for ch in value:
        if ch in "\r\n":
            if not previous_break:
                out.append(" ")
            previous_break = True
        else:
            out.append(ch)
            previous_break = False
    text = "".join(out)
    return text[:limit] if limit is not None else text


@dataclass(frozen=True)
class AgentAction:
    """One agent decision, in the agent log's own terms."""

    session_id: int
    local_endpoint: str
    remote_endpoint: str
    entered_org_from_ip: str
    agent: str
    event: str
    action: str
    smtp_response: str = ""
    reason: str = ""
    reason_data: str = ""
    diagnostics: str = ""
    p1_from: str = ""
    recipients: tuple[str, ...] = ()
    message_id: str = ""
    p2_from: str = ""
    network_message_id: str = ""
    tenant_id: str = ""
    directionality: str = "Undefined"

    def values(self) -> list[str]:
        """The row's values after Timestamp."""
        return [f"{self.session_id:016X}", self.local_endpoint, self.remote_endpoint, self.entered_org_from_ip,
                self.message_id, _clean(self.p1_from, None), _clean(self.p2_from, None),
                ";".join(_clean(r, None) for r in self.recipients), str(len(self.recipients)), self.agent,
                self.event, self.action, _clean(self.smtp_response), _clean(self.reason), _clean(self.reason_data),
                _clean(self.diagnostics), self.network_message_id, self.tenant_id, self.directionality]


class AgentLog:
    """One service's agent log folder."""

    __slots__ = ("stream", "_seq")

    def __init__(self, root: Path, folder: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        self.stream = LogStream(Path(root) / folder, AGENT_LOG_PREFIX, AGENT_LOG_TYPE, AGENT_LOG_FIELDS,
                                AGENT_LOG_VERSION, max_file_bytes=max_file_bytes, daily=True)
        self._seq = 0

    def add(self, when: datetime, action: AgentAction) -> None:
        self._seq += 1
        self.stream.add_joined(when, (action.session_id, self._seq), join(action.values()))

    def flush(self, before: str | None = None) -> list[Path]:
        return self.stream.flush(before)
