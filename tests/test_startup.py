"""`labsim show` and `list` start without the engine: only a scenario that names an operation on
the running lab, or changes a DNS server, loads what that needs (scenario/loader.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import run_cli, scenario_text

from labsim.engine.operations import OPERATIONS
from labsim.topology.changes import CMDLETS

HEAVY = ("asyncio", "aiohttp", "aiosmtplib", "cryptography", "dns", "labsim.engine", "labsim.net.dns_server")

PROBE = """
import json, sys
from labsim.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def _fresh_process(tmp_path: Path, *argv: str) -> dict:
    """`labsim ARGV` in a new interpreter: its exit code and which heavy modules it imported."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_configuration_cmdlets_and_operations_are_disjoint() -> None:
    # the loader decides "not an operation" from the configuration table alone
    assert not set(CMDLETS) & set(OPERATIONS)


def test_show_of_a_scenario_without_operations_loads_no_engine(tmp_path: Path) -> None:
    result = _fresh_process(tmp_path, "show", "hybrid-baseline")
    assert result == {"rc": 0, "loaded": []}


def test_a_scenario_with_an_operation_still_gets_its_checks(tmp_path: Path, write_scenario) -> None:  # noqa: ANN001
    path = write_scenario(scenario_text("""
        [[change]]
        cmdlet = "Retry-Queue"
        Identity = "CMHYBD01\\\\Submission"
    """))
    rc, _, err = run_cli(["show", str(path)])
    assert rc == 2 and "Retry-Queue acts on the running lab and needs a time" in err
    result = _fresh_process(tmp_path, "show", str(path))
    assert result["rc"] == 2 and "labsim.engine" in result["loaded"]


def test_a_timed_dns_change_is_still_compiled_at_load(write_scenario) -> None:  # noqa: ANN001
    path = write_scenario(scenario_text("""
        [[change]]
        cmdlet = "Set-TransportService"
        Identity = "CMHYBD01"
        MessageRetryInterval = "00:05:00"

        [[change]]
        at = "+00:10:00"
        cmdlet = "Set-LabDnsRecord"
        Server = "PUBLIC-DNS"
        ZoneName = "cloudmonkeys.xyz"
        Name = "smtp.cloudmonkeys.xyz"
        Type = "A"
        Value = "not-an-ip"
    """))
    rc, _, err = run_cli(["show", str(path)])
    assert rc == 2 and "change[1] (DNS server PUBLIC-DNS" in err and "'not-an-ip'" in err, err
