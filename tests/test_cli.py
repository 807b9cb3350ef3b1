"""`labsim` as a user types it: list, show, run (exit 0 / 1 / 2), bad input as one line on stderr."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ONE_MESSAGE, REPO, run_cli, scenario_text


def test_list_prints_id_and_title():
    rc, out, err = run_cli(["list"])
    assert rc == 0 and err == ""
    assert any(line.split(None, 1) == ["hybrid-baseline", "Healthy hybrid mail flow in all four directions"]
               for line in out.splitlines())


def test_show_prints_the_training_text():
    rc, out, _ = run_cli(["show", "hybrid-baseline"])
    assert rc == 0
    assert out.startswith("hybrid-baseline: Healthy hybrid mail flow in all four directions\n")
    for heading in ("Symptom:", "What to look at:", "Root cause:", "Fix:"):
        assert f"\n{heading}\n" in out
    assert "Nothing to fix." in out


BAD_FILES = {
    "not TOML": 'id = "t"\ntitle = \n',
    "unknown key": scenario_text(head='colour = "red"\n'),
    "stranger as sender": scenario_text(ONE_MESSAGE.replace("raghu@cloudmonkeys.xyz", "eve@evil.example")),
    "unknown cmdlet": scenario_text('[[change]]\ncmdlet = "Set-Bogus"\n'),
    "bad parameter": scenario_text('[[change]]\ncmdlet = "Set-ReceiveConnector"\n'
                                   'Identity = "Default Frontend CMHYBD01"\nBogus = 1\n'),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_run_bad_file_exits_2_with_one_line_and_starts_nothing(write_scenario, tmp_path, case):
    path = write_scenario(BAD_FILES[case])
    out_dir = tmp_path / "out"
    rc, out, err = run_cli(["run", str(path), "--out", str(out_dir)])
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"labsim: {path}")
    assert "Traceback" not in err
    assert not out_dir.exists()  # stopped before anything started


def test_run_unknown_id_exits_2():
    rc, _, err = run_cli(["run", "no-such-scenario"])
    assert rc == 2 and err.startswith("labsim: no-such-scenario: no scenario with this id")
    assert err.count("\n") == 1


def test_bad_file_through_the_real_entry_point_has_no_traceback(write_scenario):
    path = write_scenario(BAD_FILES["stranger as sender"])
    res = subprocess.run([sys.executable, "-m", "labsim.cli", "run", str(path)], capture_output=True, text=True,
                         cwd=REPO, timeout=60, check=False)
    assert res.returncode == 2
    assert res.stdout == ""
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"labsim: {path}: message[0].from: eve@evil.example is not a mailbox of the lab")


@pytest.mark.integration
def test_run_exits_1_when_an_expectation_cannot_hold(write_scenario, tmp_path):
    path = write_scenario(scenario_text(ONE_MESSAGE + """
        [[expect.message]]
        id = "m"
        mailbox = "exo:ramki@cloudmonkeys.xyz"

        [[expect.log]]
        log = "CMEDGE01/Edge/SmtpSend"
        contains = "this text is never logged"
    """))
    rc, out, err = run_cli(["run", str(path), "--out", str(tmp_path / "out")])
    assert rc == 1, out + err
    assert "expectations: 0/2 hold" in out
    assert "FAILED message m in exo:ramki@cloudmonkeys.xyz: delivered to internet:alex@fabrikam.com" in out
    assert "FAILED log CMEDGE01/Edge/SmtpSend has 'this text is never logged'" in out
    assert (tmp_path / "out" / "summary.json").is_file()


@pytest.mark.integration
def test_run_exits_0_and_honours_out_and_seed(write_scenario, tmp_path):
    path = write_scenario(scenario_text(ONE_MESSAGE + '[[expect.message]]\nid = "m"\nfate = "delivered"\n'))
    out_dir = tmp_path / "here"
    rc, out, _ = run_cli(["run", str(path), "--out", str(out_dir), "--seed", "42"])
    assert rc == 0
    assert "m: raghu@cloudmonkeys.xyz -> alex@fabrikam.com  [delivered]" in out
    assert "expectations: 1/1 hold" in out
    assert f"summary: {out_dir / 'summary.json'}" in out
    assert '"seed": 42' in (out_dir / "summary.json").read_text()


@pytest.mark.integration
def test_run_defaults_to_labsim_out_of_the_scenario_id(write_scenario, tmp_path, monkeypatch):
    path = write_scenario(scenario_text(sid="my-case"))
    monkeypatch.chdir(tmp_path)
    rc, _, _ = run_cli(["run", str(path)])
    assert rc == 0 and (tmp_path / "labsim-out" / "my-case" / "summary.json").is_file()
