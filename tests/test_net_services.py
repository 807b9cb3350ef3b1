"""Transport services and the Edge subscription at run time (engine.service_ops)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Run, folder_rows, run_cli, scenario_text


def run(write_scenario, tmp_path: Path, body: str, name: str = "s", duration: str = "00:05:00",
        rc_expected: int = 0) -> Run:
    path = write_scenario(scenario_text(body, sid=name, head=f'duration = "{duration}"\n'), f"{name}.toml")
    out = tmp_path / f"out-{name}"
    rc, stdout, stderr = run_cli(["run", str(path), "--out", str(out)])
    assert rc == rc_expected, stdout + stderr
    return Run(rc, stdout, stderr, out)


def services(r: Run) -> dict:
    return r.summary["services"]


def test_stopped_submission_keeps_mail_in_the_outbox_and_get_queue_empty(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        at = "+00:00:01"
        cmdlet = "Stop-Service"
        Name = "MSExchangeSubmission"
        Server = "CMHYBD01"

        [[message]]
        id = "out"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["alex@fabrikam.com"]
        """)
    held = r.message("out")["pending"]
    assert held == [{"recipient": "alex@fabrikam.com", "server": "CMHYBD01", "queue": "Outbox",
                     "last_error": "MSExchangeSubmission is not running"}]
    assert services(r)["servers"]["CMHYBD01"]["MSExchangeSubmission"] == "Stopped"
    assert [o["server"] for o in services(r)["outbox"]] == ["CMHYBD01"]
    assert all(q["MessageCount"] == 0 for q in r.summary["queues"])  # nothing in any transport queue


def test_a_stopped_edge_refuses_and_its_start_delivers_what_waited(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "Set-TransportService"
        Identity = "CMHYBD01"
        IntraOrgConnectorProtocolLoggingLevel = "Verbose"

        [[change]]
        at = "+00:00:01"
        cmdlet = "Stop-Service"
        Name = "MSExchangeTransport"
        Server = "CMEDGE01"

        [[change]]
        at = "+00:20:00"
        cmdlet = "Start-Service"
        Name = "MSExchangeTransport"
        Server = "CMEDGE01"

        [[message]]
        id = "out"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["alex@fabrikam.com"]
        """, duration="00:30:00")
    assert r.message("out")["fate"] == "delivered"
    rows = folder_rows(r.out, "CMHYBD01", "Hub", "SmtpSend")
    refused = [x for x in rows if "Winsock error code: 10061" in x[8]]
    assert refused and all("192.168.1.25:25" in x[8] for x in refused)  # the Edge's closed port
    delivered = [h for h in r.message("out")["hops"] if h["event"] == "DELIVER"][0]
    assert delivered["time"] >= "2026-05-01T06:20:00"


def test_stopping_mailbox_delivery_queues_on_the_hub(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        at = "+00:00:01"
        cmdlet = "Stop-Service"
        Name = "MSExchangeDelivery"
        Server = "CMHYBD01"

        [[message]]
        id = "in"
        at = "+00:01:00"
        from = "alex@fabrikam.com"
        to = ["priya@cloudmonkeys.xyz"]
        """)
    pending = r.message("in")["pending"][0]
    assert pending["server"] == "CMHYBD01" and "10061" in pending["last_error"]


def test_restarting_the_wrong_service_does_not_help_the_right_one_does(write_scenario, tmp_path):
    body = """
        [[change]]
        at = "+00:00:01"
        cmdlet = "Stop-Service"
        Name = "MSExchangeSubmission"
        Server = "CMHYBD01"

        [[change]]
        at = "+00:02:00"
        cmdlet = "Restart-Service"
        Name = "{svc}"
        Server = "CMHYBD01"

        [[message]]
        id = "out"
        at = "+00:01:00"
        from = "priya@cloudmonkeys.xyz"
        to = ["ramki@cloudmonkeys.xyz"]
        """
    wrong = run(write_scenario, tmp_path, body.format(svc="MSExchangeTransport"), name="wrong")
    assert wrong.message("out")["pending"][0]["queue"] == "Outbox"
    right = run(write_scenario, tmp_path, body.format(svc="MSExchangeSubmission"), name="right")
    assert right.message("out")["fate"] == "delivered"


