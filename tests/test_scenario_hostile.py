"""Hostile scenario files: every bad file is one line naming the file, the key and the problem.

Two halves. Named cases found by hand (a huge number, a NUL in an id, deep nesting, a non-UTF-8
file, an id of "..", a VIP inside 127.0.0.0/8...) each say exactly what the user reads. Then
hypothesis throws random files at the loader: random TOML trees, the baseline scenario with one
leaf or subtree replaced by a random value of a random type, random cmdlets with random
parameters, raw bytes. Whatever it makes, `load_scenario` returns or raises an InputError, never
anything else, and `labsim show|run FILE` prints no traceback and exits 2 without writing.

The bounded run uses HOSTILE_EXAMPLES examples per property (derandomized, so CI is
reproducible); set LABSIM_HOSTILE_EXAMPLES=5000 for a long, random run, and LABSIM_HOSTILE_RUN=1
to also run every random file that loads (a lab run each, so slow) and insist it ends in 0 or 1.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from conftest import BASELINE_TOML, run_cli, scenario_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labsim.engine.operations import OPERATION_NAMES
from labsim.errors import ScenarioError
from labsim.scenario.loader import MAX_DEPTH, MAX_FILE_BYTES, catalog, load_scenario
from labsim.topology import model as M
from labsim.topology.changes import known_cmdlets
from labsim.topology.defaults import default_lab

LONG = int(os.environ.get("LABSIM_HOSTILE_EXAMPLES", "0"))
RUN_VALID = os.environ.get("LABSIM_HOSTILE_RUN") == "1"  # also run the random files that load (slow)
HOSTILE_EXAMPLES = LONG or 60
SETTINGS = settings(max_examples=HOSTILE_EXAMPLES, deadline=None, derandomize=not LONG, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BASELINE: dict[str, Any] = tomllib.loads(BASELINE_TOML.read_text(encoding="utf-8"))


# --- the cases found by hand --------------------------------------------------------------------

def _change(params: str) -> str:
    return scenario_text("[[change]]\n" + params)


SET_DEFAULT = "cmdlet = 'Set-ReceiveConnector'\nIdentity = 'CMHYBD01\\Default CMHYBD01'\n"

CASES: list[tuple[str, str | bytes, str, str]] = [
    # name, file content, the key the error must name, a piece of the problem
    ("huge-seed", scenario_text(head="seed = 99999999999999999999999\n"), "seed", "out of range"),
    ("negative-seed", scenario_text(head="seed = -1\n"), "seed", "greater than or equal to 0"),
    ("nul-in-id", scenario_text(sid="a\\u0000b"), "id", "NUL"),
    ("dotdot-id", scenario_text(sid=".."), "id", "not a scenario id"),
    ("slash-id", scenario_text(sid="../../etc"), "id", "not a scenario id"),
    ("long-id", scenario_text(sid="a" * 65), "id", "not a scenario id"),
    ("deep-arrays", "x = " + "[" * 3000 + "]" * 3000 + "\n", "", "nested too deeply"),
    ("deep-tables", "x = " + "{a=" * 3000 + "1" + "}" * 3000 + "\n", "", "nested too deeply"),
    ("deep-dotted", "[" + ".".join(["a"] * 40) + "]\n", "a.a.a", "nested too deeply"),
    ("not-utf8", b'id = "\xff\xfe"\n', "", "not UTF-8 text (byte 0xff at offset 6)"),
    ("nul-byte", b'id = "t"\x00\n', "", "NUL byte at offset 8"),
    ("nan", scenario_text('[[change]]\ncmdlet = "Set-LabSiteLatency"\nSites = "onprem-exo"\nLatencyMs = nan\n'),
     "change[0].LatencyMs", "NaN and infinity"),
    ("inf-as-text", scenario_text('[[change]]\ncmdlet = "Set-LabSiteLatency"\nSites = "onprem-exo"\n'
                                  'LatencyMs = "inf"\n'), "Set-LabSiteLatency", "is not a number"),
    ("max-message-size-negative", _change(SET_DEFAULT + "MaxMessageSize = -5\n"), "MaxMessageSize", "65536"),
    ("max-message-size-huge", _change(SET_DEFAULT + "MaxMessageSize = 99999999999999999\n"),
     "MaxMessageSize", "2147483647"),
    ("max-message-size-text", _change(SET_DEFAULT + "MaxMessageSize = '3GB'\n"), "MaxMessageSize", "2147483647"),
    ("max-hop-count", _change(SET_DEFAULT + "MaxHopCount = 501\n"), "MaxHopCount", "500"),
    ("send-port-0", _change("cmdlet = 'Set-SendConnector'\nIdentity = 'Outbound to Office 365'\nPort = 0\n"),
     "Port", "greater than or equal to 1"),
    ("send-port-65536", _change("cmdlet = 'Set-SendConnector'\nIdentity = 'Outbound to Office 365'\nPort = 65536\n"),
     "Port", "less than or equal to 65535"),
    ("retry-interval-range", _change("cmdlet = 'Set-TransportService'\nIdentity = 'CMHYBD01'\n"
                                     "MessageRetryInterval = '2.00:00:00'\n"),
     "MessageRetryInterval", "00:00:01 through 1.00:00:00"),
    ("expiration-huge", _change("cmdlet = 'Set-TransportService'\nIdentity = 'CMHYBD01'\n"
                                "MessageExpirationTimeout = '99999999999999.00:00:00'\n"),
     "MessageExpirationTimeout", "out of range"),
    ("lb-vip-loopback", _change("cmdlet = 'New-LabLoadBalancer'\nName = 'LB1'\nVip = '127.0.0.5'\n"
                                "Backends = ['CMHYBD01']\n"), "Vip", "127.0.0.0/8"),
    ("nat-loopback", _change("cmdlet = 'Set-LabNatRule'\nPublicIp = '127.1.2.3'\nServer = 'CMHYBD01'\n"),
     "PublicIp", "127.0.0.0/8"),
    ("nat-on-a-host", _change("cmdlet = 'Set-LabNatRule'\nPublicIp = '192.168.1.13'\nServer = 'CMEDGE01'\n"),
     "Set-LabNatRule", "is the address of CMHYBD01"),
    ("dns-a-not-an-address", _change("cmdlet = 'Set-LabDnsRecord'\nServer = 'PUBLIC-DNS'\nZoneName = 'cloudmonkeys.xyz'\n"
                                     "Name = 'smtp.cloudmonkeys.xyz'\nType = 'A'\nValue = 'not-an-ip'\n"),
     "change[0] (DNS server PUBLIC-DNS", "'not-an-ip'"),
    ("dns-name-too-long", _change("cmdlet = 'Set-LabDnsRecord'\nServer = 'PUBLIC-DNS'\nZoneName = 'cloudmonkeys.xyz'\n"
                                  f"Name = '{'a.' * 200}'\nType = 'A'\nValue = '192.0.2.9'\n"),
     "change[0] (DNS server PUBLIC-DNS", "is not a DNS name"),
    ("dns-forwarder-loopback", _change("cmdlet = 'Set-LabDnsServer'\nIdentity = 'DC01'\nForwarders = ['127.0.0.1']\n"),
     "Forwarders", "127.0.0.0/8"),
    ("dns-server-multicast", _change("cmdlet = 'Set-TransportService'\nIdentity = 'CMHYBD01'\n"
                                     "ExternalDnsServers = ['224.0.0.1']\n"), "ExternalDNSServers", "multicast"),
    ("smart-host-loopback", _change("cmdlet = 'Set-SendConnector'\nIdentity = 'Outbound to Office 365'\n"
                                    "SmartHosts = ['[127.0.0.1]']\n"), "SmartHosts", "127.0.0.0/8"),
    ("proxy-loopback", _change("cmdlet = 'Set-LabWinHttpProxy'\nServer = 'CMEDGE01'\nProxyServer = '127.0.0.1:8080'\n"),
     "ProxyServer", "127.0.0.0/8"),
    ("link-rule-port", _change("cmdlet = 'New-LabNetworkRule'\nName = 'r'\nAction = 'Refuse'\nPorts = [0]\n"),
     "Ports", "greater than or equal to 1"),
    ("latency-hour", _change("cmdlet = 'Set-LabSiteLatency'\nSites = 'onprem-exo'\nLatencyMs = 3600001\n"),
     "LatencyMs", "outside 0..3600000"),
    ("cert-validity-huge", _change("cmdlet = 'Set-LabCertificate'\nIdentity = 'mail-cloudmonkeys'\nNotAfter = '+99999999d'\n"),
     "NotAfter", "more than 100 years"),
    ("cert-before-1950", _change("cmdlet = 'Set-LabCertificate'\nIdentity = 'mail-cloudmonkeys'\n"
                                 "NotBefore = '-36500d'\n"), "NotBefore", "before 1950"),
    ("cert-inverted", _change("cmdlet = 'Set-LabCertificate'\nIdentity = 'mail-cloudmonkeys'\n"
                              "NotBefore = '+10d'\nNotAfter = '+5d'\n"), "NotAfter", "is not after NotBefore"),
    ("message-at-far", scenario_text('[[message]]\nid = "m"\nat = "+400.00:00:00"\nfrom = "raghu@cloudmonkeys.xyz"\n'
                                     'to = ["alex@fabrikam.com"]\n'), "message[0].at", "366 days"),
    ("message-at-huge", scenario_text('[[message]]\nid = "m"\nat = "+99999999999.00:00:00"\n'
                                      'from = "raghu@cloudmonkeys.xyz"\nto = ["alex@fabrikam.com"]\n'),
     "message[0].at", "out of range"),
    ("subject-crlf", scenario_text('[[message]]\nid = "m"\nfrom = "raghu@cloudmonkeys.xyz"\nto = ["alex@fabrikam.com"]\n'
                                   'subject = "a\\r\\nBcc: x@y"\n'), "message[0].subject", "control characters"),
    ("start-far", scenario_text(head='start = "9999-12-31T00:00:00Z"\n'), "start", "outside the years"),
    ("wrong-type", scenario_text(head="duration = 5\n"), "duration", "valid string"),
    ("title-two-lines", scenario_text().replace('title = "test scenario"', 'title = "a\\nb"'), "title", "one line"),
    ("too-large", 'id = "t"\n' + "# " + "x" * MAX_FILE_BYTES + "\n", "", f"larger than {MAX_FILE_BYTES} bytes"),
]


@pytest.mark.parametrize(("name", "content", "key", "problem"), CASES, ids=[c[0] for c in CASES])
def test_hostile_file_is_one_line_naming_file_key_and_problem(tmp_path: Path, name: str, content: str | bytes,
                                                             key: str, problem: str) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.where.startswith(str(path)), info.value.where
    assert key in info.value.where or key in info.value.problem, (info.value.where, info.value.problem)
    assert problem in info.value.problem, info.value.problem
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli(["run", str(path), "--out", str(out)])
    assert (rc, stdout) == (2, "")
    assert stderr.count("\n") == 1 and stderr.startswith(f"labsim: {path}"), stderr
    assert not out.exists()


def test_depth_limit_leaves_room_for_real_scenarios() -> None:
    assert MAX_DEPTH >= 8  # top level > change list > change > parameter list > value is 4 deep


def test_a_good_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + scenario_text(sid="bom").encode("utf-8"))
    assert load_scenario(path).scenario.id == "bom"


def test_ranges_accept_exchanges_own_limits(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text(_change(SET_DEFAULT + "MaxMessageSize = '2GB'\n").replace("'2GB'", "2147483647") +
                    "[[change]]\ncmdlet = 'Set-ReceiveConnector'\nIdentity = 'CMHYBD01\\Default Frontend CMHYBD01'\n"
                    "MaxMessageSize = '64KB'\nMaxHopCount = 500\n"
                    "[[change]]\ncmdlet = 'Set-TransportService'\nIdentity = 'CMHYBD01'\n"
                    "MessageExpirationTimeout = '90.00:00:00'\nTransientFailureRetryInterval = '12:00:00'\n"
                    "[[change]]\ncmdlet = 'Set-SendConnector'\nIdentity = 'Outbound to Office 365'\n"
                    "MaxMessageSize = '35 MB (36,700,160 bytes)'\nPort = 65535\n", encoding="utf-8")
    lab = load_scenario(path).lab
    cmhybd01 = lab.organization.server("CMHYBD01")
    sizes = {rc.name: (rc.max_message_size, rc.max_hop_count) for rc in cmhybd01.receive_connectors}
    assert sizes["Default CMHYBD01"][0] == 2147483647
    assert sizes["Default Frontend CMHYBD01"] == (65536, 500)
    assert cmhybd01.transport.message_expiration_timeout == "90.00:00:00"
    sc = next(c for c in lab.organization.send_connectors if c.name == "Outbound to Office 365")
    assert (sc.max_message_size, sc.port) == (36700160, 65535)


def test_list_shows_a_broken_file_instead_of_skipping_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "good.toml").write_text(scenario_text(sid="good-one"), encoding="utf-8")
    (tmp_path / "dotdot.toml").write_text(scenario_text(sid=".."), encoding="utf-8")
    (tmp_path / "hybrid-baseline.toml").write_text(scenario_text(sid="hybrid-baseline"), encoding="utf-8")
    monkeypatch.setenv("LABSIM_SCENARIOS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(["list"])
    assert rc == 0
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "BROKEN: '..' is not a scenario id" in rows["dotdot"] and str(tmp_path / "dotdot.toml") in rows["dotdot"]
    assert rows["good-one"].rstrip().endswith(str(tmp_path / "good.toml"))
    assert rows["hybrid-baseline"].rstrip().endswith("(overrides built-in)")
    assert rows["cert-expired"].rstrip().endswith("built-in")
    assert err == "labsim: 1 scenario file(s) do not load (marked BROKEN above)\n"
    # `labsim run dotdot` reports the broken file rather than falling through to something else
    rc, _, err = run_cli(["show", "dotdot"])
    assert rc == 2 and "not a scenario id" in err


def test_builtin_catalog_is_listed_with_its_source() -> None:
    entries = {e.id: e for e in catalog()}
    assert entries["hybrid-baseline"].error is None
    assert all(e.error is None for e in entries.values()), [e for e in entries.values() if e.error]


# --- hypothesis: random files at the loader and the CLI -----------------------------------------

_LAB = default_lab()
_ORG = _LAB.organization
IDENTITIES = sorted({
    *(s.name for s in _ORG.servers),
    *(f"{s.name}\\{rc.name}" for s in _ORG.servers for rc in s.receive_connectors),
    *(c.name for c in _ORG.send_connectors), *(d.name for d in _ORG.accepted_domains),
    *(c.name for c in _LAB.tenant.inbound_connectors), *(c.name for c in _LAB.tenant.outbound_connectors),
    *(d.name for d in _LAB.dns_servers), *(z.name for d in _LAB.dns_servers for z in d.zones),
    *(c.name for c in _LAB.certificates), *(c.name for c in _LAB.certificate_authorities),
    *(m.alias for m in _ORG.mailboxes), "27.7.57.241",
})
PARAM_NAMES = sorted({
    *(info.alias or f for cls in vars(M).values() if isinstance(cls, type) and issubclass(cls, M.LabModel)
      for f, info in cls.model_fields.items()),
    "Identity", "Server", "ZoneName", "Sites", "LatencyMs", "Mode", "PublicIp", "ProxyServer", "Certificate",
    "CertificateAuthority", "CertificateAuthorities", "Services", "ServerAddresses", "ResetServerAddresses",
})
CMDLETS = sorted({*known_cmdlets(), *OPERATION_NAMES.values()})
NUMBERS = [0, 1, -1, 25, 255, 256, 65535, 65536, 65536 * 1024, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 10**30, -(10**30)]
TEXTS = ["", " ", "..", "/", "0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "192.0.2.1", "[127.0.0.2]",
         "10.0.0.1:25", "0.0.0.0:0", "1.2.3.4-1.2.3.0", "::1", "00:00:00", "-1.00:00:00", "99999999999d", "90.00:00:01",
         "nan", "inf", "1e400", "36MB", "3TB", "unlimited", "$true", "None", "Verbose", "smtp:*;1", "x@y", "a\x00b",
         "\r\n", "é" * 3, "<I>a<S>b"]

leaves = (st.booleans() | st.integers() | st.sampled_from(NUMBERS) | st.floats(allow_nan=True, allow_infinity=True)
          | st.text(max_size=20) | st.sampled_from(TEXTS) | st.sampled_from(IDENTITIES)
          | st.datetimes(timezones=st.none()))
keys = st.text(max_size=12) | st.sampled_from(PARAM_NAMES)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=12)


def _paths(tree: Any, loc: tuple = ()) -> list[tuple]:
    out = [loc] if loc else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, (*loc, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*loc, i))
    return out


BASELINE_PATHS = _paths(BASELINE)


def _leaf(tree: Any, path: tuple) -> Any:
    for part in path:
        tree = tree[part]
    return tree


LEAF_PATHS = [p for p in BASELINE_PATHS if not isinstance(_leaf(BASELINE, p), dict)]


def _replaced(tree: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {**tree, head: _replaced(tree[head], rest, value)}
    return [(_replaced(v, rest, value) if i == head else v) for i, v in enumerate(tree)]


change_tables = st.fixed_dictionaries(
    {"cmdlet": st.sampled_from(CMDLETS) | st.text(max_size=12)},
    optional={"at": st.sampled_from(["+00:00:10", "-00:00:01", "99999999999d", "x"]) | leaves},
).flatmap(lambda head: st.dictionaries(st.sampled_from(PARAM_NAMES) | keys, values | st.sampled_from(IDENTITIES),
                                       max_size=4).map(lambda params: {**params, **head}))


def _scenario_with(extra: dict[str, Any]) -> dict[str, Any]:
    return {"id": "h", "title": "hostile", "training": {"symptom": "s", "evidence": "e", "root_cause": "r",
                                                         "fix": "f"}, **extra}


def _check(path: Path, content: bytes) -> None:
    """Loading returns or raises InputError; the CLI says one line and exits 2 without writing.

    `labsim show` loads the file: cli.main turns an InputError into exit 2 and lets any other
    exception through (failing the test), so exit 0 or 2 is exactly "loaded or InputError".
    """
    path.write_bytes(content)
    rc, stdout, stderr = run_cli(["show", str(path)])
    assert rc in (0, 2), stdout + stderr
    assert "Traceback" not in stdout + stderr
    if rc == 0:
        if RUN_VALID:  # a file that loads must run to an end: exit 0 or 1, never a crash
            rc, stdout, stderr = run_cli(["run", str(path), "--out", str(path.parent / "out-valid")])
            assert rc in (0, 1), stdout + stderr
        return
    assert rc == 2 and stdout == "" and stderr.count("\n") == 1 and stderr.startswith(f"labsim: {path}"), stderr
    out = path.parent / "out"
    rc, stdout, stderr = run_cli(["run", str(path), "--out", str(out)])
    assert rc == 2 and stderr.startswith(f"labsim: {path}") and "Traceback" not in stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile") / "s.toml"


@SETTINGS
@given(path=st.sampled_from(BASELINE_PATHS), value=values)
def test_baseline_with_one_part_replaced_by_a_random_value(scratch: Path, path: tuple, value: Any) -> None:
    _check(scratch, tomli_w.dumps(_replaced(BASELINE, path, value)).encode("utf-8"))


def _same_type(value: Any) -> st.SearchStrategy[Any]:
    """A random value of the leaf's own type: more of these load, so more reach the lab itself."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers() | st.sampled_from(NUMBERS)
    if isinstance(value, str):
        return st.text(max_size=30) | st.sampled_from(TEXTS) | st.sampled_from(IDENTITIES)
    return st.lists(st.text(max_size=30) | st.sampled_from(TEXTS + IDENTITIES), max_size=3)


@SETTINGS
@given(data=st.data())
def test_baseline_with_one_leaf_replaced_by_a_value_of_its_type(scratch: Path, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(LEAF_PATHS))
    value = data.draw(_same_type(_leaf(BASELINE, path)))
    _check(scratch, tomli_w.dumps(_replaced(BASELINE, path, value)).encode("utf-8"))


@SETTINGS
@given(changes=st.lists(change_tables, min_size=1, max_size=3))
def test_random_cmdlets_with_random_parameters(scratch: Path, changes: list[dict[str, Any]]) -> None:
    _check(scratch, tomli_w.dumps(_scenario_with({"change": changes})).encode("utf-8"))


@SETTINGS
@given(tree=st.dictionaries(keys | st.sampled_from(["id", "title", "seed", "start", "duration", "training", "change",
                                                     "message", "expect"]), values, max_size=6))
def test_random_toml_trees(scratch: Path, tree: dict[str, Any]) -> None:
    _check(scratch, tomli_w.dumps(tree).encode("utf-8"))


@SETTINGS
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes(scratch: Path, raw: bytes) -> None:
    _check(scratch, raw)
