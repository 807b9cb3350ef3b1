"""A lab DNS server: one `DnsServer` of the topology, answering real UDP on its loopback address.

Theory of operation
-------------------
`LabDnsServer` listens on the real loopback address the `AddressBook` gives the server's virtual
IP (port 53 -> `book.real_port(53)`), on the lab's own event loop (an asyncio `DatagramProtocol`;
dnspython only for the wire format). It behaves like a small Windows/BIND server:

* Authoritative (AA) for its zones, the most specific zone winning when zones nest. A name in a
  zone that has no records -> NXDOMAIN with the zone's SOA in the authority section; a name that
  exists (or is an empty non-terminal, RFC 8020) without the asked type -> NOERROR/NODATA + SOA.
  CNAMEs are followed through the server's own data (across its own zones), the target's records
  are included, as an authoritative server does (RFC 1034 §4.3.2).
* Names outside its zones are forwarded over real UDP to its `forwarders` (virtual IPs mapped by
  the AddressBook, checked by `guard_real`), the first one first, the next on timeout, SERVFAIL or
  REFUSED; SERVFAIL if every forwarder fails.
* With no forwarders it answers REFUSED with RA=0 for foreign names: it is an authoritative-only
  server without recursion (BIND with `recursion no`, a public authoritative server). Answering
  NXDOMAIN would be a lie that turns a misrouted lookup into a permanent "domain does not exist"
  (an NDR, 5.4.4) where reality gives a transient failure, and REFUSED is also what makes a stub
  resolver move on to its next server. To model an Internet where unknown names do not exist, give
  the public server a zone for the TLD (`com`) or the root zone (`.`).

Faults emerge from the data and the socket, never from scripted strings: `set_mode` switches
between `running`, `stopped` (socket closed, so the kernel answers ICMP port unreachable),
`servfail` (SERVFAIL to every query) and `drop` (reads and never answers). `update()` replaces the
zones at run time (timelines change records). The SOA of each zone is synthesised and
deterministic; its serial is the server's data generation (1, then +1 per `update`).

What to answer is decided by plain functions over the compiled zones (`respond`,
`authoritative_answer`); `LabDnsServer` is the socket, the fault mode and the forwarding around them.

Answers are deterministic (rendered with `want_shuffle=False`): A by address, MX by preference then exchange, TXT/PTR by text. Each
query is logged in `queries` as (qname, qtype, rcode, client); rcode None = no answer was sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, cast

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from ..errors import NetworkGuardError, TopologyError
from ..topology.model import DnsRecord, DnsServer, DnsZone
from .vnet import AddressBook, guard_real

__all__ = ["LabDnsServer", "DnsMode", "QueryLogEntry", "FORWARD_TIMEOUT", "MAX_CNAME_CHAIN",
           "sort_key_for"]

log = logging.getLogger(__name__)

FORWARD_TIMEOUT = 0.15
"""Real seconds a server waits for one forwarder. Keep it below the resolvers' timeout divided by
the number of forwarders, or the client gives up before the SERVFAIL arrives. It is the wait for a
forwarder the world keeps silent (drop mode) only; one that answers gets FORWARD_ANSWER_TIMEOUT."""

FORWARD_ANSWER_TIMEOUT = 10.0
"""Real seconds a server waits for a forwarder that will answer: a safety net, never a decision
(a loaded machine must not turn a slow answer into SERVFAIL; same seed, same output)."""

MAX_CNAME_CHAIN = 8
MAX_FORWARDS_IN_FLIGHT = 64  # a forwarding loop (A -> B -> A) ends in SERVFAIL, not a storm
SO_RCVBUF_BYTES = 1 << 20    # stack-notes §6: bursts overflow the default receive buffer
SOA_TIMERS = (900, 600, 86400, 3600)  # refresh, retry, expire, minimum (Windows DNS defaults)
SOA_TTL = 3600
_EDNS_PAYLOAD = 1232


class DnsMode(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    SERVFAIL = "servfail"
    DROP = "drop"


class QueryLogEntry(NamedTuple):
    qname: str          # lower case, no trailing dot
    qtype: str          # "A", "MX", ...
    rcode: str | None   # "NOERROR", "NXDOMAIN", ...; None when no answer was sent (drop mode)
    client: str         # the client's virtual IP (its real address if the book does not know it)


# --------------------------------------------------------------------------- zone data


def sort_key_for(rdtype: int, rdata: Any) -> tuple:
    """Deterministic order of records in an answer (and in the resolver's results)."""
    if rdtype == dns.rdatatype.A:
        return (int(ipaddress.IPv4Address(rdata.address)),)
    if rdtype == dns.rdatatype.MX:
        return (rdata.preference, rdata.exchange.to_text().lower())
    return (rdata.to_text().lower(),)


def _zone_origin(zone: DnsZone) -> dns.name.Name:
    text = zone.name.strip()
    if text in ("", ".", "@"):
        return dns.name.root
    try:
        return dns.name.from_text(text.rstrip(".").lower() + ".")
    except dns.exception.DNSException as e:
        raise TopologyError(f"zone {zone.name!r}", f"not a DNS name ({e})") from None


def _owner(record: DnsRecord, origin: dns.name.Name, where: str) -> dns.name.Name:
    text = record.name.strip().lower()
    try:
        if text in ("", "@"):
            return origin
        if text.endswith("."):
            name = dns.name.from_text(text)
        elif "." not in text:  # a bare label is relative to the zone, as in DNS Manager
            name = dns.name.from_text(text, origin)
        else:
            name = dns.name.from_text(text + ".")
    except dns.exception.DNSException as e:
        raise TopologyError(where, f"record name {record.name!r} is not a DNS name ({e})") from None
    if not name.is_subdomain(origin):
        raise TopologyError(where, f"record name {record.name!r} is not inside zone "
                                   f"{origin.to_text(omit_final_dot=True) or '.'}")
    return name


def _target(value: str, where: str) -> str:
    text = value.strip().lower()
    if text in ("", "."):
        return "."
    try:
        return dns.name.from_text(text.rstrip(".") + ".").to_text()
    except dns.exception.DNSException as e:
        raise TopologyError(where, f"{value!r} is not a host name ({e})") from None


def _rdata(record: DnsRecord, where: str) -> Any:
    in_ = dns.rdataclass.IN
    try:
        if record.type == "A":
            return dns.rdata.from_text(in_, dns.rdatatype.A, str(ipaddress.IPv4Address(record.value.strip())))
        if record.type == "MX":
            if not 0 <= record.preference <= 65535:
                raise ValueError(f"MX preference {record.preference} is not 0..65535")
            return dns.rdata.from_text(in_, dns.rdatatype.MX,
                                       f"{record.preference} {_target(record.value, where)}")
        if record.type in ("CNAME", "PTR"):
            return dns.rdata.from_text(in_, dns.rdatatype.from_text(record.type), _target(record.value, where))
        if record.type == "TXT":
            raw = record.value.encode()
            chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
            return dns.rdtypes.ANY.TXT.TXT(in_, dns.rdatatype.TXT, chunks)
    except (ValueError, dns.exception.DNSException) as e:
        raise TopologyError(where, f"{record.type} record {record.name!r} -> {record.value!r}: {e}") from None
    raise TopologyError(where, f"record type {record.type!r} is not supported")


@dataclass(frozen=True)
class _Zone:
    origin: dns.name.Name
    soa: dns.rrset.RRset
    nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]]
    names: frozenset[dns.name.Name]  # owner names plus empty non-terminals


