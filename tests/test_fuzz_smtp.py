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


# --- the judge itself: each check can fail (synthetic runs, no lab) ---------------------------------
def _book_and_report(tmp_path: Path) -> tuple[FuzzReport, list]:
    from smtpfuzz.sessions import Entry, MessageBook, Session

    entry = Entry("FrontEnd", "127.0.0.1", 25, "SMTP FrontEnd", "alex@fabrikam.com", ("raghu@cloudmonkeys.xyz",), True)
    book = MessageBook("t", lambda *a: None)
    session = Session(7, "grammar", entry, "t/7")
    sent = [book.new(7, entry, entry.sender, ["raghu@cloudmonkeys.xyz"]) for _ in range(4)]
    smuggled = book.new(7, entry, entry.sender, ["raghu@cloudmonkeys.xyz"], smuggled=True)
    for s in sent:
        s.accepted = True
    return FuzzReport(1, book, [session], tmp_path), [*sent, smuggled]


def _deliver(out: Path, n: int, mid: str, body: str) -> None:
    path = out / "mailboxes" / "onprem-DB01" / "raghu@cloudmonkeys.xyz" / f"{n:04d}.eml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"Message-ID: {mid}\r\n\r\n{body}\r\n".encode())


def test_the_accounting_finds_lost_extra_duplicate_and_truncated_mail(tmp_path: Path) -> None:
    from smtpfuzz.inputs import end_marker
    from smtpfuzz.verdict import account

    report, (ok, lost, twice, cut, hidden) = _book_and_report(tmp_path)
    _deliver(tmp_path, 1, ok.mid, end_marker(ok.mid).decode())
    _deliver(tmp_path, 2, twice.mid, end_marker(twice.mid).decode())
    _deliver(tmp_path, 3, twice.mid, end_marker(twice.mid).decode())
    _deliver(tmp_path, 4, cut.mid, "the content ended early")
    _deliver(tmp_path, 5, hidden.mid, "smuggled")
    _deliver(tmp_path, 6, "<stranger@fuzz.labsim.test>", "")
    summary = {"messages": [{"message_id": m.mid, "fate": "delivered", "hops": [], "delivered": [{}]}
                            for m in (ok, twice, cut)]
               + [{"message_id": lost.mid, "fate": "lost", "hops": [], "failed": []}],
               "internal_errors": ["settle: 1 session(s) still open after 15.0 s"]}
    account(report, summary)
    assert [lost.mid in f for f in report.findings["lost"]] == [True]
    assert len(report.findings["extra"]) == 2 and "smuggled" in report.findings["extra"][0]
    assert [twice.mid in f for f in report.findings["duplicate"]] == [True]
    assert [cut.mid in f for f in report.findings["truncated"]] == [True]
    assert report.findings["internal"] and report.account.accepted == 4 and report.account.delivered == 3


def test_control_bytes_in_a_log_row_are_found(tmp_path: Path) -> None:
    from smtpfuzz.verdict import check_log_bytes

    report, _ = _book_and_report(tmp_path)
    log = tmp_path / "S" / "ProtocolLog" / "SmtpReceive" / "RECV1.LOG"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"#Fields: x\r\n2026-01-01T00:00:00.000Z,c,1,0,1.2.3.4:25,127.0.0.1:5000,<,EHLO a\\r b,\r\n"
                    b"2026-01-01T00:00:00.000Z,c,1,1,1.2.3.4:25,127.0.0.1:5000,<,EHLO a\x00b,\r\n")
    check_log_bytes(report)
    assert len(report.findings["log-control"]) == 1 and "line 3" in report.findings["log-control"][0]


def test_hostile_content_keeps_its_bare_line_feeds_and_shows_short() -> None:
    from smtpfuzz.inputs import dot_stuff
    from smtpfuzz.wire import show

    assert dot_stuff(b".a\r\n.b\n.c\r\n") == b"..a\r\n..b\n.c\r\n"  # a dot after a bare LF is the probe
    assert show(b"EHLO " + b"A" * 70000 + b"\r\n") == "b'EHLO ' + b'A'*70000 + b'\\r\\n'"