def test_removed_edge_subscription_empties_the_edges_configuration(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        at = "+00:00:01"
        cmdlet = "Remove-EdgeSubscription"
        Identity = "CMEDGE01"

        [[change]]
        at = "+00:00:02"
        cmdlet = "Test-EdgeSynchronization"

        [[message]]
        id = "in"
        at = "+00:01:00"
        from = "alex@fabrikam.com"
        to = ["raghu@cloudmonkeys.xyz"]

        [[message]]
        id = "out"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["alex@fabrikam.com"]
        """)
    assert r.message("in")["failed"][0]["reason"] == "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"
    out = r.message("out")["pending"][0]
    assert out["queue"] == "CMHYBD01\\Unreachable"  # the EdgeSync connectors went with the subscription
    assert services(r)["edge_subscriptions"]["CMEDGE01"]["Subscribed"] is False
    assert services(r)["edge_sync_tests"][0]["SyncStatus"] == "Failed"


def test_resubscribing_while_adam_is_down_leaves_the_edge_empty(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        at = "+00:00:01"
        cmdlet = "Stop-Service"
        Name = "ADAM_MSExchange"
        Server = "CMEDGE01"

        [[change]]
        at = "+00:00:02"
        cmdlet = "Remove-EdgeSubscription"
        Identity = "CMEDGE01"

        [[change]]
        at = "+00:00:03"
        cmdlet = "New-EdgeSubscription"
        Server = "CMEDGE01"

        [[message]]
        id = "in"
        at = "+00:01:00"
        from = "alex@fabrikam.com"
        to = ["raghu@cloudmonkeys.xyz"]
        """)
    assert "non-accepted domain" in r.message("in")["failed"][0]["reason"]
    assert services(r)["edge_subscriptions"]["CMEDGE01"] == {"Subscribed": True, "Configuration": "Stale",
                                                             "LastSync": ""}


@pytest.mark.parametrize("cmdlet, params, problem", [
    ("Stop-Service", 'Name = "MSExchangeNope"\nServer = "CMHYBD01"', "no such Exchange service"),
    ("Stop-Service", 'Name = "ADAM_MSExchange"\nServer = "CMHYBD01"', "no such Exchange service"),
    ("Start-Service", 'Name = "MSExchangeTransport"\nServer = "NOPE"', "no server 'NOPE'"),
    ("Restart-Service", 'Name = "MSExchangeTransport"', "-Server is required"),
    ("Remove-EdgeSubscription", 'Identity = "CMHYBD01"', "not an Edge Transport server"),
    ("Send-LabSmtpCommands", 'Source = "NOPE"\nTarget = "CMEDGE01"\nCommands = ["QUIT"]', "-Source 'NOPE'"),
])
def test_bad_operation_parameters_fail_on_load_naming_the_step(write_scenario, tmp_path, cmdlet, params, problem):
    path = write_scenario(scenario_text(f"""
        [[change]]
        at = "+00:00:01"
        cmdlet = "{cmdlet}"
        {params}
        """), "bad.toml")
    rc, stdout, stderr = run_cli(["run", str(path), "--out", str(tmp_path / "o")])
    assert rc == 2 and "change[0]" in stderr and cmdlet in stderr and problem in stderr


def test_service_scenarios_hold_their_expectations(tmp_path):
    for sid in ("svc-transport-stopped", "svc-submission-stopped", "svc-edgesync-stale"):
        rc, stdout, _ = run_cli(["run", sid, "--out", str(tmp_path / sid)])
        assert rc == 0, stdout