def _compile_zone(zone: DnsZone, server: DnsServer, serial: int) -> _Zone:
    origin = _zone_origin(zone)
    where = f"DNS server {server.name}, zone {zone.name}"
    grouped: dict[dns.name.Name, dict[int, list[tuple[Any, int]]]] = {}
    for rec in zone.records:
        owner = _owner(rec, origin, where)
        rdata = _rdata(rec, where)
        grouped.setdefault(owner, {}).setdefault(rdata.rdtype, []).append((rdata, rec.ttl))
    nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
    names: set[dns.name.Name] = {origin}
    for owner, by_type in grouped.items():
        if dns.rdatatype.CNAME in by_type and (len(by_type) > 1 or len(by_type[dns.rdatatype.CNAME]) > 1):
            # Windows DNS and BIND both refuse this ("CNAME and other data", RFC 1034 §3.6.2).
            raise TopologyError(where, f"{owner.to_text(omit_final_dot=True)} has a CNAME and other "
                                       "records (or two CNAMEs); a CNAME must be alone at its name")
        nodes[owner] = {}
        for rdtype, items in by_type.items():
            rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, cast(dns.rdatatype.RdataType, rdtype))
            seen = set()
            for rdata, ttl in sorted(items, key=lambda it: sort_key_for(rdtype, it[0])):
                if rdata not in seen:
                    seen.add(rdata)
                    rrset.add(rdata, ttl)
            nodes[owner][rdtype] = rrset
        n = owner
        while n != origin and len(n) > len(origin):
            names.add(n)
            n = n.parent()
    label = "".join(c if c.isalnum() or c == "-" else "-" for c in server.name.lower()).strip("-") or "ns"
    mname = dns.name.from_text(label, origin)
    rname = dns.name.from_text("hostmaster", origin)
    soa = dns.rrset.from_text(origin, SOA_TTL, "IN", "SOA",
                              f"{mname.to_text()} {rname.to_text()} {serial} " + " ".join(map(str, SOA_TIMERS)))
    return _Zone(origin=origin, soa=soa, nodes=nodes, names=frozenset(names))


