"""SMTP replies as Exchange words them, as named constants (one table, policed by a test).

Sources: shared/reference/transport-behavior.md §4.2 (on-prem), §4.3 (EXO), §8 (banners), and the
real protocol-log samples in shared/reference/samples.
"""

from __future__ import annotations

from dataclasses import dataclass

# Session
BANNER = "220 {fqdn} Microsoft ESMTP MAIL Service ready at {date}"
STARTTLS_GO = "220 2.0.0 SMTP server ready"
CLOSING = "221 2.0.0 Service closing transmission channel"
HELLO = "{fqdn} Hello [{ip}]"

# Positive
OK = "250 2.0.0 OK"
RESETTING = "250 2.0.0 Resetting"
SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
START_DATA = "354 Start mail input; end with <CRLF>.<CRLF>"
QUEUED = "250 2.6.0 {message_id} [InternalId={internal_id}, Hostname={hostname}] {size} bytes in {secs}, {rate} KB/sec Queued mail for delivery"
BDAT_OK = "250 2.0.0 BDAT command accepted"
CANNOT_VRFY = "252 2.1.5 Cannot VRFY user"

# Sequence errors
SEND_HELLO_FIRST = "503 5.5.2 Send hello first"
SENDER_ALREADY = "503 5.5.2 Sender already specified"
NEED_MAIL = "503 5.5.2 Need mail command"
NEED_RCPT = "503 5.5.2 Need rcpt command"
ONE_STARTTLS = "503 5.5.2 Only one STARTTLS command can be issued per session"
UNRECOGNIZED = "500 5.3.3 Unrecognized command"
# HELP (any argument): SmtpResponse.Help, two lines, no enhanced status code [V-code HelpSmtpCommand,
# Microsoft.Exchange.Data.Transport/Data/Transport/Smtp/SmtpResponse.cs]
HELP = ["214-This server supports the following commands:",
        "214 HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH BDAT"]
INVALID_ARGS = "501 5.5.4 Invalid arguments"
INVALID_SENDER = "501 5.1.7 Invalid address"
INVALID_RECIPIENT = "501 5.1.3 Invalid address"
UNRECOGNIZED_AUTH = "504 5.7.4 Unrecognized authentication type"
LINE_TOO_LONG = "500 5.5.6 Line too long"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors on this connection, closing transmission channel"
# Protocol errors, from Exchange's own SmtpResponse table (Microsoft.Exchange.Data.Transport
# SmtpResponse.cs, decompiled in evilashz/exchange-server-27065; docs/network-dns-routing.md §4).
COMMAND_TOO_LONG = "500 5.5.2 Command too long"  # SmtpInStateMachine: line > 32768 bytes
BAD_SEQUENCE = "503 5.5.1 Bad sequence of commands"
SEND_EHLO_FIRST = "503 5.5.2 Send EHLO first"
EHLO_DOMAIN_REQUIRED = "501 5.0.0 EHLO requires domain address"
HELO_DOMAIN_REQUIRED = "501 5.0.0 HELO requires domain address"
INVALID_DOMAIN = "501 5.5.4 Invalid domain name"
UNRECOGNIZED_PARAMETER = "501 5.5.4 Unrecognized parameter"
AUTH_ALREADY = "503 5.5.2 Auth command already specified"
AUTH_UNSUCCESSFUL = "535 5.7.3 Authentication unsuccessful"
COMMAND_NOT_IMPLEMENTED = "502 5.3.3 Command not implemented"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
HEADERS_TOO_LARGE = "552 5.3.4 Header size exceeds fixed maximum size"
MAX_COMMAND_LENGTH = 32768

