"""EOP's block-list replies: the words depend on which list matched, and reproduce real rejections."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_text

from labsim.rules import replies as R
from labsim.rules.reputation import eop_block_reply

DATA = Path(__file__).parent / "data" / "eop-block-list-replies.txt"
STAMP = "FE01.eop-nam12.prod.protection.outlook.com 2026-05-01T06:00:00.000Z 08DE0000000000AA"


def captures() -> list[tuple[str, str, str, str]]:
    lines = [ln for ln in DATA.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    out = []
    for key, reply in zip(lines[::2], lines[1::2]):
        zone, ip, stamp = key.split("|")
        out.append((zone, ip, stamp, reply))
    return out


@pytest.mark.parametrize("zone,ip,stamp,real", captures(), ids=[c[0] for c in captures()])
def test_reply_reproduces_a_real_rejection(zone, ip, stamp, real):
    assert eop_block_reply(ip, zone, "whatever the lab calls it", stamp) == real


@pytest.mark.parametrize("zone", ["zen.spamhaus.org", "pbl.spamhaus.org", "SBL.Spamhaus.org.",
                                  "xbl.spamhaus.org", "abcdefkey.zen.dq.spamhaus.net"])
def test_every_spamhaus_zone_gets_spamhauss_words_whatever_the_lab_name(zone):
    text = R.exo_block_list_reply(zone, "203.0.113.25", "My provider", STAMP)
    assert text == ("550 5.7.1 Service unavailable, Client host [203.0.113.25] blocked using Spamhaus. To request "
                    "removal from this list see https://www.spamhaus.org/query/ip/203.0.113.25 AS(1450) "
                    f"[{STAMP}]")


def test_microsofts_own_list_is_a_5_7_606_ban_without_spamhaus():
    text = R.exo_block_list_reply("88.blocklist.zap", "203.0.113.25", "Microsoft", STAMP)
    assert text.startswith("550 5.7.606 Access denied, banned sending IP [203.0.113.25]. ")
    assert "https://sender.office.com/" in text
    assert "spamhaus" not in text.lower() and "AS(1450)" not in text


@pytest.mark.parametrize("zone", ["bl.spamcop.net", "notspamhaus.org", "spamhaus.org.example"])
def test_a_list_eop_does_not_use_names_itself_and_not_spamhaus(zone):
    text = R.exo_block_list_reply(zone, "198.51.100.7", "SpamCop", STAMP)
    assert text == f"550 5.7.1 Service unavailable, Client host [198.51.100.7] blocked using SpamCop [{STAMP}]"
    assert "spamhaus" not in text.lower()


def test_table_rows_are_distinct_zones_in_lower_case():
    zones = [r.zone for r in R.EXO_BLOCK_LIST_REPLIES]
    assert len(zones) == len(set(zones))
    assert all(z == z.lower().strip(".") for z in zones)


def test_eop_words_the_rejection_by_the_list_that_matched(write_scenario, tmp_path):
    """Two lists at EOP; the address is only on Microsoft's: the 5.7.606 ban, not Spamhaus's words."""
    r = run_text(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "Set-LabTenant"
        IpBlockLists = { "zen.spamhaus.org" = "Spamhaus", "88.blocklist.zap" = "Microsoft" }

        [[change]]
        cmdlet = "New-LabDnsZone"
        Server = "PUBLIC-DNS"
        Name = "88.blocklist.zap"

        [[change]]
        cmdlet = "Set-LabDnsRecord"
        Server = "PUBLIC-DNS"
        ZoneName = "88.blocklist.zap"
        Name = "25.113.0.203.88.blocklist.zap"
        Type = "A"
        Value = "127.0.0.2"

        [[message]]
        id = "direct"
        at = "+00:01:00"
        from = "alex@fabrikam.com"
        to = ["ramki@cloudfield.onmicrosoft.com"]
        """, "ms-list", duration="00:05:00")
    reason = r.message("direct")["failed"][0]["reason"]
    assert reason.startswith("550 5.7.606 Access denied, banned sending IP [203.0.113.25]. To request removal")
    assert "spamhaus" not in reason.lower()