# A compiled zone is a pure function of (zone, server name, serial) and is never changed once built:
# the process keeps it, so the next run of the same lab (`labsim run A B ...`), a reconfiguration
# that leaves a zone as it was, and the loader's check of each change do not compile it again.
_COMPILED_MAX = 4096
_compiled: dict[tuple[str, str, int], _Zone] = {}


def _compile_zone_cached(zone: DnsZone, server: DnsServer, serial: int) -> _Zone:
    key = (zone.model_dump_json(), server.name, serial)
    found = _compiled.get(key)
    if found is None:
        found = _compile_zone(zone, server, serial)  # a zone that does not compile raises: never kept
        if len(_compiled) >= _COMPILED_MAX:
            _compiled.clear()
        _compiled[key] = found
    return found


def _compile(server: DnsServer, serial: int) -> list[_Zone]:
    zones = [_compile_zone_cached(z, server, serial) for z in server.zones]
    origins = [z.origin for z in zones]
    if len(set(origins)) != len(origins):
        raise TopologyError(f"DNS server {server.name}", "a zone is defined twice")
    # Most specific first, so the first zone containing a name is the one that answers for it.
    return sorted(zones, key=lambda z: (-len(z.origin), z.origin.to_text()))


# --------------------------------------------------------------------------- answering from the data


def zone_for(zones: list[_Zone], name: dns.name.Name) -> _Zone | None:
    """The zone that answers for `name`: the first containing it (`zones` is most specific first)."""
    for zone in zones:
        if name.is_subdomain(zone.origin):
            return zone
    return None


def respond(query: dns.message.Message, zones: list[_Zone], *, servfail: bool,
            recursion: bool) -> tuple[dns.message.Message, bool]:
    """The answer to a well-formed query (no response flag), and whether it is to be forwarded
    instead (a name outside the zones, on a server with forwarders: `recursion`)."""
    response = dns.message.make_response(query)
    if recursion:
        response.flags |= dns.flags.RA
    if servfail:
        response.set_rcode(dns.rcode.SERVFAIL)
    elif query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
    elif len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
    elif query.question[0].rdclass != dns.rdataclass.IN:
        response.set_rcode(dns.rcode.REFUSED)
    elif zone_for(zones, query.question[0].name) is not None:
        authoritative_answer(zones, query.question[0].name, query.question[0].rdtype, response)
    elif recursion:
        return response, True
    else:
        response.set_rcode(dns.rcode.REFUSED)
    return response, False


def authoritative_answer(zones: list[_Zone], qname: dns.name.Name, rdtype: int,
                         response: dns.message.Message) -> None:
    """Fill `response` from the zones: records, CNAMEs followed through them, NXDOMAIN or NODATA."""
    response.flags |= dns.flags.AA
    name = qname.canonicalize()
    seen: set[dns.name.Name] = set()
    for _ in range(MAX_CNAME_CHAIN + 1):
        zone = zone_for(zones, name)
        if zone is None or name in seen:
            return  # the chain leaves our data (the client follows it) or loops
        seen.add(name)
        node = zone.nodes.get(name)
        if node is None:
            if name not in zone.names:
                response.set_rcode(dns.rcode.NXDOMAIN)  # RFC 6604: about the last name of the chain
            response.authority.append(zone.soa)
            return
        if rdtype == dns.rdatatype.ANY:
            response.answer.extend(_owned(qname, name, rs) for rs in node.values())
            return
        if rdtype in node:
            response.answer.append(_owned(qname, name, node[rdtype]))
            return
        cname = node.get(dns.rdatatype.CNAME)
        if cname is None:
            response.authority.append(zone.soa)  # NODATA
            return
        response.answer.append(_owned(qname, name, cname))
        name = next(iter(cname)).target.canonicalize()


