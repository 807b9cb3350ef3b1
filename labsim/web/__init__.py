"""labsim's web view: a running (`labsim up --web`) or finished (`labsim view OUTDIR`) lab, seen in a browser.

Everything is read from the output folder the lab writes (summary.json, queues.json,
queue-history.jsonl, the protocol and message tracking logs, EXO/MessageTrace/trace.json, the
`.labsim-output` marker), never from the engine's memory, so a copied or archived folder is viewed
the same way, and a live lab is followed as its files grow. The topology is the scenario's world,
rebuilt from the scenario named in the marker (topology/ is plain data). Served by aiohttp on a
loopback address only (net.vnet.guard_real); the pages are server-rendered HTML with one inline
stylesheet and a few lines of inline script for live updates: nothing is fetched from elsewhere.
"""
