"""Get-Message's Recipients as Exchange shows them: one RecipientInfo per recipient,
`{address;status;type;lastError;lastErrorCode;finalDestination;outboundIPPool}` (transport.queues)."""

from __future__ import annotations

from datetime import UTC

from labsim.rules import replies as R
from labsim.scenario.loader import load_scenario
from labsim.shell.session import LabSession
from labsim.transport.message import MailItem
from labsim.transport.queues import (
    Queue,
    QueuedMessage,
    exchange_config_dn,
    recipient_info,
)

DN = exchange_config_dn("CloudMonkeys", "cloudmonkeys.xyz")


def _qm(status: str = "Ready", last_error: str = "") -> QueuedMessage:
    from datetime import datetime
    item = MailItem(server="CMHYBD01", internal_id=1, mail_from="a@b.c", recipients=["x@y.z"], data=b"",
                    message_id="<m@b.c>", network_message_id="n", subject="s",
                    arrived=datetime(2026, 5, 1, tzinfo=UTC))
    return QueuedMessage(item=item, recipients=["x@y.z"], status=status, last_error=last_error)


def test_unreachable_is_the_documented_example():
    q = Queue(identity="CMHYBD01\\Unreachable", delivery_type="Unreachable", next_hop_domain="Unreachable Domain")
    assert recipient_info(q, _qm(last_error=R.NO_MATCHING_CONNECTOR), "chris@contoso.com", DN,
                          R.NO_MATCHING_CONNECTOR) == (
        "chris@contoso.com;2;2;A matching connector cannot be found to route the external recipient;16;"
        "<No Matching Connector>;0")


def test_mailbox_and_connector_destinations_are_ad_names():
    assert DN == "CN=CloudMonkeys,CN=Microsoft Exchange,CN=Services,CN=Configuration,DC=cloudmonkeys,DC=xyz"
    q = Queue(identity="CMHYBD01\\3", delivery_type="SmtpDeliveryToMailbox", next_hop_domain="DB01")
    assert recipient_info(q, _qm(), "r@cloudmonkeys.xyz", DN, R.NO_MATCHING_CONNECTOR) == (
        "r@cloudmonkeys.xyz;2;3;;0;CN=DB01,CN=Databases,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),"
        f"CN=Administrative Groups,{DN};0")


async def test_get_message_in_the_shell(tmp_path):
    s = LabSession(load_scenario("cert-renewed-duplicate"), tmp_path)
    await s.start()
    try:
        await s.advance(300)
        objs = await s.ctx.commands["get-message"].fn(s.ctx, {}, [])
        retry = [o for o in objs if o.get("Status") == "Retry"]
        assert retry
        [info] = retry[0].get("Recipients")
        address, status, rtype, rest = info.split(";", 3)
        error, code, dest, pool = rest.rsplit(";", 3)  # the error has ';' of its own, the DN has none
        assert (address, status, rtype, code, pool) == ("ramki@cloudfield.mail.onmicrosoft.com", "3", "2", "0", "0")
        assert error.startswith('[{LRT=};{LED=451 4.4.0 Primary target IP address responded with: "421 4.2.1 Unable '
                                'to connect."') and error.endswith('};{FQDN=};{IP=}]')
        assert dest.startswith("CN=Outbound to Office 365,CN=Connections,CN=Exchange Routing Group (DWBGZMFD01QNBJR),")
    finally:
        await s.stop()
