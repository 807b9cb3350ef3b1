"""The web view (labsim/web): every page over real loopback HTTP, with content from real runs."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from conftest import run_cli, scenario_text

from labsim.web.app import make_app, start_web
from labsim.web.tree import OutputTree

PAGES = ["/", "/topology", "/messages", "/queues", "/sessions", "/events", "/training"]


@pytest.fixture(scope="module")
def crl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("web") / "crl"
    rc, stdout, stderr = run_cli(["run", "cert-crl-offline", "--out", str(out)])
    assert rc == 0, stdout + stderr
    return out


async def _client(out: Path, *, live: bool = False) -> TestClient:
    client = TestClient(TestServer(make_app(out, live=live), host="127.0.0.1"))
    await client.start_server()
    return client


def _text(page: str) -> str:
    """The page's text, tags removed and entities decoded (what a reader sees)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


async def test_every_page_answers_with_html_from_the_run(crl_run: Path):
    client = await _client(crl_run)
    try:
        for path in PAGES:
            resp = await client.get(path)
            assert resp.status == 200, path
            assert resp.headers["Content-Type"].startswith("text/html")
            body = await resp.text()
            assert "cert-crl-offline" in body and "http://" not in body.replace("http://www.w3.org/2000/svg", "")
        text = _text(await (await client.get("/training")).text())
        assert "netsh winhttp reset proxy" in text
        page = await (await client.get("/queues")).text()
        text = _text(page)
        assert "EXO\\1" in text and "454 4.7.5 Certificate validation failure" in text
        history = text[text.index("Every change (queue-history.jsonl)"):]
        assert history.count("EXO\\1") >= 8  # EXO's queue, retried every 15 minutes
        assert 'class="qname">EXO\\1</text>' in page  # a lane on the timeline
        text = _text(await (await client.get("/events")).text())
        assert "11022" in text and "RevocationOffline" in text
        assert (await client.get("/messages/no-such-message")).status == 404
        assert (await client.get("/session?key=nothing")).status == 404
    finally:
        await client.close()


async def test_topology_marks_the_edge_where_the_crl_fault_sits(crl_run: Path):
    client = await _client(crl_run)
    try:
        page = await (await client.get("/topology")).text()
    finally:
        await client.close()
    svg = page[page.index("<svg"):page.index("</svg>")]
    # CMEDGE01 is drawn failing (red) and carries the scenario's change; the Mailbox server is not marked
    edge = re.search(r'<g class="([^"]+)" data-node="CMEDGE01">', svg)
    hyb = re.search(r'<g class="([^"]+)" data-node="CMHYBD01">', svg)
    assert edge and edge.group(1) == "node failing"
    assert hyb and hyb.group(1) == "node"
    marks = _text(page[page.index("Where the scenario and its evidence sit"):page.index('id="node-')])
    assert "Set-LabWinHttpProxy -Server CMEDGE01 -ProxyServer 192.168.1.50:8080" in marks
    assert "event 11022 (MSExchangeTransport)" in marks
    assert "454 4.7.5 Certificate validation failure on CMEDGE01\\Inbound from Office 365" in marks
    # the details: connectors with bindings and ranges, certificates with their status
    text = _text(page)
    assert "Inbound from Office 365" in text and "40.92.0.0/15" in text and "WinHTTP proxy 192.168.1.50:8080" in text


async def test_a_deferred_message_leads_down_to_the_454_row(crl_run: Path):
    client = await _client(crl_run)
    try:
        page = await (await client.get("/messages/exo-to-onprem")).text()
        text = _text(page)
        assert "pending" in text and "Defer" in text
        events = text[text.index("Events on its way"):]
        assert events.count("11022") == 8 and "RevocationOffline" in events  # one per refused retry
        # the first refused session in the path links to the session page with its log rows
        link = re.search(r'<a href="(/session\?key=[^"]+)">session</a>', page)
        assert link
        session_page = await (await client.get(html.unescape(link.group(1)))).text()
        rows = re.findall(r"<tr( class=\"[a-z]+\")?>(.*?)</tr>", session_page)
        refusal = [cls for cls, row in rows if "454 4.7.5 Certificate validation failure" in row]
        assert refusal == [' class="bad"']
        assert "Client certificate chain validation status: &#x27;RevocationOffline&#x27;" in session_page
        # the whole log file with this session's rows highlighted
        log = re.search(r"href='(/log\?file=[^']+)'", session_page)
        assert log
        log_page = await (await client.get(html.unescape(log.group(1)))).text()
        assert ' class="hl"' in log_page and ' class="bad"' in log_page
        delivered = _text(await (await client.get("/messages/onprem-to-exo")).text())
        assert "delivered" in delivered and "250 2.6.0" in delivered
    finally:
        await client.close()


