"""The Windows Application event log of each on-prem server, as `wevtutil qe Application` prints it.

Exchange's transport services write *classic* events (ReportEvent with a message DLL): the XML of
such an event has a Provider without a GUID, `EventID Qualifiers='…'` (the high word of the
32-bit event id: 0xC004 = 49156 for an Error of facility 4, 0x8004 = 32772 for a Warning,
0x4004 = 16388 for Information), Task = the category number, Keywords 0x80000000000000
("Classic") and the insertion strings as unnamed `<Data>` elements. `/f:xml` does not include the
message text, so the lab writes two files per server, both in wevtutil's own forms:

- `<SERVER>/EventLog/Application.xml`  - `wevtutil qe Application /f:xml` (one <Event> per line)
- `<SERVER>/EventLog/Application.txt`  - `wevtutil qe Application /f:text` (with Description)
- `<SERVER>/EventLog/Application.evtx` - the same records in the binary format (logs.evtx)
- `System.xml` / `System.txt` / `System.evtx` - the System log: Service Control Manager events (logs.scm)

Sources (docs/tls-and-certificates.md §Events): a real MSExchangeTransport 1035 event in
wevtutil XML (`Qualifiers='32772'`, `Task>1<` = SmtpReceive), Windows Server 2016+ classic events
(`Version`, `Opcode`, `Correlation`, `Execution` elements, 7-digit SystemTime), wevtutil /f:text
captures, and the Exchange 2010 event reference for the texts (transport-behavior.md §5).
Texts not found in any public source are None ([GAP], docs/event-logs.md §4): the description is
then what is known of the event, its insertion strings one per line in their order (the data the
event carries, as `EventDef.fields` names them), never an invented sentence and never Event Viewer's
"description ... cannot be found" placeholder: on the server the message DLL that holds the text is
installed, so no real Exchange event renders that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from xml.sax.saxutils import escape

from ..logs.evtx import EvtxLog
from ..logs.scm import SCM_SOURCE, render_scm_text, render_scm_xml

if TYPE_CHECKING:  # pragma: no cover
    from ..ids import IdSource
    from .events import LabEvent


class EventLogLab(Protocol):
    """What the writer asks of the lab: its output folder, its seeded ids and its on-prem servers
    (`servers[name].model` gives the FQDN and the UTC offset)."""

    out: Path

    @property
    def servers(self) -> Any: ...

    def ids_for(self, owner: str) -> IdSource: ...

__all__ = ["EventDef", "EVENTS", "CATEGORIES", "render_xml", "render_text", "message_text",
           "EventLogWriter", "event_log_folder"]

# Category names in category-number order, 1-based (transport-behavior.md §5 [V-code]).
CATEGORIES = (
    "SmtpReceive", "SmtpSend", "Dsn", "Routing", "Logging", "Components", "RemoteDelivery", "Pickup",
    "Categorizer", "PoisonMessage", "MessageSecurity", "TransportService", "Exch50", "Process",
    "ResourceManager", "Configuration", "Storage", "Agents", "Transport_Address_Book", "Orar", "Unused",
    "ShadowRedundancy", "Approval", "TransportSafetyNet", "TransportTenantAttribution",
)
_LEVEL = {"Error": 2, "Warning": 3, "Information": 4}
_QUALIFIERS = {"Error": 0xC004, "Warning": 0x8004, "Information": 0x4004}
_NS = "http://schemas.microsoft.com/win/2004/08/events/event"
CHANNELS = ("Application", "System")  # the logs each server keeps (System: logs.scm)


@dataclass(frozen=True)
class EventDef:
    symbolic: str
    category: str
    level: str
    text: str | None  # with %1..%n; None when no public source gives it ([GAP])
    fields: tuple[str, ...] = ()  # what %1..%n hold, for an event whose text is not public


# One table of event texts (Exchange 2010 event reference on TechNet; real instances where quoted).
EVENTS: dict[int, EventDef] = {
    11022: EventDef(
        "TlsDomainCapabilitiesCertificateValidationFailure", "MessageSecurity", "Error",
        "Failed to confirm domain capabilities '%1' on connector '%2' because validation of the Transport "
        "Layer Security (TLS) certificate failed with status '%3'. Contact the administrator of '%4' to "
        "resolve the problem, or remove the domain from the TlsDomainCapabilities list of the Receive "
        "connector."),
    12014: EventDef(
        "CannotLoadSTARTTLSCertificateFromStore", "TransportService", "Error",
        "Microsoft Exchange could not find a certificate that contains the domain name %1 in the personal "
        "store on the local computer. Therefore, it is unable to support the STARTTLS SMTP verb for the "
        "connector %2 with a FQDN parameter of %3. If the connector's FQDN is not specified, the computer's "
        "FQDN is used. Verify the connector configuration and the installed certificates to make sure that "
        "there is a certificate with a domain name for that FQDN. If this certificate exists, run "
        "Enable-ExchangeCertificate -Services SMTP to make sure that the Microsoft Exchange Transport "
        "service has access to the certificate key."),
    12013: EventDef(
        "CannotLoadInternalTransportCertificateFromStore", "TransportService", "Error",
        "Microsoft Exchange could not load the certificate with thumbprint of %1 from the personal store on "
        "the local computer. This certificate was configured for authentication with other Exchange "
        "servers. Mail flow to other Exchange servers could be affected by this error. If the certificate "
        "with this thumbprint still exists in the personal store, run Enable-ExchangeCertificate %1 "
        "-Services SMTP to resolve the issue. If the certificate does not exist in the personal store, "
        "restore it from backup by using the Import-ExchangeCertificate cmdlet, or create a new "
        "certificate for the FQDN or the server enabled for SMTP by running the following command: "
        "New-ExchangeCertificate -DomainName serverfqdn -Services SMTP."),
    12016: EventDef(
        "STARTTLSCertificateExpired", "TransportService", "Error",
        "There is no valid SMTP Transport Layer Security (TLS) certificate for the FQDN of %1. The existing "
        "certificate for that FQDN has expired. The continued use of that FQDN will cause mail flow "
        "problems. A new certificate that contains the FQDN of %1 should be installed on this server as "
        "soon as possible. You can create a new certificate by using the New-ExchangeCertificate task."),
    12017: EventDef(
        "InternalTransportCertificateExpiresSoon", "TransportService", "Error",
        "An internal transport certificate will expire soon. Thumbprint:%1, hours remaining: %2"),
    12018: EventDef(
        "STARTTLSCertificateExpiresSoon", "TransportService", "Error",
        "The STARTTLS certificate will expire soon: subject: %1, thumbprint: %2, hours remaining: %3. Run "
        "the New-ExchangeCertificate cmdlet to create a new certificate."),
    12019: EventDef(
        "RemoteInternalTransportCertificateExpired", "TransportService", "Error",
        "The remote internal transport certificate expired. Certificate subject: %1."),
    2015: EventDef(
        "SmtpSendTLSRequiredFailed", "SmtpSend", "Error",
        "Send connector %1 couldn't connect to remote domain %2. The send connector requires Transport Layer "
        "Security (TLS) authentication, but is unable to establish TLS with the receiving server for the "
        "remote domain. Check this connector's authentication setting and the EHLO response from the "
        "remote server %3."),
    2017: EventDef(
        "SmtpSendOutboundAuthenticationFailed", "SmtpSend", "Error",
        "Outbound authentication failed with error %1 for Send connector %2. The authentication mechanism "
        "is %3. The target is %4."),
    # [GAP] the text of 2022 is in Exchange's message DLL only (docs/event-logs.md §4); its tuple
    # (0xC00407E6, SmtpSend, Error) and its insertion strings are from the decompiled code
    2022: EventDef("SmtpSendOutboundAtTLSAuthLevelFailed", "SmtpSend", "Error", None,
                   ("TLS certificate validation status", "Send connector", "TlsAuthLevel", "next hop domain")),
    1035: EventDef(
        "SmtpReceiveAuthenticationFailed", "SmtpReceive", "Warning",
        "Inbound authentication failed with error %1 for Receive connector %2. The authentication mechanism "
        "is %3. The source IP address of the client who tried to authenticate to Microsoft Exchange is "
        "[%4]."),
}

def _definition(event_id: int) -> EventDef:
    try:
        return EVENTS[event_id]
    except KeyError:
        raise KeyError(f"event {event_id} is not in the event table (engine/eventlog.py EVENTS)") from None


def message_text(event_id: int, strings: list[str], source: str = "MSExchangeTransport") -> str:
    """FormatMessage: %1..%n replaced by the insertion strings (highest numbers first). An event
    whose text is not public ([GAP]) renders as its insertion strings, one per line: what is known,
    nothing invented (module docstring). `source` is kept for callers: classic texts do not name it."""
    d = _definition(event_id)
    if d.text is None:
        return "\r\n".join(strings)
    text = d.text
    for i in range(len(strings), 0, -1):
        text = text.replace(f"%{i}", strings[i - 1])
    return text


def _system_time(when: datetime) -> str:
    """`2026-05-01T06:00:05.2120000Z`: UTC with 7 fractional digits (Windows Server 2016+)."""
    utc = (when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when).astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def render_xml(ev: "LabEvent", record_id: int, computer: str) -> str:
    """One event as `wevtutil qe /f:xml` prints it (no message text: that is /f:RenderedXml)."""
    d = _definition(ev.event_id)
    task = CATEGORIES.index(d.category) + 1
    data = "".join(f"<Data>{escape(s)}</Data>" for s in ev.insertion_strings)
    return (
        f"<Event xmlns='{_NS}'><System><Provider Name='{escape(ev.source, {chr(39): '&apos;'})}'/>"
        f"<EventID Qualifiers='{_QUALIFIERS[d.level]}'>{ev.event_id}</EventID><Version>0</Version>"
        f"<Level>{_LEVEL[d.level]}</Level><Task>{task}</Task><Opcode>0</Opcode>"
        f"<Keywords>0x80000000000000</Keywords><TimeCreated SystemTime='{_system_time(ev.time)}'/>"
        f"<EventRecordID>{record_id}</EventRecordID><Correlation/><Execution ProcessID='0' ThreadID='0'/>"
        f"<Channel>Application</Channel><Computer>{escape(computer)}</Computer><Security/></System>"
        f"<EventData>{data}</EventData></Event>"
    )


def render_text(ev: "LabEvent", index: int, computer: str, utc_offset_minutes: int) -> str:
    """One event as `wevtutil qe /f:text` prints it: local time with milliseconds, then Description."""
    d = _definition(ev.event_id)
    local = ev.time + timedelta(minutes=utc_offset_minutes)
    date = local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    lines = [
        f"Event[{index}]:", "  Log Name: Application", f"  Source: {ev.source}", f"  Date: {date}",
        f"  Event ID: {ev.event_id}", f"  Task: {d.category}", f"  Level: {d.level}", "  Opcode: Info",
        "  Keyword: Classic", "  User: N/A", "  User Name: N/A", f"  Computer: {computer}", "  Description:",
        message_text(ev.event_id, ev.insertion_strings, ev.source),
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def event_log_folder(out: Path, server: str) -> Path:
    return out / server / "EventLog"


def computer_name(server_name: str, fqdn: str) -> str:
    """Windows prints the host name as set (upper case for these servers) and the DNS suffix."""
    _, _, suffix = fqdn.partition(".")
    return f"{server_name.upper()}.{suffix}" if suffix else server_name.upper()


class EventLogWriter:
    """Every on-prem server's Application log (both forms), appended as the events are raised.

    Events come in virtual-time order (the clock never runs backwards), which is the order
    wevtutil prints them, oldest first; numbering (`Event[n]`, EventRecordID from a seeded start)
    runs per server. Rendered events wait in a small buffer until `flush()` (the lab's evidence
    tick, engine/evidence.py) appends them; `close()` writes the rest and gives every server its
    two files, empty when it raised nothing. An event earlier than the last one of its server
    would break wevtutil's order: it is counted in `out_of_order` (and still written).
    """

    def __init__(self, rt: EventLogLab) -> None:
        self.rt = rt
        self._next: dict[tuple[str, str], int] = {}  # (server, channel) -> index of its next event
        self._first: dict[tuple[str, str], int] = {}  # (server, channel) -> EventRecordID of its first event
        self._last: dict[str, datetime] = {}
        self._pending: dict[tuple[str, str], tuple[list[str], list[str]]] = {}  # not yet written
        self._started: set[tuple[str, str]] = set()  # logs whose files this writer has created
        self._evtx: dict[tuple[str, str], EvtxLog] = {}  # the binary .evtx of each log (logs.evtx)
        self.out_of_order = 0

    def add(self, ev: "LabEvent") -> None:
        srv = self.rt.servers.get(ev.server)
        if srv is None:
            return  # only on-prem servers keep an Application log in the output tree
        name = ev.server
        key = (name, "System" if ev.source == SCM_SOURCE else "Application")
        i = self._next.get(key, 0)
        self._next[key] = i + 1
        if i == 0:
            seed = f"{name}/eventlog" if key[1] == "Application" else f"{name}/eventlog/{key[1]}"
            self._first[key] = self.rt.ids_for(seed).randint(20000, 900000)
        if name in self._last and ev.time < self._last[name]:
            self.out_of_order += 1
        self._last[name] = ev.time
        computer = computer_name(name, srv.model.fqdn)
        xml, text = self._pending.setdefault(key, ([], []))
        if key[1] == "System":
            line = render_scm_xml(ev.event_id, ev.insertion_strings, ev.time, self._first[key] + i, computer)
            text.append(render_scm_text(ev.event_id, ev.insertion_strings, ev.time, i, computer,
                                        srv.model.utc_offset_minutes))
        else:
            line = render_xml(ev, self._first[key] + i, computer)
            text.append(render_text(ev, i, computer, srv.model.utc_offset_minutes))
        xml.append(line + "\r\n")
        self._evtx.setdefault(key, EvtxLog()).add(line)

    def flush(self) -> list[Path]:
        written: list[Path] = []
        for key in sorted(self._pending):
            xml, text = self._pending[key]
            written += self._append(key, "".join(xml), "".join(text))
        self._pending.clear()
        return written

    def close(self) -> list[Path]:
        """Write what is buffered, and the files of logs that hold nothing; returns every file."""
        self.flush()
        written: list[Path] = []
        for name in sorted(self.rt.servers):
            for channel in CHANNELS:
                key = (name, channel)
                written += self._append(key, "", "") if key not in self._started else self._paths(key)
        return written

    def _paths(self, key: tuple[str, str]) -> list[Path]:
        folder = event_log_folder(self.rt.out, key[0])
        return [folder / f"{key[1]}.xml", folder / f"{key[1]}.txt", folder / f"{key[1]}.evtx"]

    def _append(self, key: tuple[str, str], xml: str, text: str) -> list[Path]:
        paths = self._paths(key)
        mode = "ab" if key in self._started else "wb"  # a new run's first write replaces the file
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        for path, body in zip(paths, (xml, text)):
            with open(path, mode) as fh:
                fh.write(body.encode("utf-8"))
        # .evtx: header and chunks are rewritten as they fill (the file is the log's whole state)
        paths[2].write_bytes(self._evtx.get(key, EvtxLog()).to_bytes())
        self._started.add(key)
        return paths


def events_of(rt: Any, server: str, event_id: int | None = None) -> list[Any]:
    """The events a server raised (for tests and validation output)."""
    return [e for e in rt.events.events if e.server == server and (event_id is None or e.event_id == event_id)]


def read_text_log(path: Path) -> list[dict[str, str]]:
    """Parse an Application.txt written above (wevtutil /f:text) back into events: the header
    fields by name plus `Description` (the message text). Missing file: no events."""
    if not path.is_file():
        return []
    events: list[dict[str, str]] = []
    for block in path.read_bytes().decode("utf-8").split("\r\n\r\nEvent["):
        head, sep, description = block.partition("\r\n  Description:\r\n")
        if not sep:
            continue
        fields: dict[str, str] = {}
        for line in head.split("\r\n")[1:]:
            key, _, value = line.strip().partition(": ")
            fields[key] = value
        fields["Description"] = description.rstrip("\r\n")
        events.append(fields)
    return events