# Policy
STARTTLS_REQUIRED = "451 5.7.3 STARTTLS is required to send mail"
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
NOT_AUTHENTICATED = "530 5.7.1 Client was not authenticated"
NO_SUBMIT = "550 5.7.1 Client does not have permissions to submit to this server"
NO_SEND_AS = "550 5.7.1 Client does not have permissions to send as this sender"
RELAY_DENIED = "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"
RECIPIENT_NOT_FOUND = "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
CERT_VALIDATION_FAILURE = "454 4.7.5 Certificate validation failure"
TLS_INIT_FAILURE = "554 5.7.3 Unable to initialize security subsystem"
HOP_COUNT = "554 5.4.6 Hop count exceeded - possible mail loop"
TOO_LARGE = "552 5.3.4 Message size exceeds fixed maximum message size"
SERVICE_NOT_AVAILABLE = "421 4.3.2 Service not available"
# Said to every open session when the service stops (SmtpResponse.ServiceUnavailable as the
# shutting-down server words it; docs/queues-tracking-ndr.md, "Shutdown"). ServerSession.shutdown sends it.
SERVICE_SHUTTING_DOWN = "421 4.3.2 Service not available, closing transmission channel"
# ConnectionInactivityTimeout: the read timed out (SmtpInSession.HandleError, SmtpResponse.TimeoutOccurred).
TIMEOUT = "451 4.7.0 Timeout waiting for client input"
# ConnectionTimeout: a session past its expiry time gets CONNECTION_TIMED_OUT (SmtpResponse.ConnectionTimedOut).
# MaxInboundConnection (TooManyConnections) and MaxInboundConnectionPerSource /
# MaxInboundConnectionPercentagePerSource (TooManyConnectionsPerSource), SmtpReceiveConnectorStub.
TOO_MANY_CONNECTIONS = ("421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, "
                        "closing transmission channel")
TOO_MANY_CONNECTIONS_PER_SOURCE = ("421 4.3.2 The maximum number of concurrent connections has exceeded a limit, "
                                   "closing transmission channel")
SERVICE_NOT_ACTIVE = "421 4.3.2 Service not active"
CONNECTION_DROPPED_DUE_TO = "421 4.4.2 Connection dropped due to {reason}"
# Connection Filtering agent (IP Block List providers on the Edge): "550 5.7.1 " + the provider's
# RejectionResponse formatted with {0}=client IP, {1}=provider name, {2}=lookup domain, or this default.
IP_BLOCK_LIST_REJECT = "550 5.7.1 {text}"
IP_BLOCK_LIST_DEFAULT_TEXT = "Recipient not authorized, your IP has been found on a block list"

# Front End proxy (PRX1 no destinations, PRX2 DNS error, PRX3 connection failure, PRX4 protocol
# error, PRX5 socket error, PRX6 shutdown)
PROXY_TEMPORARY = "451 4.7.0 Temporary server error. Please try again later. PRX{n}"
PROXY_SETUP_FAILED_TEMP = "450 4.7.0 Proxy session setup failed on Frontend with '{response}'"
PROXY_SETUP_FAILED_PERM = "550 5.7.0 Proxy session setup failed on Frontend with '{response}'"
# the Front End's receive log (Verbose) before a PRX reply: the proxy layer logs how its connection
# was acked [V-code InboundProxyLayer.AckMessage: "Message or connection acked with status {0} and
# response {1}"], e.g. "... Retry and response 451 4.4.0 DNS query failed. The error was: DNS query
# failed with error ErrorRetry" for PRX2 (docs/transport-fidelity.md §7)
PROXY_ACKED = "Message or connection acked with status {status} and response {response}"

# Outbound (queue LastError); see transport-behavior.md §3.1 and §4.2
FAILOVER_PROTOCOL = ('451 4.4.0 Primary target IP address responded with: "{response}." Attempted failover '
                     "to alternate host, but that did not succeed. Either there are no alternate hosts, or "
                     "delivery failed to all alternate hosts.")
FAILOVER_SOCKET = ('441 4.4.1 Error encountered while communicating with primary target IP address: '
                   '"{details}." Attempted failover to alternate host, but that did not succeed. Either there '
                   "are no alternate hosts, or delivery failed to all alternate hosts.")
CONNECTION_TIMED_OUT = "421 4.4.1 Connection timed out"
UNABLE_TO_CONNECT = "421 4.2.1 Unable to connect"
DNS_QUERY_FAILED = "451 4.4.0 DNS query failed. The error was: {error}"
NO_MATCHING_CONNECTOR = "A matching connector cannot be found to route the external recipient"
TLS_CERT_NOT_FOUND = "454 4.7.5 The certificate specified in TlsCertificateName of the SendConnector could not be found."

