"""The web view's pages: plain server-rendered HTML from an OutputTree (web/tree.py).

Every value that comes from a file (subjects, addresses, replies, log rows, scenario text) goes
through `e()` (html.escape, quotes too) or into a URL through `q()`; nothing from a file is ever
written into the page unescaped. One inline stylesheet; on a live lab a three-line inline script
reloads the page when the server says the files changed (/stream, server-sent events).
"""

from __future__ import annotations

import html
from typing import Any, Iterable
from urllib.parse import quote

from .protolog import Session
from .topology import build, mark_changes, mark_evidence, svg
from .tree import OutputTree

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#0f3b63;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header a:hover{text-decoration:underline}
header .title{font-weight:600;margin-right:12px}header .live{background:#c62828;border-radius:4px;padding:0 6px}
main{padding:12px 16px}h1{font-size:20px}h2{font-size:16px;margin-top:22px}
table{border-collapse:collapse;background:#fff;margin:6px 0;font-size:13px}
th,td{border:1px solid #d5d9de;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.mono,pre,code{font-family:ui-monospace,Consolas,monospace;font-size:12px}
tr.bad td{background:#fdecea}tr.hl td{background:#fff6c8}tr.dim td{color:#888}
.fate-delivered{color:#1b7f3b;font-weight:600}.fate-pending{color:#b26a00;font-weight:600}
.fate-failed{color:#c62828;font-weight:600}.fate-partial{color:#b26a00;font-weight:600}
svg.topology{background:#fff;border:1px solid #d5d9de;max-width:100%;height:auto}
svg .node rect{fill:#e8f0fb;stroke:#4a6f98;stroke-width:1.5}
svg .node.changed rect{fill:#fff4d6;stroke:#c98a00;stroke-width:2.5}
svg .node.failing rect{fill:#fdecea;stroke:#c62828;stroke-width:3}
svg text{font:12px system-ui,sans-serif;fill:#1b1f24}svg text.name{font-weight:600;font-size:13px}
svg text.addr{font-family:ui-monospace,monospace;font-size:11px}svg .link{stroke:#8a99a8;stroke-width:1.5}
svg text.linklabel{font-size:10px;fill:#345;text-anchor:middle;paint-order:stroke;stroke:#fff;stroke-width:3px}
.mark-changed{background:#fff4d6}.mark-failing{background:#fdecea}
.muted{color:#667}
svg.timeline{background:#fff;border:1px solid #d5d9de}svg.timeline .qname{font:11px ui-monospace,monospace}
svg.timeline .axis{stroke:#ccd}svg.timeline .count{fill:none;stroke:#0f3b63;stroke-width:1.5}
svg.timeline .retry{fill:#c62828;opacity:.15}svg.timeline .tick{font-size:10px;fill:#566}
svg.timeline .tick.end{text-anchor:end}
"""

LIVE_SCRIPT = ("<script>(function(){var s=new EventSource('/stream');"
               "s.onmessage=function(){location.reload()};})();</script>")


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def q(value: Any) -> str:
    return quote(str(value), safe="")


def page(tree: OutputTree, title: str, body: str, *, live: bool) -> str:
    marker = tree.marker()
    sid = marker.get("scenario", tree.out.name)
    nav = "".join(f'<a href="{href}">{label}</a>' for href, label in (
        ("/", "Overview"), ("/topology", "Topology"), ("/messages", "Messages"), ("/queues", "Queues"),
        ("/sessions", "Sessions"), ("/events", "Events"), ("/training", "Training")))
    badge = '<span class="live">LIVE</span>' if live else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)} · labsim {e(sid)}</title>"
            f"<style>{STYLE}</style></head><body><header><span class=title>labsim · {e(sid)}</span>{badge}"
            f"{nav}</header><main>{body}</main>{LIVE_SCRIPT if live else ''}</body></html>")


def table(columns: Iterable[str], rows: Iterable[Iterable[str]], *, classes: Iterable[str] | None = None) -> str:
    """`rows` hold HTML already escaped (cells are built with e())."""
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    cls = list(classes) if classes is not None else None
    body = []
    for i, r in enumerate(rows):
        c = f' class="{cls[i]}"' if cls and cls[i] else ""
        body.append(f"<tr{c}>" + "".join(f"<td>{cell}</td>" for cell in r) + "</tr>")
    if not body:
        return "<p class=muted>(nothing)</p>"
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fate(fate: Any) -> str:
    return f'<span class="fate-{e(fate)}">{e(fate)}</span>'


def _msg_link(m: dict[str, Any]) -> str:
    return f'<a href="/messages/{q(m.get("id", ""))}">{e(m.get("id", ""))}</a>'


def _session_link(s: Session, text: str | None = None) -> str:
    return f'<a href="/session?key={q(s.key)}">{e(text if text is not None else s.key)}</a>'


def _reason(m: dict[str, Any]) -> str:
    for kind, field in (("pending", "last_error"), ("failed", "reason")):
        for x in m.get(kind, []) or []:
            if isinstance(x, dict) and x.get(field):
                return str(x[field])
    return ""


# --- pages ----------------------------------------------------------------------------------------
def overview(tree: OutputTree, *, live: bool) -> str:
    marker, summary = tree.marker(), tree.summary()
    loaded = tree.scenario()
    title = loaded.scenario.title if loaded else ""
    msgs = tree.messages()
    fates: dict[str, int] = {}
    for m in msgs:
        fates[str(m.get("fate"))] = fates.get(str(m.get("fate")), 0) + 1
    facts = [("folder", str(tree.out)), ("scenario", f"{marker.get('scenario', '?')}: {title}"),
             ("mode", str(marker.get("mode", "?"))), ("seed", str(marker.get("seed", summary.get("seed", "")))),
             ("time", f"{summary.get('start', '')} .. {summary.get('end', '')}"),
             ("messages", ", ".join(f"{n} {f}" for f, n in sorted(fates.items())) or "none yet")]
    body = f"<h1>{e(marker.get('scenario', tree.out.name))}</h1>"
    body += table(("", ""), ([f"<b>{e(k)}</b>", e(v)] for k, v in facts))
    body += "<h2>Messages</h2>" + _messages_table(msgs)
    return page(tree, "Overview", body, live=live)


def _messages_table(msgs: list[dict[str, Any]]) -> str:
    rows, cls = [], []
    for m in msgs:
        rows.append([_msg_link(m), e(m.get("from")), e(", ".join(map(str, m.get("to", []) or []))),
                     e(m.get("subject", "")), _fate(m.get("fate")), e(m.get("injected", "")), e(_reason(m))])
        cls.append("bad" if m.get("fate") in ("pending", "failed", "partial") else "")
    return table(("id", "from", "to", "subject", "fate", "sent", "last error / reason"), rows, classes=cls)


def messages(tree: OutputTree, *, live: bool) -> str:
    return page(tree, "Messages", "<h1>Messages</h1>" + _messages_table(tree.messages()), live=live)


def message(tree: OutputTree, mid: str, *, live: bool) -> str | None:
    view = tree.message(mid)
    if view is None:
        return None
    m = view.data
    body = f"<h1>Message {e(mid)}</h1>"
    body += table(("", ""), [
        ["<b>from</b>", e(m.get("from"))], ["<b>to</b>", e(", ".join(map(str, m.get("to", []) or [])))],
        ["<b>subject</b>", e(m.get("subject", ""))], ["<b>Message-ID</b>", f"<code>{e(m.get('message_id', ''))}</code>"],
        ["<b>sent</b>", e(m.get("injected", ""))], ["<b>fate</b>", _fate(m.get("fate"))]])
    ends = []
    for d in m.get("delivered", []) or []:
        ends.append(["delivered", e(d.get("server", "")), e(d.get("recipient", "")), e(d.get("path", ""))])
    for f in m.get("failed", []) or []:
        ends.append(["failed", e(f.get("server", "")), e(f.get("recipient", "")), e(f.get("reason", ""))])
    for p in m.get("pending", []) or []:
        ends.append(["pending", e(f"{p.get('server', '')} {p.get('queue', '')}"), e(p.get("recipient", "")),
                     e(p.get("last_error", ""))])
    body += "<h2>Where it ended</h2>" + table(("fate", "server / queue", "recipient", "detail"), ends)
    rows, cls = [], []
    sessions = {s.key: s for s in view.sessions}
    for st in view.steps:
        what = _session_link(sessions[st.session], "session") if st.session in sessions else e(st.what)
        rows.append([f"<span class=mono>{e(st.time)}</span>", e(st.server), what, e(st.where),
                     f"<span class=mono>{e(st.detail)}</span>", e(st.source)])
        cls.append("bad" if st.bad else "")
    body += ("<h2>Path, hop by hop</h2><p class=muted>From the message tracking logs, EXO's message trace and "
             "the protocol log sessions that carried it (or were refused it); a session opens its log rows.</p>")
    body += table(("time", "server", "step", "connector / where", "reply / status / detail", "from"), rows, classes=cls)
    body += "<h2>Protocol log sessions</h2>" + _sessions_table(view.sessions)
    evs = [[e(x.get("time")), e(x.get("server")), e(x.get("source")), e(x.get("id")),
            e(" | ".join(map(str, x.get("strings", []) or [])))] for x in view.events]
    body += "<h2>Events on its way</h2><p class=muted>Application log events raised on a server of its path " \
            "between its first and last step.</p>" + table(("time", "server", "source", "event id",
                                                               "insertion strings"), evs)
    trk = [[e(r.get("Timestamp")), e(r.get("Server")), e(r.get("EventId")), e(r.get("Source")),
            e(r.get("ConnectorId")), e(r.get("Recipients")), f"<span class=mono>{e(r.get('RecipientStatus'))}</span>"]
           for r in view.tracking]
    body += "<h2>Message tracking rows</h2>" + table(
        ("Timestamp", "Server", "EventId", "Source", "ConnectorId", "Recipients", "RecipientStatus"), trk)
    return page(tree, f"Message {mid}", body, live=live)


def _sessions_table(sessions: Iterable[Session]) -> str:
    rows, cls = [], []
    for s in sessions:
        r = s.first
        verbs = " ".join(c.split(" ", 1)[0].upper() for c in s.commands() if c)
        peer = f"{r.remote} → {r.local}" if s.receive else f"{r.local} → {r.remote}"
        outcome = s.outcome()
        rows.append([f"<span class=mono>{e(r.time)}</span>", _session_link(s, r.session),
                     e(f"{r.server} {r.service} {'receive' if s.receive else 'send'}"), e(r.connector),
                     f"<span class=mono>{e(peer)}</span>", e(verbs), f"<span class=mono>{e(outcome)}</span>",
                     e(s.disconnect() or "open")])
        cls.append("bad" if outcome[:1] in ("4", "5") else "")
    return table(("start", "session", "where", "connector", "endpoints", "commands", "outcome", "end"), rows,
                 classes=cls)


def sessions(tree: OutputTree, *, live: bool) -> str:
    all_sessions = sorted(tree.sessions().values(), key=lambda s: (s.first.time, s.key))
    body = f"<h1>SMTP sessions</h1><p class=muted>{len(all_sessions)} session(s) in the protocol logs.</p>"
    return page(tree, "Sessions", body + _sessions_table(all_sessions), live=live)


def session(tree: OutputTree, key: str, *, live: bool) -> str | None:
    s = tree.sessions().get(key)
    if s is None:
        return None
    body = f"<h1>Session {e(s.first.session)}</h1><p>{e(s.first.server)} {e(s.first.service)} " \
           f"{e(s.first.kind)}, connector <b>{e(s.first.connector)}</b>, log <code>{e(s.first.file)}</code> " \
           f"(<a href='/log?file={q(s.first.file)}&amp;session={q(s.first.session)}'>the whole file, this " \
           f"session highlighted</a>)</p>"
    body += _rows_table(s.rows, s.first.session)
    return page(tree, f"Session {s.first.session}", body, live=live)


def _rows_table(rows: Iterable[Any], highlight: str | None) -> str:
    out, cls = [], []
    for r in rows:
        out.append([f"<span class=mono>{e(r.time)}</span>", e(r.connector), f"<span class=mono>{e(r.session)}</span>",
                    e(r.seq), e(r.local), e(r.remote), e(r.event), f"<span class=mono>{e(r.data)}</span>", e(r.context)])
        hl = highlight is not None and r.session == highlight
        bad = r.event == ">" and r.data[:1] in ("4", "5") if r.kind == "SmtpReceive" else \
            r.event == "<" and r.data[:1] in ("4", "5")
        cls.append("hl" if hl and not bad else "bad" if bad and (hl or highlight is None) else
                   "dim" if highlight is not None and not hl else "")
    return table(("date-time", "connector-id", "session-id", "sequence-number", "local-endpoint", "remote-endpoint",
                  "event", "data", "context"), out, classes=cls)


def log_file(tree: OutputTree, file: str, session_id: str | None, *, live: bool, limit: int = 5000) -> str | None:
    rows = [r for s in tree.sessions().values() for r in s.rows if r.file == file]
    if not rows:
        return None
    rows.sort(key=lambda r: (r.time, r.session, r.seq))
    note = f" (the first {limit} rows)" if len(rows) > limit else ""
    body = f"<h1>{e(file)}</h1><p class=muted>{len(rows)} row(s){e(note)}</p>" + _rows_table(rows[:limit], session_id)
    return page(tree, file, body, live=live)


def queues(tree: OutputTree, *, live: bool) -> str:
    data = tree.queues()
    body = "<h1>Queues</h1><p class=muted>As Get-Queue and Get-Message show them " \
           f"(queues.json, {e(data.get('time', 'not written yet'))}).</p>"
    for server, info in (data.get("servers") or {}).items():
        if not isinstance(info, dict):
            continue
        qrows = [[e(x.get(c, "")) for c in ("Identity", "DeliveryType", "Status", "MessageCount", "NextHopDomain",
                                             "LastError", "NextRetryTime")] for x in info.get("queues", []) or []]
        body += f"<h2>{e(server)}</h2>" + table(("Identity", "DeliveryType", "Status", "MessageCount",
                                                 "NextHopDomain", "LastError", "NextRetryTime"), qrows)
        mrows = [[e(x.get(c, "")) for c in ("Identity", "FromAddress", "Status", "Size", "Recipients", "LastError")]
                 for x in info.get("messages", []) or []]
        if mrows:
            body += table(("Identity", "FromAddress", "Status", "Size", "Recipients", "LastError"), mrows)
    hist = tree.queue_history()
    summary = tree.summary()
    body += "<h2>On the timeline</h2><p class=muted>MessageCount of each queue over the run; red while the " \
            "queue is in Retry or shows a LastError.</p>" + timeline(hist, str(summary.get("start", "")), str(summary.get("end", "")))
    hrows = [[e(h.get(c, "")) for c in ("Time", "Identity", "Status", "MessageCount", "NextRetryTime", "LastError")]
             for h in hist]
    body += "<h2>Every change (queue-history.jsonl)</h2>" + table(
        ("Time", "Identity", "Status", "MessageCount", "NextRetryTime", "LastError"), hrows)
    return page(tree, "Queues", body, live=live)


def _seconds(iso: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def timeline(hist: list[dict[str, Any]], start: str, end: str, width: int = 900, lane: int = 34) -> str:
    """One lane per queue: its MessageCount as a step line over the run's time, Retry spans in red."""
    lanes: dict[str, list[tuple[float, int, str]]] = {}
    for h in hist:
        t = _seconds(str(h.get("Time", "")))
        if t is not None:
            try:
                count = int(h.get("MessageCount", 0))
            except (TypeError, ValueError):
                count = 0
            trouble = h.get("Status") == "Retry" or bool(h.get("LastError"))
            lanes.setdefault(str(h.get("Identity", "")), []).append((t, count, "trouble" if trouble else ""))
    if not lanes:
        return "<p class=muted>(no queue changes)</p>"
    times = [t for pts in lanes.values() for t, _, _ in pts]
    t0 = _seconds(start) or min(times)
    t1 = max(_seconds(end) or max(times), max(times), t0 + 1)
    left, plot = 170, width - 180
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
           f'height="{lane * len(lanes) + 24}" role="img" aria-label="queues over time">']
    for i, (identity, pts) in enumerate(sorted(lanes.items())):
        top = 8 + i * lane
        peak = max(1, *(c for _, c, _ in pts))

        def x(t: float) -> float:
            return left + plot * (t - t0) / (t1 - t0)

        def y(c: int) -> float:
            return top + lane - 8 - (lane - 14) * c / peak

        out.append(f'<text x="4" y="{top + lane / 2 + 4:.0f}" class="qname">{e(identity)}</text>')
        out.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{left + plot}" y2="{y(0):.1f}" class="axis"/>')
        path, last_c = [f"M{left},{y(0):.1f}"], 0
        for j, (t, c, status) in enumerate(pts):
            path.append(f"L{x(t):.1f},{y(last_c):.1f} L{x(t):.1f},{y(c):.1f}")
            last_c = c
            if status == "trouble":
                until = pts[j + 1][0] if j + 1 < len(pts) else t1
                out.append(f'<rect x="{x(t):.1f}" y="{top}" width="{max(1.0, x(until) - x(t)):.1f}" '
                           f'height="{lane - 8}" class="retry"><title>{e(identity)}: in Retry or with a LastError</title></rect>')
        path.append(f"L{left + plot},{y(last_c):.1f}")
        out.append(f'<path d="{" ".join(path)}" class="count"><title>{e(identity)}: peak {peak}</title></path>')
    out.append(f'<text x="{left}" y="{8 + lane * len(lanes) + 12}" class="tick">{e(start)}</text>')
    out.append(f'<text x="{left + plot}" y="{8 + lane * len(lanes) + 12}" class="tick end">{e(end)}</text>')
    out.append("</svg>")
    return "".join(out)


def events(tree: OutputTree, *, live: bool) -> str:
    rows = [[e(x.get("time")), e(x.get("server")), e(x.get("source")), e(x.get("id")),
             e(" | ".join(map(str, x.get("strings", []) or [])))] for x in tree.events()]
    body = "<h1>Application log events</h1>" + table(("time", "server", "source", "event id", "insertion strings"), rows)
    return page(tree, "Events", body, live=live)


def training(tree: OutputTree, *, live: bool) -> str:
    loaded = tree.scenario()
    if loaded is None:
        body = "<h1>Training</h1><p class=muted>The scenario named in this folder's marker is not in the catalog.</p>"
        return page(tree, "Training", body, live=live)
    s = loaded.scenario
    body = f"<h1>{e(s.id)}: {e(s.title)}</h1>"
    for head, text in (("Symptom", s.training.symptom), ("What to look at", s.training.evidence),
                       ("Root cause", s.training.root_cause), ("Fix", s.training.fix)):
        paras = "".join(f"<p>{e(' '.join(p.split()))}</p>" for p in text.strip().split("\n\n"))
        body += f"<h2>{e(head)}</h2>{paras}"
    return page(tree, "Training", body, live=live)


def topology(tree: OutputTree, *, live: bool) -> str:
    loaded = tree.scenario()
    if loaded is None:
        body = "<h1>Topology</h1><p class=muted>The scenario named in this folder's marker is not in the catalog, " \
               "so its world cannot be drawn.</p>"
        return page(tree, "Topology", body, live=live)
    lab = loaded.lab
    pic = build(lab)
    mark_changes(pic, lab, list(loaded.scenario.change))
    mark_evidence(pic, tree.summary(), list(tree.sessions().values()))
    body = "<h1>Topology</h1><p class=muted>Amber ✎: changed by the scenario. Red ⚠: the run's evidence " \
           "(events, refused sessions, stuck messages) points here. Click a box for its details.</p>"
    body += svg(pic)
    marks = [[f'<a href="#node-{e(n.id)}">{e(n.title)}</a>',
              "<br>".join(f'<span class="mark-changed">{e(c)}</span>' for c in n.changed),
              "<br>".join(f'<span class="mark-failing">{e(f)}</span>' for f in n.failing)]
             for n in pic.nodes.values() if n.changed or n.failing]
    body += "<h2>Where the scenario and its evidence sit</h2>" + table(("node", "changed by the scenario", "evidence"),
                                                                      marks)
    body += _servers_detail(lab, pic)
    return page(tree, "Topology", body, live=live)


def _cert_status(lab: Any, name: str, has_key: bool) -> str:
    from ..topology.timespec import resolve_time

    try:
        spec = lab.certificate(name)
    except KeyError:
        return "not defined"
    notes = []
    if not has_key:
        notes.append("no private key")
    if spec.revoked:
        notes.append("revoked")
    try:
        if resolve_time(spec.not_after, lab.start) <= lab.start:
            notes.append("expired")
        if resolve_time(spec.not_before, lab.start) > lab.start:
            notes.append("not yet valid")
    except ValueError:
        pass
    return ", ".join(notes) or "ok"


def _servers_detail(lab: Any, pic: Any) -> str:
    out = []
    for s in lab.organization.servers:
        node = pic.nodes.get(s.name)
        out.append(f'<h2 id="node-{e(s.name)}">{e(s.name)} — {e(s.role)} {e(s.fqdn)} {e(s.ip)}</h2>')
        if node is not None and (node.changed or node.failing):
            out.append("<ul>" + "".join(f'<li class="mark-changed">{e(c)}</li>' for c in node.changed)
                       + "".join(f'<li class="mark-failing">{e(f)}</li>' for f in node.failing) + "</ul>")
        facts = [f"DNS servers {', '.join(s.adapter_dns_servers) or '-'}",
                 f"WinHTTP proxy {s.winhttp_proxy or 'none'}",
                 f"stopped services {', '.join(s.stopped_services) or 'none'}"]
        out.append(f"<p>{e('; '.join(facts))}</p>")
        rows = [[e(c.name), e(c.transport_role), e(", ".join(c.bindings)), e(", ".join(c.remote_ip_ranges)),
                 e(c.fqdn or ""), e(", ".join(map(str, c.auth_mechanism))), e(", ".join(map(str, c.permission_groups))),
                 e(", ".join(c.tls_domain_capabilities)), e(c.tls_certificate_name or ""), e(c.enabled)]
                for c in s.receive_connectors]
        out.append(table(("receive connector", "role", "bindings", "remote IP ranges", "FQDN", "auth", "permissions",
                          "TlsDomainCapabilities", "TlsCertificateName", "enabled"), rows))
        certs = [[e(c.certificate), e(_subject(lab, c.certificate)), e(", ".join(c.services)),
                  e(_cert_status(lab, c.certificate, c.has_private_key))] for c in s.certificates]
        out.append(table(("certificate", "subject", "services", "status at the start"), certs))
    sends = [[e(c.name), e(", ".join(a.domain for a in c.address_spaces)), e(", ".join(c.smart_hosts) or "MX"),
              e(c.tls_auth_level or ""), e(c.tls_domain or ""), e(c.require_tls),
              e(", ".join(c.source_transport_servers)), e(c.enabled)] for c in lab.organization.send_connectors]
    out.append("<h2>Send connectors</h2>" + table(("name", "address spaces", "smart hosts", "TlsAuthLevel", "TlsDomain",
                                                   "RequireTLS", "source servers", "enabled"), sends))
    t = lab.tenant
    out.append(f'<h2 id="node-EXO">EXO tenant {e(t.name)} ({e(t.initial_domain)})</h2>')
    out.append(table(("inbound connector", "type", "sender IPs", "TlsSenderCertificateName", "RequireTLS", "enabled"),
                     [[e(c.name), e(c.connector_type), e(", ".join(c.sender_ip_addresses)),
                       e(c.tls_sender_certificate_name or ""), e(c.require_tls), e(c.enabled)]
                      for c in t.inbound_connectors]))
    out.append(table(("outbound connector", "type", "smart hosts", "TlsSettings", "TlsDomain", "recipient domains",
                      "enabled"),
                     [[e(c.name), e(c.connector_type), e(", ".join(c.smart_hosts) or "MX"), e(c.tls_settings or ""),
                       e(c.tls_domain or ""), e(", ".join(c.recipient_domains)), e(c.enabled)]
                      for c in t.outbound_connectors]))
    for d in lab.dns_servers:
        recs = [[e(z.name), e(r.name), e(r.type), e(r.value), e(r.ttl)] for z in d.zones for r in z.records]
        out.append(f'<h2 id="node-{e(d.name)}">DNS {e(d.name)} {e(d.ip)} ({e(d.site)}, {e(d.mode)}, '
                   f'forwarders {e(", ".join(d.forwarders) or "none")})</h2>')
        out.append(table(("zone", "name", "type", "value", "TTL"), recs))
    net = lab.network
    out.append('<h2 id="node-ROUTER">Router, NAT, firewall and load balancers</h2>')
    out.append(table(("public address", "server", "ports"),
                     [[e(r.public_ip), e(r.server), e(", ".join(map(str, r.ports)))] for r in net.nat]))
    out.append(table(("rule", "source", "destination", "ports", "action", "enabled"),
                     [[e(r.name), e(r.source), e(r.destination), e(", ".join(map(str, r.ports)) or "any"), e(r.action),
                       e(r.enabled)] for r in net.rules]))
    out.append(table(("load balancer", "VIP", "backends", "ports"),
                     [[f'<span id="node-{e(lb.name)}">{e(lb.name)}</span>', e(lb.vip), e(", ".join(lb.backends)),
                       e(", ".join(map(str, lb.ports)))] for lb in net.load_balancers]))
    out.append(f'<h2 id="node-CRL">CRL distribution point</h2><p>{e(net.crl_host_name)} {e(net.crl_host_ip)} '
               f'({e(net.crl_mode)})</p>')
    for c in net.cdp_hosts:  # org: a CA's own CDP, with its own state
        out.append(f'<h2 id="node-{e(c.name)}">CRL distribution point {e(c.name)}</h2><p>{e(c.ip)} ({e(c.mode)})</p>')
    for h in lab.internet_hosts:
        out.append(f'<h2 id="node-{e(h.name)}">{e(h.name)} {e(h.fqdn)} {e(h.ip)}</h2><p>domains '
                   f'{e(", ".join(h.domains))}; certificate {e(h.certificate or "none")}</p>')
    cas = [[e(c.name), e(c.subject), e(c.parent or "(root)"), e(", ".join(map(str, c.trusted_by)))]
           for c in lab.certificate_authorities]
    out.append("<h2>Certificate authorities</h2>" + table(("CA", "subject", "parent", "trusted by"), cas))
    return "".join(out)


def _subject(lab: Any, name: str) -> str:
    try:
        return str(lab.certificate(name).subject)
    except KeyError:
        return ""

