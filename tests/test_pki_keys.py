"""pki.keys: RSA 2048 keys (Exchange's) derived from the seed, ECDSA on request, and the disk cache
that keeps generating them cheap without ever writing outside its folder."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from labsim.pki import keys
from labsim.pki.authority import LabPki, key_pem
from labsim.topology.defaults import default_lab

SECRET = b"labsim-pki\x00test-keys"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache" / "keys"
    monkeypatch.setenv("LABSIM_CACHE_DIR", str(folder))
    return folder


def test_rsa_key_is_2048_bits_deterministic_and_cached_atomically(cache: Path):
    first = keys._rsa_key(SECRET, "cert", "k1")
    assert isinstance(first, rsa.RSAPrivateKey) and first.key_size == 2048
    files = list(cache.iterdir())
    assert len(files) == 1 and len(files[0].stem) == 64 and not files[0].name.startswith(".")
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600 and stat.S_IMODE(cache.stat().st_mode) == 0o700
    files[0].unlink()  # generated again from the seed alone: the same key
    assert key_pem(keys._rsa_key(SECRET, "cert", "k1")) == key_pem(first)
    assert key_pem(keys._rsa_key(SECRET, "cert", "k1")) == key_pem(first)  # from the cache


def test_a_damaged_cache_file_is_ignored_and_replaced(cache: Path):
    good = key_pem(keys._rsa_key(SECRET, "ca", "k2"))
    (path,) = cache.iterdir()
    blob, store = path.read_bytes(), keys.KeyCache(cache)
    ident = keys.rsa_ident(SECRET, "ca", "k2")
    assert store.load(ident) is not None
    for damage in (b"", blob[:100], b"\x00" * 32 + blob[32:], blob[:-1] + bytes([blob[-1] ^ 1])):
        path.write_bytes(damage)
        assert store.load(ident) is None  # truncated, wrong MAC, edited: never used
    assert key_pem(keys._rsa_key(SECRET, "ca", "k2")) == good  # regenerated from the seed
    assert store.load(ident) is not None
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary files left behind


def test_an_unwritable_cache_folder_still_gives_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LABSIM_CACHE_DIR", str(blocker / "keys"))
    key = keys._rsa_key(SECRET, "cert", "k3")
    assert key.key_size == 2048 and blocker.read_text() == "not a folder"


def test_cache_dir_follows_xdg_when_not_told(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("LABSIM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert keys.cache_dir() == tmp_path / "labsim" / "keys"


def test_ecdsa_stays_available_and_unknown_algorithms_are_refused():
    key = keys.derive_key(SECRET, "cert", "k4", "ECDSA")
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key_pem(keys.derive_key(SECRET + b"x", "cert", "k4", "ECDSA")) != key_pem(key)
    with pytest.raises(ValueError, match="unknown key algorithm 'DSA'"):
        keys.derive_key(SECRET, "cert", "k4", "DSA")


def test_the_lab_certificates_are_rsa_unless_a_spec_asks_for_ecdsa():
    lab = default_lab()
    pki = LabPki(lab, 1)
    assert all(isinstance(i.key, rsa.RSAPrivateKey) and i.key.key_size == 2048 for i in pki.all_issued())
    assert all(isinstance(c.public_key(), rsa.RSAPublicKey) for c in pki.all_ca_certs())
    spec = lab.certificates[0]
    object.__setattr__(spec, "key_algorithm", "ECDSA")
    issued = LabPki(lab, 1).issued(spec.name)
    assert isinstance(issued.key, ec.EllipticCurvePrivateKey)
    assert isinstance(issued.cert.public_key(), ec.EllipticCurvePublicKey)



def _unfolded_received(text: str) -> list[str]:
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()
        elif line.startswith("Received:"):
            lines.append(line)
    return lines


def test_received_headers_name_the_rsa_suite_as_real_exchange_servers_do(baseline):
    real = _unfolded_received((Path(__file__).parent / "data" / "received-headers-exchange-tls.txt").read_text())
    real_suites = {h.split("cipher=")[1].split(")")[0] for h in real if "cipher=" in h}
    assert real_suites == {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}
    ours = [h for p in (baseline.out / "mailboxes").rglob("*.eml")
            for h in _unfolded_received(p.read_text(errors="replace").split("\n\n")[0]) if "cipher=" in h]
    assert ours
    assert {h.split("cipher=")[1].split(")")[0] for h in ours} == real_suites