def test_hostile_content_is_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    folder = tmp_path / "scn"
    folder.mkdir()
    (folder / "hostile.toml").write_text(scenario_text(f"""
        [[message]]
        id = "m1"
        at = "+00:00:01"
        from = "alex@fabrikam.com"
        to = ["raghu@cloudmonkeys.xyz"]
        subject = '{hostile}'
        """, sid="hostile"), encoding="utf-8")
    monkeypatch.setenv("LABSIM_SCENARIOS", str(folder))  # the view finds the scenario by the marker's id
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli(["run", "hostile", "--out", str(out)])
    assert rc == 0, stdout + stderr

    async def check() -> None:
        client = await _client(out)
        try:
            for path in [*PAGES, "/messages/m1"]:
                body = await (await client.get(path)).text()
                assert "<script>alert" not in body and "<img src=x" not in body, path
            body = await (await client.get("/messages/m1")).text()
            assert html.escape(hostile, quote=True) in body
        finally:
            await client.close()

    asyncio.run(check())


def test_the_web_view_is_served_on_loopback_only(crl_run: Path):
    for bad in ("0.0.0.0:8025", "192.168.1.13:8025", "localhost:8025", "[::1]:8025", "127.0.0.1", "127.0.0.1:99999"):
        rc, out, err = run_cli(["view", str(crl_run), "--web", bad])
        assert rc == 2 and err.startswith("labsim: --web: ") and err.count("\n") == 1, (bad, err)
    rc, out, err = run_cli(["view", str(crl_run / "nothing")])
    assert rc == 2 and "not an output folder" in err


async def test_start_web_binds_the_asked_loopback_address(crl_run: Path):
    runner, port = await start_web(crl_run, "127.0.0.1", 0, live=False)
    try:
        assert port > 0
        async with ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/topology") as resp:
                assert resp.status == 200 and "<svg" in await resp.text()
    finally:
        await runner.cleanup()


def test_the_tree_reads_a_folder_that_is_still_empty(tmp_path: Path):
    tree = OutputTree(tmp_path)
    assert tree.messages() == [] and tree.queues() == {} and tree.sessions() == {} and tree.scenario() is None
    assert asyncio.run(_pages_of(tmp_path)) == [200] * len(PAGES)


async def _pages_of(out: Path) -> list[int]:
    client = await _client(out, live=True)
    try:
        return [(await client.get(p)).status for p in PAGES]
    finally:
        await client.close()


def test_the_queue_timeline_draws_counts_and_trouble():
    from labsim.web.pages import timeline

    hist = [{"Time": "2026-05-01T06:00:00Z", "Identity": "CMHYBD01\\1", "MessageCount": 1, "Status": "Ready"},
            {"Time": "2026-05-01T06:10:00Z", "Identity": "CMHYBD01\\1", "MessageCount": 2, "Status": "Retry",
             "LastError": "451 4.4.0 DNS query failed"},
            {"Time": "2026-05-01T06:40:00Z", "Identity": "CMHYBD01\\1", "MessageCount": 0, "Status": "Ready"},
            {"Time": "2026-05-01T06:20:00Z", "Identity": "<b>x</b>", "MessageCount": 1, "Status": "Ready"}]
    svg = timeline(hist, "2026-05-01T06:00:00Z", "2026-05-01T07:00:00Z", width=780)
    # one Retry span from 06:10 to 06:40: a quarter to three quarters of the 600 px wide plot
    assert svg.count('class="retry"') == 1
    assert '<rect x="270.0" y="42" width="300.0"' in svg  # the second lane (lanes sorted by name)
    assert "&lt;b&gt;x&lt;/b&gt;" in svg and "<b>x</b>" not in svg
