"""Deterministic private keys for the lab's certificates: RSA 2048 (Exchange's) or EC P-256.

Exchange's self-signed certificate is RSA (`New-ExchangeCertificate -KeySize`, 2048 by default)
and so are the public certificates seen in real Exchange logs; Received headers of real servers
read `cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384` (docs/tls-and-certificates.md). Thumbprints
appear in the logs, so a key must be a pure function of (seed, kind, name):

- **RSA 2048**: pycryptodome's `RSA.generate(2048, randfunc=...)` (its documented `randfunc`
  parameter) fed by a deterministic stream: HMAC-SHA256 in counter mode keyed by
  HMAC(secret, "rsa" | kind | name). Generating one costs about a second of CPU, so each key is
  kept on disk (see `KeyCache`) and in the process (`lru_cache`).
- **ECDSA P-256** (kept for CAs or certificates that ask for it, `KeyAlgorithm ECDSA`): the private
  value is HMAC-SHA256(secret, name) mod the curve order, as before (instant; no cache needed).

The disk cache lives in `$LABSIM_CACHE_DIR`, else `$XDG_CACHE_HOME/labsim/keys`, else
`~/.cache/labsim/keys`. It only ever writes files named by a SHA-256 hex digest inside that folder
(created 0700), atomically (a temporary file in the same folder, then `os.replace`), keys 0600. A
file that does not carry the MAC of what it should hold (truncated, edited, another version's) is
ignored and regenerated; a folder that cannot be written is simply not used.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["PrivateKey", "KEY_ALGORITHMS", "derive_key", "KeyCache", "cache_dir"]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
KEY_ALGORITHMS = ("RSA", "ECDSA")
RSA_BITS = 2048
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_CACHE_FORMAT = b"labsim-key-v1"
_KEYS_KEPT = 4096


class _Stream:
    """A deterministic byte stream (HMAC-SHA256 counter mode) for pycryptodome's `randfunc`."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._counter = 0
        self._buf = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._counter += 1
            self._buf += hmac.new(self._key, self._counter.to_bytes(8, "big"), hashlib.sha256).digest()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def cache_dir() -> Path:
    explicit = os.environ.get("LABSIM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labsim" / "keys"


class KeyCache:
    """Generated keys on disk, one PKCS#8 DER file per key, named by the digest of its inputs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, ident: bytes) -> Path:
        return self.folder / f"{hashlib.sha256(ident).hexdigest()}.key"

    @staticmethod
    def _mac(ident: bytes, der: bytes) -> bytes:
        return hmac.new(_CACHE_FORMAT + ident, der, hashlib.sha256).digest()

    def load(self, ident: bytes) -> rsa.RSAPrivateKey | None:
        try:
            blob = self._path(ident).read_bytes()
        except OSError:
            return None
        mac, der = blob[:32], blob[32:]
        if len(blob) <= 32 or not hmac.compare_digest(mac, self._mac(ident, der)):
            return None
        try:
            # the MAC says this is the key generated here; OpenSSL's RSA check (a primality test
            # of p and q, ~0.1 s a key) would only repeat that
            key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
        except ValueError:
            return None
        return key if isinstance(key, rsa.RSAPrivateKey) and key.key_size == RSA_BITS else None

    def store(self, ident: bytes, key: rsa.RSAPrivateKey) -> None:
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path = self._path(ident)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        created = False  # only a temporary file this call created is ever removed
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.folder.is_symlink() or not self.folder.is_dir():
                return
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
            try:
                os.write(fd, self._mac(ident, der) + der)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError:
            # a read-only or full cache folder: the key is still good, it just is not kept
            if created:
                try:
                    tmp.unlink()
                except OSError:
                    pass


def rsa_ident(secret: bytes, kind: str, name: str) -> bytes:
    """What an RSA key is a function of (the cache file's name is its digest)."""
    return b"\x00".join((b"rsa2048", secret, kind.encode(), name.encode()))


def _rsa_key(secret: bytes, kind: str, name: str) -> rsa.RSAPrivateKey:
    from Crypto.PublicKey import RSA  # pycryptodome, only when a key must be generated

    ident = rsa_ident(secret, kind, name)
    cache = KeyCache(cache_dir())
    key = cache.load(ident)
    if key is not None:
        return key
    stream = _Stream(hmac.new(secret, "\x00".join(("rsa", kind, name)).encode(), hashlib.sha256).digest())
    generated = RSA.generate(RSA_BITS, randfunc=stream, e=65537)
    loaded = serialization.load_der_private_key(generated.export_key(format="DER", pkcs=8), password=None,
                                                unsafe_skip_rsa_key_validation=True)  # just generated
    assert isinstance(loaded, rsa.RSAPrivateKey)
    cache.store(ident, loaded)
    return loaded


def _ec_key(secret: bytes, kind: str, name: str) -> ec.EllipticCurvePrivateKey:
    digest = hmac.new(secret, "\x00".join(("key", kind, name)).encode(), hashlib.sha256).digest()
    value = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(value, ec.SECP256R1())


@lru_cache(maxsize=_KEYS_KEPT)
def derive_key(secret: bytes, kind: str, name: str, algorithm: str = "RSA") -> PrivateKey:
    """The key of `kind` ("ca"/"cert") `name` for this seed's `secret`, of `algorithm`."""
    if algorithm == "ECDSA":
        return _ec_key(secret, kind, name)
    if algorithm == "RSA":
        return _rsa_key(secret, kind, name)
    raise ValueError(f"unknown key algorithm {algorithm!r} (one of {', '.join(KEY_ALGORITHMS)})")
