"""The transport connectivity log (CONNECTLOG): every outbound connection's DNS lookup, connect,
failure and end, one file set per transport service (docs/transport-logs.md §1).

Format (Exchange's own `ConnectionLog` class, decompiled; Microsoft Learn "Connectivity logging"):

    #Software: Microsoft Exchange Server
    #Version: 15.0.0.0
    #Log-type: Transport Connectivity Log
    #Date: ...
    #Fields: date-time,session,source,Destination,direction,description

`session` is the connection's session id as 16 upper-case hex digits (the id of the SMTP Send
protocol log session; Learn's "GUID" is wrong for SMTP rows), `source` is `SMTP`, `direction` is
`+` (start), `>` (a step of an existing connection), `*` (information, failover) or `-` (end).
The descriptions are the class's format strings, one function per row kind below.

`ConnectionTrace` is what one outbound connection holds (built by the server that opens it,
called by smtp/client.Connection at each decision): it numbers its rows and stamps them with the
lab's virtual clock, so concurrent connections interleave by (time, session, sequence) exactly as
the protocol logs do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from .csvfmt import join
from .logfile import DEFAULT_MAX_FILE_BYTES, LogStream

__all__ = ["CONNECTIVITY_FIELDS", "CONNECTIVITY_LOG_TYPE", "ConnectivityLog", "ConnectionTrace",
           "connectivity_log_folder", "start_description", "resolved_description", "failed_description",
           "stop_description", "failover_description", "resolution_failed_description", "SOCKET_ERRORS",
           "proxy_start_description", "INBOUND_PROXY_INTERNAL", "SUBMISSION_PROXY", "mapi_submission_row",
           "mapi_submission_stop_description"]

CONNECTIVITY_FIELDS = ("date-time", "session", "source", "Destination", "direction", "description")
CONNECTIVITY_LOG_TYPE = "Transport Connectivity Log"
CONNECTIVITY_PREFIX = "CONNECTLOG"
CONNECTIVITY_VERSION = "15.0.0.0"  # the assembly version, as the protocol logs (Learn: "15.0.0.0")
# Windows socket errors as .NET names them (SocketError enum) with their WSA codes.
SOCKET_ERRORS = {"connect_refused": ("ConnectionRefused", 10061), "connect_timeout": ("TimedOut", 10060)}
# SessionSetupFailureReason of a failover, by the kind of the failed attempt (rules.outbound.AttemptFailure)
FAILOVER_REASONS = {"connect_refused": "ConnectionFailure", "connect_timeout": "ConnectionFailure",
                    "socket": "SocketError"}  # anything else (TLS, certificate, a reply): ProtocolError
_MAX_RESOLVED = 256  # the resolved-hosts text is cut at 256 characters, ending in "..."
# Next hops of proxy connections: NextHopSolutionKey(NextHopType.Empty = DeliveryType.Undefined,
# domain, Guid.Empty) [V-CL: InboundProxyLayer's ctor, SmtpMailItemSender.NextHopDomain]
INBOUND_PROXY_INTERNAL = "InternalProxy"  # Front End -> Transport ("ExternalProxy" when not internal)
SUBMISSION_PROXY = "MailboxTransportSubmissionInternalProxy"  # Mailbox Transport Submission -> Transport
_EMPTY_GUID = "00000000-0000-0000-0000-000000000000"


def connectivity_log_folder(server_name: str, service: str) -> Path:
    """`<SERVER>/TransportRoles/Logs/<Hub|FrontEnd|Edge>/Connectivity` (Microsoft Learn "Transport logs");
    the Mailbox Transport services use `Mailbox/Connectivity/Delivery|Submission`."""
    base = Path(server_name, "TransportRoles", "Logs")
    if service in ("Hub", "FrontEnd", "Edge"):
        return base / service / "Connectivity"
    if service == "MailboxDelivery":
        return base / "Mailbox" / "Connectivity" / "Delivery"
    if service == "MailboxSubmission":
        return base / "Mailbox" / "Connectivity" / "Submission"
    raise ValueError(f"no connectivity log for service {service!r}")


# --- the descriptions (ConnectionLog's format strings) ---------------------------------------------
def start_description(delivery_type: str, connector_guid: str, total: int, active: int, retry: int,
                      message: str = "") -> str:
    """`+`: "{NextHopType} {NextHopConnector};QueueLength={counts}. {message}", counts
    "TQ={total};" then "AN={n};" / "RN={n};" for the Normal-priority active and retry messages
    (each only when not zero)."""
    counts = f"TQ={total};" + (f"AN={active};" if active else "") + (f"RN={retry};" if retry else "")
    return f"{delivery_type} {connector_guid};QueueLength={counts}. {message}"


def proxy_start_description(context: str | None) -> str:
    """`+` of a proxy connection (SmtpOutConnection.ConnectToPerMessageProxyDestinations): the start
    format with NextHopType.Empty ("Undefined"), Guid.Empty and no per-priority counts
    ("<no priority counts>"), then the connection's context string (none for a submission)."""
    return f"Undefined {_EMPTY_GUID};QueueLength=<no priority counts>. {context or ''}"