def _owned(qname: dns.name.Name, name: dns.name.Name, rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    """Echo the question's spelling for the first owner (0x20-style case, as servers do)."""
    if name == qname and name.to_text() != qname.to_text():
        copy = dns.rrset.RRset(qname, rrset.rdclass, rrset.rdtype)
        copy.update(rrset)
        return copy
    return rrset


def query_entry(query: dns.message.Message, rcode: int | None, client: str) -> QueryLogEntry:
    """The query log's row for `query` (rcode None: no answer was sent)."""
    q = query.question[0] if query.question else None
    return QueryLogEntry(
        q.name.to_text(omit_final_dot=True).lower() if q is not None else "",
        dns.rdatatype.to_text(q.rdtype) if q is not None else "",
        dns.rcode.to_text(cast(dns.rcode.Rcode, rcode)) if rcode is not None else None,
        client)


# --------------------------------------------------------------------------- the server


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: "LabDnsServer") -> None:
        self.server = server
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SO_RCVBUF_BYTES)
        except OSError:  # pragma: no cover - the kernel caps it at rmem_max anyway
            pass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._received(data, addr)

    def error_received(self, exc: Exception) -> None:  # pragma: no cover - ICMP from a vanished client
        log.debug("%s: %s", self.server.model.name, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class LabDnsServer:
    """One topology `DnsServer`, served on its real loopback address. See the module docstring."""

    def __init__(self, model: DnsServer, book: AddressBook, *, port: int = 53,
                 forward_timeout: float = FORWARD_TIMEOUT,
                 silent: Callable[[str], bool] | None = None) -> None:
        self.book = book
        # `silent(vip)`: the world keeps that forwarder silent (drop mode); only then is
        # `forward_timeout` the real wait, others get FORWARD_ANSWER_TIMEOUT (a safety net).
        self.silent = silent
        self.port = port
        self.forward_timeout = forward_timeout
        self.real_ip = guard_real(book.real_ip(model.ip))
        self.real_port = book.real_port(port)
        self.queries: list[QueryLogEntry] = []
        self._generation = 1
        self._zones = _compile(model, self._generation)
        self.model = model
        self._mode = DnsMode(getattr(model, "mode", "running")) if model.running else DnsMode.STOPPED
        self._started = False
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._opening: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def mode(self) -> DnsMode:
        return self._mode

    @property
    def address(self) -> tuple[str, int]:
        """The real (ip, port) the server listens on."""
        return (self.real_ip, self.real_port)

    @property
    def listening(self) -> bool:
        return self._transport is not None

    async def start(self) -> None:
        self._started = True
        if self._mode is not DnsMode.STOPPED:
            await self._open()

    async def stop(self) -> None:
        """Shut the server down (lab teardown); `start()` brings it back in its current mode."""
        self._started = False
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close()

    def set_mode(self, mode: DnsMode | str) -> asyncio.Task[None] | None:
        """Switch the fault mode. Closing the socket (`stopped`) happens at once; when the socket
        has to be opened again, the returned task does it (await it to know it is listening)."""
        mode = DnsMode(mode)
        self._mode = mode
        if not self._started:
            return None
        if mode is DnsMode.STOPPED:
            for task in list(self._tasks):
                task.cancel()
            if self._transport is not None:
                self._transport.close()
                self._transport = None
            return None
        if self._transport is None:
            if self._opening is None or self._opening.done():
                self._opening = self._spawn(self._open())
            return self._opening
        return None

    def update(self, model: DnsServer) -> None:
        """Replace zones and forwarders at run time. The address cannot change; the fault mode is
        set with `set_mode` (the runtime calls it from the model's `running`/`mode` after update)."""
        if model.ip != self.model.ip:
            raise TopologyError(f"DNS server {model.name}",
                                f"update cannot move the server from {self.model.ip} to {model.ip}")
        zones = _compile(model, self._generation + 1)  # raises before anything changes
        self._generation += 1
        self._zones = zones
        self.model = model

    async def _open(self) -> None:
        if self._protocol is not None:
            await self._protocol.closed  # the previous socket must be gone before we rebind
        if self._transport is not None or self._mode is DnsMode.STOPPED or not self._started:
            return
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(guard_real(self.real_ip), self.real_port),
            family=socket.AF_INET)
        self._transport, self._protocol = transport, protocol

    async def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._protocol is not None:
            await self._protocol.closed

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ answering

    def _client(self, addr: tuple[str, int]) -> str:
        return self.book.virtual_ip(addr[0]) or addr[0]

    def _send(self, response: dns.message.Message, query: dns.message.Message,
              addr: tuple[str, int], transport: asyncio.DatagramTransport) -> None:
        max_size = max(query.payload, 512) if query.edns >= 0 else 512
        try:
            # dnspython shuffles the records of each rrset when rendering unless told not to:
            # that, not the rrset itself, is the "order not kept" of stack-notes §6.
            wire = response.to_wire(max_size=max_size, want_shuffle=False)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            wire = response.to_wire(max_size=max_size, want_shuffle=False)
        self._log(query, response.rcode(), addr)
        if not transport.is_closing():
            transport.sendto(wire, addr)

    def _log(self, query: dns.message.Message, rcode: int | None, addr: tuple[str, int]) -> None:
        self.queries.append(query_entry(query, rcode, self._client(addr)))

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self._transport
        if transport is None or self._mode is DnsMode.STOPPED:
            return
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            self._formerr(data, addr, transport)
            return
        if query.flags & dns.flags.QR:
            return  # never answer a response (reflection loops)
        if self._mode is DnsMode.DROP:
            self._log(query, None, addr)
            return
        response, forward = respond(query, self._zones, servfail=self._mode is DnsMode.SERVFAIL,
                                    recursion=bool(self._forwarders()))
        if forward:
            self._spawn(self._forward(query, response, addr))
        else:
            self._send(response, query, addr, transport)

    def _formerr(self, data: bytes, addr: tuple[str, int], transport: asyncio.DatagramTransport) -> None:
        if len(data) < 12 or data[2] & 0x80:
            return  # not even a header, or a response: stay silent
        (qid,) = struct.unpack("!H", data[:2])
        response = dns.message.Message(id=qid)
        response.flags = dns.flags.QR
        response.set_rcode(dns.rcode.FORMERR)
        self.queries.append(QueryLogEntry("", "", "FORMERR", self._client(addr)))
        transport.sendto(response.to_wire(), addr)

    def _forwarders(self) -> list[str]:
        return [f for f in self.model.forwarders if f != self.model.ip]

    async def _forward(self, query: dns.message.Message, response: dns.message.Message,
                       addr: tuple[str, int]) -> None:
        q = query.question[0]
        result: dns.message.Message | None = None
        if len(self._tasks) <= MAX_FORWARDS_IN_FLIGHT:
            for vip in self._forwarders():
                result = await self._ask_forwarder(vip, q.name, q.rdtype)
                if result is not None and result.rcode() not in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                    break
                result = None
        if result is None:
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            response.set_rcode(result.rcode())
            response.answer = result.answer
            response.authority = result.authority
        transport = self._transport
        if transport is not None and self._mode is DnsMode.RUNNING:
            self._send(response, query, addr, transport)

    async def _ask_forwarder(self, vip: str, qname: dns.name.Name, rdtype: int) -> dns.message.Message | None:
        try:
            real = guard_real(self.book.real_ip(vip))
        except NetworkGuardError:
            return None  # a forwarder outside the lab: nothing answers there, like a dead address
        fq = dns.message.make_query(qname, cast(dns.rdatatype.RdataType, rdtype), use_edns=0, payload=_EDNS_PAYLOAD)
        dest = (real, self.book.real_port(53))
        backend = dns.asyncbackend.get_backend("asyncio")
        try:
            # A connected socket, so a stopped forwarder (ICMP port unreachable) fails at once.
            sock = await backend.make_socket(socket.AF_INET, socket.SOCK_DGRAM, 0,
                                             (guard_real(self.real_ip), 0), dest)
            async with sock:
                wait = (self.forward_timeout if self.silent is None or self.silent(vip)
                        else FORWARD_ANSWER_TIMEOUT)
                return await dns.asyncquery.udp(fq, real, timeout=wait, port=dest[1], sock=sock)
        except (OSError, EOFError, dns.exception.DNSException) as e:
            log.debug("%s: forwarder %s failed: %r", self.model.name, vip, e)
            return None
