"""Hostile SMTP clients against a running lab: it must survive, stay correct and lose no mail.

One bounded fuzz run per module (seeded, deterministic inputs; see tests/smtpfuzz): random and
grammar-based commands, long lines, NULs, bare CR/LF, smuggling sequences, BDAT with lying counts,
TLS junk, half-open and slow clients, pipelining floods, at the Front End, the Edge, EOP, an
Internet MTA and the Hub. Each test below is one property of that run; a failure prints the
sessions that broke it, with their transcripts and how to replay them alone.

`make test` runs a short fuzz; `make fuzz` a long one (LABSIM_FUZZ_SESSIONS, LABSIM_FUZZ_SEED;
LABSIM_FUZZ_ONLY=<session numbers> replays single sessions; LABSIM_FUZZ_OUT=<new dir> keeps the
lab's output tree).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from smtpfuzz import PROPS, FuzzConfig, FuzzReport, fuzz
from smtpfuzz.verdict import exlog_checker

SESSIONS = 100  # with the corpus (95 sessions), about 20 s on two busy cores once the server is fixed
SEED = 20261129


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> FuzzReport:
    cfg = FuzzConfig.from_env(SESSIONS, SEED)
    keep = os.environ.get("LABSIM_FUZZ_OUT")  # a directory to keep the lab's output in (must not exist)
    if keep and Path(keep).exists():
        pytest.fail(f"LABSIM_FUZZ_OUT={keep}: the directory exists; name a new one", pytrace=False)
    report = asyncio.run(fuzz(Path(keep) if keep else tmp_path_factory.mktemp("fuzz") / "out", cfg))
    print("\n" + report.summary())
    return report


def test_the_fuzz_ran_every_kind_of_session_and_sent_mail_through(run: FuzzReport) -> None:
    kinds = {s.kind for s in run.sessions}
    if not run.book.sent or len(run.sessions) < 50:
        pytest.skip("a replay of single sessions (LABSIM_FUZZ_ONLY) proves no coverage")
    assert {"grammar", "bdat", "smuggle", "random-lines", "flood", "starttls", "half-open", "slow", "rcpt-flood"} <= kinds
    assert run.account.accepted >= 20, run.summary()  # else the properties about mail prove nothing
    assert {s.entry.name for s in run.sessions} == {"FrontEnd", "Edge", "EOP", "MTA", "Hub"}


@pytest.mark.parametrize("prop", [p for p in PROPS if p != "logs"])
def test_property_holds(run: FuzzReport, prop: str) -> None:
    if run.findings[prop]:
        pytest.fail(run.explain(prop), pytrace=False)


def test_logs_pass_the_shared_checker(run: FuzzReport) -> None:
    if exlog_checker() is None:
        pytest.skip(run.logs_note)
    if run.findings["logs"]:
        pytest.fail(run.explain("logs"), pytrace=False)
