"""Default views of the Exchange and Windows cmdlets the shell offers: which columns Format-Table
shows when the admin does not choose, and the type names. Sources in docs/shell.md; views
marked [INFERRED] there were not confirmed from a public transcript.
"""

from __future__ import annotations

from .objects import View

QUEUE = View(table=("Identity", "DeliveryType", "Status", "MessageCount", "Velocity", "RiskLevel", "OutboundIPPool",
                    "NextHopDomain"))
MESSAGE = View(table=("Identity", "FromAddress", "Status", "Queue", "Subject"))
SEND_CONNECTOR = View(table=("Identity", "AddressSpaces", "Enabled"))
RECEIVE_CONNECTOR = View(table=("Identity", "Bindings", "Enabled"))
CERTIFICATE = View(table=("Thumbprint", "Services", "Subject"), widths=(41, 10))
TRACKING = View(table=("EventId", "Source", "Sender", "Recipients", "MessageSubject"))
CONNECTOR_EXO = View(table=("Identity", "Enabled", "ConnectorType"))  # [INFERRED]
MESSAGE_TRACE = View(table=("Received", "SenderAddress", "RecipientAddress", "Subject", "Status"))
SERVICE = View(table=("Status", "Name", "DisplayName"), widths=(8, 18, 38))
DNS_A = View(table=("Name", "Type", "TTL", "Section", "IPAddress"), widths=(46, 6, 5, 10))
DNS_MX = View(table=("Name", "Type", "TTL", "Section", "NameExchange", "Preference"), widths=(46, 6, 5, 10))
NET_CONNECTION = View(list_props=("ComputerName", "RemoteAddress", "RemotePort", "InterfaceAlias", "SourceAddress",
                                  "TcpTestSucceeded"))
WIN_EVENT = View(table=("TimeCreated", "Id", "LevelDisplayName", "Message"), group_by="ProviderName",
                 widths=(25, 8, 16), right=("Id",))
VALIDATION = View(list_props=("Identity", "Target", "Recipient", "IsTaskSuccessful", "Status", "TlsStatus"))  # [INFERRED]
ACCEPTED_DOMAIN = View(table=("Name", "DomainName", "DomainType", "Default"))  # [INFERRED]
IP_BLOCK_PROVIDER = View(table=("Name", "LookupDomain", "Priority"))  # [INFERRED]
IP_LIST_ENTRY = View(table=("Identity", "IPRange", "ExpirationTime", "Comment"))  # [INFERRED]
HINT = View(list_props=("Hint", "Number", "Remaining"))
GRADE = View(list_props=("Objective", "Passed", "Checks"))

# Windows service display names (Get-Service on an Exchange 2019 server).
SERVICE_DISPLAY = {
    "MSExchangeTransport": "Microsoft Exchange Transport",
    "MSExchangeFrontEndTransport": "Microsoft Exchange Frontend Transport",
    "MSExchangeSubmission": "Microsoft Exchange Mailbox Transport Submission",
    "MSExchangeDelivery": "Microsoft Exchange Mailbox Transport Delivery",
    "MSExchangeEdgeSync": "Microsoft Exchange EdgeSync",
    "ADAM_MSExchange": "Microsoft Exchange ADAM",
}

# Get-ExchangeCertificate's Services column: one letter per service in this order, '.' when not
# assigned (IMAP, POP, UM, IIS, SMTP, Federation, UMCallRouter).
SERVICE_FLAGS = (("IMAP", "I"), ("POP", "P"), ("UM", "U"), ("IIS", "W"), ("SMTP", "S"), ("Federation", "F"),
                 ("UMCallRouter", "C"))


def service_flags(services: list[str]) -> str:
    have = {s.lower() for s in services}
    return "".join(letter if name.lower() in have else "." for name, letter in SERVICE_FLAGS)