def resolved_description(hosts: Sequence[tuple[str, Sequence[str]]], *, outbound_proxy: bool = False) -> str:
    """`>` after DNS: "host1[ip, ip], host2[ip]" (cut at 256 characters with "...")."""
    text = "Outbound proxy via " if outbound_proxy else ""
    for i, (name, ips) in enumerate(hosts):
        text += (", " if i else "") + f"{name}[{', '.join(ips)}]"
        if len(text) > _MAX_RESOLVED:
            return text[:_MAX_RESOLVED - 3] + "..."
    return text


def resolution_failed_description(reason: str, reporting_server: str, diagnostic: str = "") -> str:
    """`>` when the lookup fails: "{DnsStatus} reported by {server}. {diagnostic info}"."""
    return f"{reason} reported by {reporting_server}. {diagnostic}"


def failed_description(ip: str, port: int, kind: str) -> str:
    """`>` when the TCP connect fails: "Failed connection to ip:port (SocketError:code as X8)"."""
    name, code = SOCKET_ERRORS[kind]
    return f"Failed connection to {ip}:{port} ({name}:{code:08X})"


def failover_description(previous_session: int, reason: str) -> str:
    """`*` when the connection moves to the next target under a new session id."""
    return f"Session Failover; previous session id = {previous_session:016X}; reason = {reason}"


def stop_description(messages: int, nbytes: int, description: str | None = None) -> str:
    """`-`: "Messages: {n} Bytes: {b}" and " ({description})" when there is one."""
    text = f"Messages: {messages} Bytes: {nbytes}"
    return text + f" ({description})" if description else text


def store_delivery(log: "ConnectivityLog", at: datetime, session: int, database: str, mailbox_server: str,
                   nbytes: int, recipients: int) -> None:
    """Mailbox Transport Delivery's store delivery of one mail item (source `MapiDelivery`,
    Destination the mailbox database's name; StoreDriverDelivery.DeliverMailItem [V-CL]): `+`
    "Delivery;MailboxServer={fqdn};Database={db}", `>` "Starting delivery", `-` "Messages: 1
    Bytes: {MIME size, 0 when no recipient got it} Recipients: {recipients delivered}"."""
    rows = (("+", f"Delivery;MailboxServer={mailbox_server};Database={database}"), (">", "Starting delivery"),
            ("-", f"Messages: 1 Bytes: {nbytes} Recipients: {recipients}"))
    for seq, (direction, description) in enumerate(rows):
        log.stream.add_joined(at, (session, seq),
                              join((f"{session:016X}", "MapiDelivery", database, direction, description)))


def mapi_submission_row(log: ConnectivityLog, at: datetime, session: int, seq: int, mdb: str, direction: str,
                        description: str) -> None:
    """One row of a Mailbox Transport Submission store connection (ConnectionLog
    .MapiSubmissionConnectionLog): source `MapiSubmission`, Destination the mailbox database (its
    GUID: `MapiSubmissionInfo.MdbGuid.ToString()`)."""
    log.stream.add_joined(at, (session, seq), join((f"{session:016X}", "MapiSubmission", mdb, direction, description)))


