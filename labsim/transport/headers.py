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
    fields, rest, _ = _split(data)
    return fields, rest


def _split(data: bytes) -> tuple[list[tuple[str, str]], bytes, bool]:
    """`split`, and whether `join` gives `data` back unchanged: then the caller that keeps every
    field in its place may put new fields after the last one without joining the others again.
    Exact when the rest is not empty (a blank line ends the header lines) and every header line
    is a field (a colon in it) or a folded line after one: a line without a colon would come back
    with one, an empty line not at all."""
    cut = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if cut < 0 else (data[:cut], data[cut:])
    fields: list[tuple[str, str]] = []
    append = fields.append
    exact = cut >= 0
    for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
        if not line:
            exact = False  # an empty line is dropped
            continue
        if line[0] in " \t" and fields:  # a folded line: part of the field before it
            name, value = fields[-1]
            fields[-1] = (name, f"{value}\r\n{line}")
            continue
        name, colon, value = line.partition(":")
        if not colon:
            exact = False  # a line without a colon: a field named by the whole line, with no value
        append((name, value))
    return fields, rest, exact


def join(fields: list[tuple[str, str]], rest: bytes) -> bytes:
    head = "\r\n".join(f"{n}:{v}" for n, v in fields)
    return head.encode("utf-8", "surrogateescape") + (rest if rest else b"\r\n\r\n")


def _appended(data: bytes, rest: bytes, added: list[tuple[str, str]]) -> bytes:
    """`join(fields + added, rest)` for the fields `data` splits into exactly (`_split`): the new
    fields go between the last header line and the rest, each after a CRLF."""
    if not added:
        return data
    cut = len(data) - len(rest)
    return data[:cut] + "".join(f"\r\n{n}:{v}" for n, v in added).encode("utf-8", "surrogateescape") + rest


def get(data: bytes, name: str) -> str | None:
    for n, v in split(data)[0]:
        if n.lower() == name.lower():
            return v.strip()
    return None


def _has_prefix(name: str, prefix: str) -> bool:
    return name.lower().startswith(prefix.lower())


_ORG_L, _CROSS_L = ORG.lower(), CROSS.lower()
_AUTH_AS_L, _DIRECTION_L = (ORG + "AuthAs").lower(), (ORG + "MessageDirectionality").lower()
_ORIGINATOR_ORG_L, _FILTERED_L = ORIGINATOR_ORG.lower(), FILTERED.lower()


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
    """The receive-side header firewall, then the stamps a first organization hop adds.

    Each field's lower-case name is taken once; when every field stays where it was (a trusted
    Exchange server, or no organization or cross-premises header to remove or promote) and the
    header splits exactly (`_split`), the stamps are put after the last header line of `data` as it
    is instead of joining every field again."""
    fields, rest, exact = _split(data)
    lows = [n.lower() for n, _ in fields]
    kept, kept_lows = fields, lows
    if not trust.exchange_server:
        if trust.cross_premises:
            kept = [f for f, low in zip(fields, lows) if not low.startswith(_ORG_L)]
            promoted = [(ORG + n[len(CROSS):], v) for n, v in kept if n.lower().startswith(_CROSS_L)]
            if promoted or len(kept) != len(fields):
                kept = [(n, v) for n, v in kept if not n.lower().startswith(_CROSS_L)] + promoted
                kept_lows = [n.lower() for n, _ in kept]
                exact = False
        elif any(low.startswith(_ORG_L) or low.startswith(_CROSS_L) for low in lows):
            kept = [f for f, low in zip(fields, lows) if not low.startswith(_ORG_L) and not low.startswith(_CROSS_L)]
            kept_lows = [n.lower() for n, _ in kept]
            exact = False
    last = {low: i for i, low in enumerate(kept_lows)}  # each name's last field (as a dict of all would keep)
    at = last.get(_AUTH_AS_L)
    auth_as = None if at is None else kept[at][1].strip()
    at = last.get(_DIRECTION_L)
    direction = None if at is None else kept[at][1].strip()
    added: list[tuple[str, str]] = []
    if auth_as is None:
        auth_as = "Internal" if (trust.exchange_server or trust.cross_premises) else "Anonymous"
        added.append((ORG + "AuthAs", " " + auth_as))
        added.append((ORG + "AuthSource", " " + auth_source))
    if direction is None:
        direction = default_directionality
        added.append((ORG + "MessageDirectionality", " " + direction))
    if originator_org and direction == "Originating" and _ORIGINATOR_ORG_L not in last:
        added.append((ORIGINATOR_ORG, " " + originator_org))
    stamp = Stamp(auth_as=auth_as, directionality=direction)
    if exact:
        return _appended(data, rest, added), stamp
    return join(kept + added, rest), stamp


def on_send(data: bytes, *, external: bool, cloud_services_mail: bool, server: str) -> bytes:
    """The send-side header firewall for one hop. A header with no organization or cross-premises
    field that splits exactly (`_split`) leaves as it came: the fields join to the same bytes."""
    if not external:
        return data
    fields, rest, exact = _split(data)
    lows = [n.lower() for n, _ in fields]
    is_org = [low.startswith(_ORG_L) for low in lows]
    is_cross = [low.startswith(_CROSS_L) for low in lows]
    if exact and not any(is_org) and not any(is_cross):
        return data
    org = [f for f, o in zip(fields, is_org) if o]
    others = [f for f, o, c in zip(fields, is_org, is_cross) if not o and not c]
    if cloud_services_mail:
        return join(others + [(CROSS + n[len(ORG):], v) for n, v in org], rest)
    if org or any(is_cross):
        others = [(n, v) for n, v in others if n.lower() != _FILTERED_L] + [(FILTERED, " " + server)]
    return join(others, rest)
