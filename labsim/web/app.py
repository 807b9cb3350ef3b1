"""The web view's HTTP server (aiohttp), bound to a loopback address only.

`labsim view OUTDIR` serves a folder until Ctrl-C; `labsim up --web` serves the live lab's folder
beside the lab, in the same event loop. Every page reads the folder again when it is asked for
(web/tree.py), so a live lab's pages show what its files hold now; /stream (server-sent events)
tells an open page when the files changed, and the page reloads.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from ..net.vnet import guard_real
from . import pages
from .tree import OutputTree

TREE: web.AppKey[OutputTree] = web.AppKey("tree", OutputTree)
LIVE: web.AppKey[bool] = web.AppKey("live", bool)
POLL_SECONDS = 0.5


def _html(text: str | None) -> web.Response:
    if text is None:
        raise web.HTTPNotFound(text="not in this output folder")
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                                            "script-src 'unsafe-inline'; img-src 'self'; "
                                                            "connect-src 'self'",
                                 "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


def _page(render: Callable[..., str | None]) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        tree, live = request.app[TREE], request.app[LIVE]
        # The files are read in a worker thread: a big log never stalls a live lab's event loop.
        return _html(await asyncio.to_thread(render, request, tree, live))
    return handler


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one `changed` message whenever the folder's files change."""
    tree = request.app[TREE]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await resp.prepare(request)
    last = await asyncio.to_thread(tree.stamp)
    quiet = 0
    try:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            now = await asyncio.to_thread(tree.stamp)
            if now != last:
                last, quiet = now, 0
                await resp.write(b"data: changed\n\n")
            else:
                quiet += 1
                if quiet * POLL_SECONDS >= 15:  # a comment line: finds a page that was closed, and ends here
                    quiet = 0
                    await resp.write(b": still here\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return resp


def make_app(out: Path, *, live: bool) -> web.Application:
    app = web.Application()
    app[TREE] = OutputTree(out)
    app[LIVE] = live
    r = app.router
    r.add_get("/", _page(lambda req, t, live: pages.overview(t, live=live)))
    r.add_get("/topology", _page(lambda req, t, live: pages.topology(t, live=live)))
    r.add_get("/messages", _page(lambda req, t, live: pages.messages(t, live=live)))
    r.add_get("/messages/{mid}", _page(lambda req, t, live: pages.message(t, req.match_info["mid"], live=live)))
    r.add_get("/queues", _page(lambda req, t, live: pages.queues(t, live=live)))
    r.add_get("/sessions", _page(lambda req, t, live: pages.sessions(t, live=live)))
    r.add_get("/session", _page(lambda req, t, live: pages.session(t, req.query.get("key", ""), live=live)))
    r.add_get("/log", _page(lambda req, t, live: pages.log_file(t, req.query.get("file", ""),
                                                                 req.query.get("session"), live=live)))
    r.add_get("/events", _page(lambda req, t, live: pages.events(t, live=live)))
    r.add_get("/training", _page(lambda req, t, live: pages.training(t, live=live)))
    r.add_get("/stream", stream)
    return app


async def start_web(out: Path, host: str, port: int, *, live: bool) -> tuple[web.AppRunner, int]:
    """Serve the view of `out` on host:port (loopback only); returns the runner and the bound port."""
    guard_real(host)
    runner = web.AppRunner(make_app(out, live=live), access_log=None, shutdown_timeout=0.25)  # up stops within 2 s
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        from ..errors import InputError

        raise InputError(f"--web {host}:{port}", f"cannot listen there: {exc.strerror or exc}") from None
    # the port actually bound when 0 was asked for
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)


async def serve_view(out: Path, host: str, port: int) -> None:
    """`labsim view`: serve until cancelled (Ctrl-C). A folder a live lab writes is followed live."""
    from ..engine.outdir import read_marker

    marker = read_marker(out) or {}
    live = marker.get("mode") == "up"
    runner, bound = await start_web(out, host, port, live=live)
    print(f"labsim view {out}: http://{host}:{bound}/ (Ctrl-C to stop)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