def mapi_submission_stop_description(submissions: int, nbytes: int, recipients: int, failures: int,
                                     reached_limit: bool, idle: bool) -> str:
    """`-` of a store submission connection (MapiSubmissionConnectionStop; the caller passes
    successful submissions as Regular and 0 as Shadow; .NET prints booleans True/False)."""
    return (f"RegularSubmissions: {submissions} ShadowSubmissions: 0 Bytes: {nbytes} Recipients: {recipients} "
            f"Failures: {failures} ReachedLimit: {reached_limit} Idle: {idle}")


class ConnectivityLog:
    """One service's connectivity log folder (CONNECTLOGyyyyMMddHH-n.LOG, like the protocol logs)."""

    __slots__ = ("stream",)

    def __init__(self, root: Path, folder: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        self.stream = LogStream(Path(root) / folder, CONNECTIVITY_PREFIX, CONNECTIVITY_LOG_TYPE, CONNECTIVITY_FIELDS,
                                CONNECTIVITY_VERSION, max_file_bytes=max_file_bytes)

    def flush(self, before: str | None = None) -> list[Path]:
        return self.stream.flush(before)


class ConnectionTrace:
    """The connectivity-log rows of one outbound connection (all its targets and sessions).

    `destination` is the next hop (the queue's NextHopDomain), `start` the `+` row's description,
    `resolved` the hosts and addresses DNS gave (None when the targets were IP literals). The
    first session writes `+` and the resolution; each later one a failover row; `stop()` writes
    the `-` row once."""

    __slots__ = ("_stream", "_clock", "destination", "_start", "_resolved", "_session", "_seq",
                 "messages", "bytes", "_stopped")

    def __init__(self, log: ConnectivityLog, clock: Callable[[], datetime], destination: str, start: str,
                 resolved: Sequence[tuple[str, Sequence[str]]] | None = None) -> None:
        self._stream = log.stream
        self._clock = clock
        self.destination = destination
        self._start = start
        self._resolved = resolved
        self._session: int | None = None
        self._seq = 0
        self.messages = 0
        self.bytes = 0
        self._stopped = False

    @property
    def session(self) -> int | None:
        return self._session

    def _row(self, session: int, destination: str, direction: str, description: str,
             at: datetime | None = None) -> None:
        seq = self._seq
        self._seq += 1
        self._stream.add_joined(at or self._clock(), (session, seq),
                                join((f"{session:016X}", "SMTP", destination, direction, description)))

    def session_started(self, session: int, host: str, failed_kind: str | None = None) -> None:
        """A session to a target begins: the connection's start (and its DNS result), or a failover
        after an attempt that failed with `failed_kind`."""
        if self._session is None:
            self._row(session, self.destination, "+", self._start)
            if self._resolved:
                self._row(session, self.destination, ">", resolved_description(self._resolved))
        else:
            reason = FAILOVER_REASONS.get(failed_kind or "", "ProtocolError")
            self._row(session, host, "*", failover_description(self._session, reason))
        self._session = session

    def connected(self, host: str, ip: str) -> None:
        if self._session is not None:
            self._row(self._session, host, ">", f"Established connection to {ip}")

    def connect_failed(self, host: str, ip: str, port: int, kind: str) -> None:
        if self._session is not None and kind in SOCKET_ERRORS:
            self._row(self._session, host, ">", failed_description(ip, port, kind))

    def resolution_failed(self, session: int, host: str, reason: str, reporting_server: str,
                          at: datetime | None = None) -> None:
        """The lookup of the next hop failed: start, the failure, end (no SMTP session was opened)."""
        self._session = session
        self._row(session, self.destination, "+", self._start, at)
        self._row(session, host, ">", resolution_failed_description(reason, reporting_server), at)
        self.stop(at=at)

    def delivered(self, nbytes: int) -> None:
        self.messages += 1
        self.bytes += nbytes

    def stop(self, description: str | None = None, at: datetime | None = None) -> None:
        if self._stopped or self._session is None:
            return
        self._stopped = True
        self._row(self._session, self.destination, "-", stop_description(self.messages, self.bytes, description), at)