# Exchange Online (EOP) front end
EXO_BANNER = "220 {fqdn} Microsoft ESMTP MAIL Service ready at {date} [{session}]"
EXO_RELAY_DENIED = "550 5.7.64 TenantAttribution; Relay Access Denied [{host}]"
# EOP's IP block lists: the reply depends on which list matched, looked up by the list's DNS zone
# (exo_block_list_reply below). Evidence per row in docs/transport-fidelity.md §3.
# Spamhaus (any of its zones: zen/sbl/xbl/pbl.spamhaus.org, DQS *.spamhaus.net): public captures,
# e.g. "550 5.7.1 Service unavailable, Client host [74.105.21.182] blocked using Spamhaus. To request
# removal from this list see https://www.spamhaus.org/query/ip/74.105.21.182 AS(1450)
# [DM6NAM12FT101.eop-nam12.prod.protection.outlook.com 2024-03-08T18:27:57.188Z 08DC3ECF83FA972F]";
# the same words for an SBL (sendgrid/docs#6275) and a PBL listing (kakshay21/verify_email#44).
EXO_BLOCKED_USING_SPAMHAUS = ("550 5.7.1 Service unavailable, Client host [{ip}] blocked using Spamhaus. To request "
                              "removal from this list see https://www.spamhaus.org/query/ip/{ip} AS(1450) [{stamp}]")
# Microsoft's own list of banned sending IPs (ExDocs NDR table: 5.7.606-649 "Access denied, banned sending
# IP [IP1.IP2.IP3.IP4]"); whole text as captured in 2021 (MicrosoftDocs/microsoft-365-docs#5911, with its
# two spaces before http and no bracketed stamp after AS(1430)).
EXO_BANNED_SENDING_IP = ("550 5.7.606 Access denied, banned sending IP [{ip}]. To request removal from this list "
                         "please visit https://sender.office.com/ and follow the directions. For more information "
                         "please go to  http://go.microsoft.com/fwlink/?LinkID=526655 AS(1430)")
# A list EOP is not known to use: the words all EOP "blocked using" replies share (Spamhaus above, 5.7.513
# "Service unavailable, Client host [$ConnectingIP] blocked by $recipientDomain using Customer Block list")
# with the lab's name for the list and EOP's stamp [INFERRED: no capture of such a reply exists].
EXO_BLOCKED_USING_OTHER = "550 5.7.1 Service unavailable, Client host [{ip}] blocked using {provider} [{stamp}]"


@dataclass(frozen=True)
class BlockListReply:
    """EOP's words for a listing on one block list: `zone` matches the zone itself and every zone below it."""

    zone: str
    template: str  # fields: {ip} the client, {provider} the lab's name of the list, {stamp} EOP's trailer

    def covers(self, zone: str) -> bool:
        z = zone.strip(".").lower()
        return z == self.zone or z.endswith("." + self.zone)


EXO_BLOCK_LIST_REPLIES: tuple[BlockListReply, ...] = (
    BlockListReply("spamhaus.org", EXO_BLOCKED_USING_SPAMHAUS),
    BlockListReply("spamhaus.net", EXO_BLOCKED_USING_SPAMHAUS),  # Spamhaus DQS: <key>.zen.dq.spamhaus.net
    # Microsoft's internal IP list has no public zone; FOPE, EOP's predecessor, named it in its replies
    # ("Client host a.b.c.d blocked using 88.blocklist.zap; Mail from IP banned. To request removal from this
    # list please forward this message to delist.forefront@messaging.microsoft.com", 2011); the lab keys
    # today's banned-sending-IP reply by that name [INFERRED: the successor list].
    BlockListReply("88.blocklist.zap", EXO_BANNED_SENDING_IP),
)


def exo_block_list_reply(zone: str, ip: str, provider: str, stamp: str) -> str:
    """EOP's RCPT TO rejection for `ip` listed on the block list at `zone` (the first table row covering it)."""
    template = next((r.template for r in EXO_BLOCK_LIST_REPLIES if r.covers(zone)), EXO_BLOCKED_USING_OTHER)
    return template.format(ip=ip, provider=provider, stamp=stamp)


# Loops detected by EXO: "5.4.14 Hop count exceeded - possible mail loop ATTR34" (ExDocs
# fix-error-code-5-4-6-through-5-4-20); 554 as seed 001 §7 shows it.
EXO_HOP_COUNT = "554 5.4.14 Hop count exceeded - possible mail loop ATTR34 [{stamp}]"

