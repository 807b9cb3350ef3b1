"""Organization and cross-premises headers: the header firewall, and the hybrid conversion.

Exchange marks a message's trust with `X-MS-Exchange-Organization-*` headers (AuthAs, AuthSource,
MessageDirectionality, SCL...). Rules (transport-behavior.md §7.3; Learn "Header firewall"):

- receiving: organization headers survive only from a sender with the
  ms-Exch-Accept-Headers-Organization right (an Exchange server of the organisation,
  ExchangeServers permission group); from anyone else they are removed, and the receiving server
  stamps its own (AuthAs Anonymous, directionality Incoming for Internet mail);
- a session whose certificate earned the AcceptCloudServicesMail capability (the hybrid receive
  connector, TlsDomainCapabilities) or an EXO OnPremises inbound connector with
  CloudServicesMailEnabled brings `X-MS-Exchange-CrossPremises-*` headers that are promoted back to
  organization headers: hybrid mail stays AuthAs Internal (c7solutions "Anonymous Emails Between
  On-Premises and Exchange Online" [V-obs]);
- sending out of the organisation: organization headers go only through a connector with
  CloudServicesMailEnabled, converted to CrossPremises headers for the hop; any other external send
  connector removes them and says so with `X-CrossPremisesHeadersFilteredBySendConnector: <server>`
  [V-obs header name; INFERRED: stamped whenever it filtered organization headers];
- EXO stamps `X-OriginatorOrg: <the tenant's default domain>` on mail it attributes to the tenant
  (Originating) [INFERRED placement; header name V-obs].

Pure functions over message bytes; the parties decide who is trusted and call these.
"""

from __future__ import annotations

from dataclasses import dataclass

ORG = "X-MS-Exchange-Organization-"
CROSS = "X-MS-Exchange-CrossPremises-"
FILTERED = "X-CrossPremisesHeadersFilteredBySendConnector"
ORIGINATOR_ORG = "X-OriginatorOrg"


def split(data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Header fields (name, raw value incl. folding) in order, and the rest (separator + body)."""
    cut = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if cut < 0 else (data[:cut], data[cut:])
    fields: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + line)
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name, value))
        elif line:
            fields.append((line, ""))
    return fields, rest


def join(fields: list[tuple[str, str]], rest: bytes) -> bytes:
    head = "\r\n".join(f"{n}:{v}" for n, v in fields)
    return head.encode("utf-8", "surrogateescape") + (rest if rest else b"\r\n\r\n")


def get(data: bytes, name: str) -> str | None:
    for n, v in split(data)[0]:
        if n.lower() == name.lower():
            return v.strip()
    return None


def _has_prefix(name: str, prefix: str) -> bool:
    return name.lower().startswith(prefix.lower())


@dataclass(frozen=True)
class Trust:
    """What the receiving session earned (decided by the receive policy from auth and TLS)."""

    exchange_server: bool = False  # ms-Exch-Accept-Headers-Organization (ExchangeServers group)
    cross_premises: bool = False  # AcceptCloudServicesMail / CloudServicesMailEnabled inbound


def trust_of(auth: dict) -> Trust:
    """An on-prem session's trust from its auth state (`exchange_server`, `capabilities`)."""
    caps = set(auth.get("capabilities") or ())
    return Trust(exchange_server=bool(auth.get("exchange_server")),
                 cross_premises=bool(caps & {"AcceptCloudServicesMail", "AcceptOorgProtocol"}))


def exo_trust(attribution: object) -> Trust:
    """EXO: mail attributed to the tenant through an OnPremises connector with CloudServicesMailEnabled."""
    connector = getattr(attribution, "connector", None)
    originating = getattr(attribution, "directionality", "") == "Originating"
    return Trust(cross_premises=originating and bool(getattr(connector, "cloud_services_mail_enabled", False)))


@dataclass(frozen=True)
class Stamp:
    auth_as: str
    directionality: str


def on_receive(data: bytes, trust: Trust, *, auth_source: str, default_directionality: str,
               originator_org: str | None = None) -> tuple[bytes, Stamp]:
    """The receive-side header firewall, then the stamps a first organization hop adds."""
    fields, rest = split(data)
    if trust.exchange_server:
        kept = fields
    elif trust.cross_premises:
        kept = [(n, v) for n, v in fields if not _has_prefix(n, ORG)]
        promoted = [(ORG + n[len(CROSS):], v) for n, v in kept if _has_prefix(n, CROSS)]
        kept = [(n, v) for n, v in kept if not _has_prefix(n, CROSS)] + promoted
    else:
        kept = [(n, v) for n, v in fields if not _has_prefix(n, ORG) and not _has_prefix(n, CROSS)]
    values = {n.lower(): v.strip() for n, v in kept}
    auth_as = values.get((ORG + "AuthAs").lower())
    direction = values.get((ORG + "MessageDirectionality").lower())
    if auth_as is None:
        auth_as = "Internal" if (trust.exchange_server or trust.cross_premises) else "Anonymous"
        kept.append((ORG + "AuthAs", " " + auth_as))
        kept.append((ORG + "AuthSource", " " + auth_source))
    if direction is None:
        direction = default_directionality
        kept.append((ORG + "MessageDirectionality", " " + direction))
    if originator_org and direction == "Originating" and ORIGINATOR_ORG.lower() not in values:
        kept.append((ORIGINATOR_ORG, " " + originator_org))
    return join(kept, rest), Stamp(auth_as=auth_as, directionality=direction)


def on_send(data: bytes, *, external: bool, cloud_services_mail: bool, server: str) -> bytes:
    """The send-side header firewall for one hop."""
    if not external:
        return data
    fields, rest = split(data)
    org = [(n, v) for n, v in fields if _has_prefix(n, ORG)]
    others = [(n, v) for n, v in fields if not _has_prefix(n, ORG) and not _has_prefix(n, CROSS)]
    if cloud_services_mail:
        return join(others + [(CROSS + n[len(ORG):], v) for n, v in org], rest)
    if org or any(_has_prefix(n, CROSS) for n, _ in fields):
        others = [(n, v) for n, v in others if n.lower() != FILTERED.lower()] + [(FILTERED, " " + server)]
    return join(others, rest)
