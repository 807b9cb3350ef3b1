"""Service Control Manager events of the Windows System log, in wevtutil's XML and text forms.

When a service changes state the SCM (services.exe) writes event 7036 to the System log; when a
service ends badly it writes 7023 (ended with an error), 7031 (ended unexpectedly, a recovery
action follows) or 7034 (ended unexpectedly, no recovery action). These are manifest-less
*classic* events with a provider GUID: the XML shape below is copied from real 7036 records
(python-evtx and plaso test data of a Windows 7 System.evtx; docs/event-logs.md):

    <Provider Name='Service Control Manager' Guid='{555908d1-a6d7-4695-8e1e-26931d2012f4}'
     EventSourceName='Service Control Manager'/><EventID Qualifiers='16384'>7036</EventID>
    <Version>0</Version><Level>4</Level><Task>0</Task><Opcode>0</Opcode>
    <Keywords>0x8080000000000000</Keywords> ... <Channel>System</Channel> ...
    <EventData><Data Name='param1'>Background Intelligent Transfer Service</Data>
    <Data Name='param2'>running</Data><Binary>...</Binary></EventData>

The 7036 binary data is the service's key name, '/', the new state number (SERVICE_RUNNING 4,
SERVICE_STOPPED 1) and a NUL, in UTF-16LE (the real record's `QgBJAFQAUwAvADQAAAA=` is
"BITS/4\\0"); wevtutil prints binary data as upper-case hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

__all__ = [
    "SCM_EVENTS",
    "SCM_SOURCE",
    "SERVICE_DISPLAY_NAMES",
    "render_scm_text",
    "render_scm_xml",
    "failure_strings",
    "scm_message",
    "state_change_strings",
]

SCM_SOURCE = "Service Control Manager"
SCM_GUID = "{555908d1-a6d7-4695-8e1e-26931d2012f4}"  # libyal/winevt-kb Provider-Service-Control-Manager
_NS = "http://schemas.microsoft.com/win/2004/08/events/event"
_KEYWORDS = "0x8080000000000000"
_SERVICES_EXE_PID = 640  # [INFERRED] a plausible services.exe process id; real ones are 4xx-8xx
_LEVEL = {"Error": 2, "Warning": 3, "Information": 4}
_QUALIFIERS = {"Error": 49152, "Warning": 32768, "Information": 16384}

# Display names of the services the lab stops and starts (Microsoft Learn "Exchange Server
# services": Display name | Short service name).
SERVICE_DISPLAY_NAMES = {
    "MSExchangeTransport": "Microsoft Exchange Transport",
    "MSExchangeFrontEndTransport": "Microsoft Exchange Frontend Transport",
    "MSExchangeSubmission": "Microsoft Exchange Mailbox Transport Submission",
    "MSExchangeDelivery": "Microsoft Exchange Mailbox Transport Delivery",
    "MSExchangeEdgeSync": "Microsoft Exchange EdgeSync",
    "ADAM_MSExchange": "Microsoft Exchange ADAM",
}
_STATE_NUMBER = {"running": 4, "stopped": 1}  # SERVICE_STATUS dwCurrentState


@dataclass(frozen=True)
class ScmEventDef:
    level: str
    text: str  # with %1..%n (FormatMessage); %n is a line break


# Message texts as Event Viewer renders them from services.exe (public instances of each event).
SCM_EVENTS: dict[int, ScmEventDef] = {
    7036: ScmEventDef("Information", "The %1 service entered the %2 state."),
    7023: ScmEventDef("Error", "The %1 service terminated with the following error: %n%2"),
    7031: ScmEventDef("Error", "The %1 service terminated unexpectedly.  It has done this %2 time(s).  "
                               "The following corrective action will be taken in %3 milliseconds: %5."),
    7034: ScmEventDef("Error", "The %1 service terminated unexpectedly.  It has done this %2 time(s)."),
    7001: ScmEventDef("Error", "The %1 service depends on the %2 service which failed to start because of "
                               "the following error: %n%3"),
}


def failure_strings(event_id: int, raw: list[str]) -> list[str]:
    """7023/7001 insertion strings from rules.services' plan: service key names become display
    names (7023: service, error; 7001: service, dependency, error)."""
    names = 2 if event_id == 7001 else 1
    return [SERVICE_DISPLAY_NAMES.get(s, s) for s in raw[:names]] + raw[names:]


def state_change_strings(service: str, state: str) -> list[str]:
    """7036's insertion strings for a service key name and 'running'/'stopped': display name, state,
    and the binary data (key name/state number) as the last string, in hex as wevtutil prints it."""
    display = SERVICE_DISPLAY_NAMES.get(service, service)
    binary = f"{service}/{_STATE_NUMBER[state]}\x00".encode("utf-16-le").hex().upper()
    return [display, state, binary]


def _split(event_id: int, strings: list[str]) -> tuple[list[str], str | None]:
    """7036 carries binary data after its two strings; the others only strings."""
    if event_id == 7036 and len(strings) == 3:
        return strings[:2], strings[2]
    return strings, None


def scm_message(event_id: int, strings: list[str]) -> str:
    d = SCM_EVENTS[event_id]
    params, _ = _split(event_id, strings)
    text = d.text.replace("%n", "\r\n")
    for i in range(len(params), 0, -1):
        text = text.replace(f"%{i}", params[i - 1])
    return text


def _system_time(when: datetime) -> str:
    utc = (when.replace(tzinfo=UTC) if when.tzinfo is None else when).astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def render_scm_xml(event_id: int, strings: list[str], when: datetime, record_id: int, computer: str) -> str:
    """One SCM event as `wevtutil qe System /f:xml` prints it."""
    d = SCM_EVENTS[event_id]
    params, binary = _split(event_id, strings)
    data = "".join(f"<Data Name='param{i}'>{escape(s)}</Data>" for i, s in enumerate(params, 1))
    if binary is not None:
        data += f"<Binary>{binary}</Binary>"
    return (
        f"<Event xmlns='{_NS}'><System><Provider Name='{SCM_SOURCE}' Guid='{SCM_GUID}' "
        f"EventSourceName='{SCM_SOURCE}'/><EventID Qualifiers='{_QUALIFIERS[d.level]}'>{event_id}</EventID>"
        f"<Version>0</Version><Level>{_LEVEL[d.level]}</Level><Task>0</Task><Opcode>0</Opcode>"
        f"<Keywords>{_KEYWORDS}</Keywords><TimeCreated SystemTime='{_system_time(when)}'/>"
        f"<EventRecordID>{record_id}</EventRecordID><Correlation/>"
        f"<Execution ProcessID='{_SERVICES_EXE_PID}' ThreadID='0'/><Channel>System</Channel>"
        f"<Computer>{escape(computer)}</Computer><Security/></System><EventData>{data}</EventData></Event>"
    )


def render_scm_text(event_id: int, strings: list[str], when: datetime, index: int, computer: str,
                    utc_offset_minutes: int) -> str:
    """One SCM event as `wevtutil qe System /f:text` prints it (Task 0 prints as N/A [INFERRED])."""
    d = SCM_EVENTS[event_id]
    local = when + timedelta(minutes=utc_offset_minutes)
    date = local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    lines = [
        f"Event[{index}]:", "  Log Name: System", f"  Source: {SCM_SOURCE}", f"  Date: {date}",
        f"  Event ID: {event_id}", "  Task: N/A", f"  Level: {d.level}", "  Opcode: Info",
        "  Keyword: Classic", "  User: N/A", "  User Name: N/A", f"  Computer: {computer}", "  Description:",
        scm_message(event_id, strings),
    ]
    return "\r\n".join(lines) + "\r\n\r\n"
