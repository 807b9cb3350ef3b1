"""`labsim up --web` as a person runs it: the listener table, the certificates it exports, a line
per session, the views and the web view on the live folder, and (with Chromium) a page that shows
the message an outside client has just sent."""

from __future__ import annotations

import asyncio
import queue
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiosmtplib
import pytest
from aiohttp import ClientSession
from browser import CHROMIUM, Browser
from conftest import run_cli

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (Debian: apt install chromium)")


class Up:
    """`labsim up hybrid-baseline --web 127.0.0.1:0` in its own process; stdout read in a thread."""

    def __init__(self, out: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "labsim.cli", "up", "hybrid-baseline", "--out", str(out),
                                      "--web", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=out.parent)
        self.lines: queue.Queue[str] = queue.Queue()
        self.table: dict[tuple[str, str], tuple[str, int]] = {}
        self.web = ""
        self.roots = Path()
        threading.Thread(target=self._read, daemon=True).start()
        header = self.until(lambda line: "sessions (one line each" in line, 60)
        for line in header:
            m = re.match(r"\s+(\S+)\s+(\S+)\s+(127\.[\d.]+):(\d+)\s+SMTP", line)
            if m:
                self.table[(m[1], m[2])] = (m[3], int(m[4]))
            if "web view: " in line:
                self.web = line.split("web view: ", 1)[1].strip().rstrip("/")
            if "this lab's certificates: " in line:
                self.roots = Path(line.split("(trust ", 1)[1].split(";", 1)[0])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace"))

    def until(self, cond, seconds: float) -> list[str]:  # noqa: ANN001
        seen, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if cond(line):
                return seen
        err = self.proc.stderr.read().decode() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError("".join(seen) + err)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


async def _send(host: str, port: int, subject: str, *, cafile: Path | None) -> str:
    ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else ssl.create_default_context()
    ctx.check_hostname = False  # an IP literal is dialled, as swaks --server does
    if cafile is None:
        ctx.verify_mode = ssl.CERT_NONE
    smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, local_hostname="outside.example")
    await smtp.connect()
    await smtp.ehlo()
    await smtp.starttls(tls_context=ctx)  # with cafile: verifies the Edge's certificate chain
    msg = f"From: alex@fabrikam.com\r\nTo: raghu@cloudmonkeys.xyz\r\nSubject: {subject}\r\n\r\nhello\r\n"
    _, reply = await smtp.sendmail("alex@fabrikam.com", ["raghu@cloudmonkeys.xyz"], msg.encode())
    await smtp.quit()
    return reply


async def _get(url: str) -> str:
    async with ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200, url
            return await resp.text()


async def test_up_certificates_transcript_views_and_live_web(tmp_path: Path):
    out = tmp_path / "live"
    up = Up(out)
    try:
        assert up.web.startswith("http://127.0.0.1:") and up.roots == out / "certs" / "lab-roots.pem"
        edge = up.table[("CMEDGE01", "192.168.1.25:25")]
        # the Edge's self-signed certificate verifies against the exported bundle (swaks --tls-verify)
        reply = await _send(*edge, "first by hand", cafile=up.roots)
        assert "Queued mail for delivery" in reply
        if shutil.which("swaks"):
            res = subprocess.run(["swaks", "--server", f"{edge[0]}:{edge[1]}", "--from", "alex@fabrikam.com",
                                  "--to", "raghu@cloudmonkeys.xyz", "--tls", "--tls-verify", "--tls-ca-path",
                                  str(up.roots), "--header", "Subject: by swaks"], capture_output=True, text=True,
                                 timeout=60)
            assert res.returncode == 0, res.stdout + res.stderr
        # one transcript line per session, as it ends
        lines = up.until(lambda line: "CMEDGE01 Edge receive" in line and "250 2.6.0" in line, 30)
        assert any(re.match(r"  \d\d:\d\d:\d\d  CMEDGE01 Edge receive  CMEDGE01\\Default internal receive connector "
                            r"CMEDGE01  127\.0\.0\.1:\d+ -> 192\.168\.1\.25:25  EHLO STARTTLS EHLO MAIL RCPT DATA QUIT"
                            r"  250 2\.6\.0 ", line) for line in lines), lines
        # the views and the web view read the live folder
        deadline = time.monotonic() + 20
        while "first by hand" not in (page := await _get(up.web + "/messages")) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert "first by hand" in page
        for argv in (["queue", str(out)], ["trace", str(out)], ["track", str(out), "--subject", "first by hand"]):
            rc, text, err = run_cli(argv)
            assert rc == 0, err
        assert "first by hand" in run_cli(["track", str(out), "--subject", "first by hand"])[1]
        if CHROMIUM is not None:
            await _live_page_shows_a_new_message(up, edge, tmp_path)
    finally:
        rc = up.stop()
    assert rc == 130


async def _live_page_shows_a_new_message(up: Up, edge: tuple[str, int], tmp_path: Path) -> None:
    browser = await Browser(tmp_path / "chromium").open()
    try:
        await browser.goto(up.web + "/messages")
        assert await browser.eval("document.body.innerText.includes('first by hand')")
        assert not await browser.eval("document.body.innerText.includes('sent just now')")
        await _send(*edge, "sent just now", cafile=up.roots)
        # nobody reloads: the page does, when the server tells it the lab's files changed
        await browser.wait_for("document.body.innerText.includes('sent just now')", 30)
    finally:
        await browser.close()


@pytest.fixture
def crl_out(tmp_path: Path) -> Path:
    out = tmp_path / "crl"
    rc, text, err = run_cli(["run", "cert-crl-offline", "--out", str(out)])
    assert rc == 0, text + err
    return out


@needs_chromium
async def test_a_browser_renders_the_topology_and_follows_a_message_to_its_454_row(crl_out: Path, tmp_path: Path):
    from labsim.web.app import start_web

    runner, port = await start_web(crl_out, "127.0.0.1", 0, live=False)
    browser = await Browser(tmp_path / "chromium").open()
    try:
        base = f"http://127.0.0.1:{port}"
        await browser.goto(base + "/topology")
        # drawn: the SVG has a size, the Edge's box is there and marked as where the evidence points
        assert await browser.eval("document.querySelector('svg.topology').getBBox().width") > 500
        assert await browser.eval("document.querySelector('g[data-node=CMEDGE01]').getAttribute('class')") == \
            "node failing"
        assert await browser.eval("document.querySelector('g[data-node=CMEDGE01] rect').getBoundingClientRect()"
                                  ".height") > 10
        await browser.goto(base + "/messages")
        await browser.eval("[...document.querySelectorAll('a')].find(a => a.textContent === 'exo-to-onprem').click()")
        await browser.wait_for("location.pathname === '/messages/exo-to-onprem' && document.readyState === 'complete'")
        await browser.eval("document.querySelector('a[href^=\"/session?\"]').click()")
        await browser.wait_for("location.pathname === '/session' && document.readyState === 'complete'")
        refused = await browser.eval("[...document.querySelectorAll('tr.bad')].map(r => r.innerText).join('\\n')")
        assert "454 4.7.5 Certificate validation failure" in refused
        await browser.eval("document.querySelector('a[href^=\"/log\"]').click()")
        await browser.wait_for("location.pathname === '/log' && document.readyState === 'complete'")
        assert await browser.eval("document.querySelectorAll('tr.hl').length") > 5
    finally:
        await browser.close()
        await runner.cleanup()
