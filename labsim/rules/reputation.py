"""Sender reputation by DNS block lists: which name to ask, what counts as a listing, what is said.

Two consumers, one mechanism (a DNS A query of `<reversed IP>.<zone>` to the lab's DNS):

* Exchange's Connection Filtering agent on an Edge (Add-IPBlockListProvider). At RCPT TO, for a
  session without the BypassAntiSpam right, each enabled provider in priority order is asked; an
  answer matches only through AnyMatch, BitmaskMatch or IPAddressesMatch (with none of them set,
  nothing matches). The reply is `550 5.7.1 ` + the provider's RejectionResponse formatted with
  {0}=client IP, {1}=provider name, {2}=lookup domain, or Exchange's default text. Source: the
  agent's code (ConnectionFilteringAgent.BlockListDnsCallback / MatchResult / CreateSmtpRejectionResponse,
  decompiled in evilashz/exchange-server-27065; docs/network-dns-routing.md §3).
* EOP's front end for mail it does not attribute to an on-premises inbound connector: any
  answer from the block list zone is a listing (Spamhaus zones answer 127.0.0.x only for listed
  addresses), rejected at RCPT TO with the words EOP uses for that list (R.exo_block_list_reply, by zone).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

from ..topology.model import IPAllowListConfig, IPBlockListProvider, IPListEntry
from . import replies as R
from .iprange import parse_range

__all__ = ["query_name", "provider_matches", "connection_filter_reply", "eop_block_reply", "providers_in_order",
           "on_ip_allow_list"]


def query_name(ip: str, zone: str) -> str:
    """27.7.57.241 + zen.spamhaus.org -> 241.57.7.27.zen.spamhaus.org (IPv4 only, as the agent)."""
    octets = str(ipaddress.IPv4Address(ip)).split(".")
    return ".".join(reversed(octets)) + "." + zone.strip(".").lower()


def provider_matches(provider: IPBlockListProvider, answers: list[str]) -> bool:
    """ConnectionFilteringAgent.MatchResult: AnyMatch, else a bitmask overlap, else an exact code."""
    for a in answers:
        if provider.any_match:
            return True
        if provider.bitmask_match:
            mask = ipaddress.IPv4Address(provider.bitmask_match).packed
            got = ipaddress.IPv4Address(a).packed
            if any(m & g for m, g in zip(mask, got)):
                return True
        if a in provider.ip_addresses_match:
            return True
    return False


def providers_in_order(providers: list[IPBlockListProvider]) -> list[IPBlockListProvider]:
    return sorted((p for p in providers if p.enabled), key=lambda p: (p.priority, p.name.lower()))[:25]


def _dotnet_format(template: str, args: list[str]) -> str:
    """string.Format with positional {n}; a bad template raises ValueError (as FormatException)."""
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c == "{":
            if template.startswith("{{", i):
                out.append("{")
                i += 2
                continue
            j = template.find("}", i)
            if j < 0 or not template[i + 1:j].isdigit() or int(template[i + 1:j]) >= len(args):
                raise ValueError(template)
            out.append(args[int(template[i + 1:j])])
            i = j + 1
        elif c == "}":
            if template.startswith("}}", i):
                out.append("}")
                i += 2
                continue
            raise ValueError(template)
        else:
            out.append(c)
            i += 1
    return "".join(out)


def connection_filter_reply(provider: IPBlockListProvider, client_ip: str) -> str:
    text = R.IP_BLOCK_LIST_DEFAULT_TEXT
    if provider.rejection_response:
        try:
            text = _dotnet_format(provider.rejection_response, [client_ip, provider.name, provider.lookup_domain])
        except ValueError:
            text = R.IP_BLOCK_LIST_DEFAULT_TEXT  # the agent falls back on a FormatException
    return R.IP_BLOCK_LIST_REJECT.format(text=text)


def eop_block_reply(client_ip: str, zone: str, provider: str, stamp: str) -> str:
    return R.exo_block_list_reply(zone, client_ip, provider, stamp)


def on_ip_allow_list(entries: list[IPListEntry], config: IPAllowListConfig, ip: str, now: datetime,
                     external: bool = True) -> bool:
    """The Connection Filtering agent's OnConnect: is the connecting address on the Edge's IP Allow list?

    Only when the list is enabled for this kind of connection (CommonUtils.IsEnabled: Enabled and
    ExternalMailEnabled for an external connection, InternalMailEnabled for an internal one) and
    the entry has not expired. A session on the list skips the block list providers at RCPT TO
    ("Connecting IP on allow list.  Skipping verification.", ConnectionFilteringAgent.OnRcptToHandler).
    """
    if not config.enabled or not (config.external_mail_enabled if external else config.internal_mail_enabled):
        return False
    for e in entries:
        if e.expiration_time is not None and e.expiration_time.replace(tzinfo=None) <= now.replace(tzinfo=None):
            continue
        try:
            if ip in parse_range(e.ip_range):
                return True
        except ValueError:
            continue
    return False
