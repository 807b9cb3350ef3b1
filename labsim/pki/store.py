"""Per-server certificate stores (LocalMachine\\My) and the ssl contexts built from them.

A server's store is an ordered list of certificates, each with or without its private key, plus
the intermediate CA certificates the machine has installed. What a server *sends* in a handshake
is its leaf plus those of its issuers it has (as Schannel does), so a machine without the
intermediate sends the bare leaf and its peers see an incomplete chain.

Contexts are deliberately Exchange-like and deterministic: TLS 1.2 only, ECDHE AES-GCM suites
(RSA for the RSA certificates Exchange uses, ECDSA for an ECDSA one), no verification by OpenSSL on the client side (the lab classifies the peer's chain itself
at *virtual* time, see validate.py), and a server side that requests a client certificate and
accepts any the lab made.

Sharp edge this module works around (tested): when a server's chain file holds only the leaf,
OpenSSL *auto-completes* the chain it sends from the context's verify store. With the lab's CA
certificates in that store, a "missing intermediate" server would silently send leaf +
intermediate + root. So the server context trusts the lab's *leaf* certificates directly
(X509_V_FLAG_PARTIAL_CHAIN) instead of its CAs, and refuses CA certificates in its accept list.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..topology.model import ExchangeServer, StoreEntry
from .accept_any import accept_any_client_certificate
from .authority import IssuedCert, LabPki, _write, key_pem, thumbprint
from .errors import NoCredentialsError, PkiError, UnknownCredentialsError
from .resume import ClientSessionCache, ResumingClientContext, server_side_cache

__all__ = ["StoredCert", "CertStore", "peer_chain", "CIPHERS", "NO_CHECK_TIME"]

# Exchange 2016/2019 with an RSA certificate negotiate TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
# (real Received headers, docs/tls-and-certificates.md); the ECDSA suites stay for ECDSA certificates.
CIPHERS = ("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
NO_CHECK_TIME = 0x200000  # X509_V_FLAG_NO_CHECK_TIME; the ssl module has no name for it
_PEM = serialization.Encoding.PEM
_SHA256 = hashes.SHA256()


@dataclass(frozen=True, eq=False)
class StoredCert:
    """One certificate in a store, in store order (`index`), with or without its private key."""

    issued: IssuedCert
    has_private_key: bool
    services: list[str]
    index: int

    @property
    def name(self) -> str:
        return self.issued.name

    @property
    def cert(self) -> x509.Certificate:
        return self.issued.cert

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.issued.cert)

    @property
    def smtp_enabled(self) -> bool:
        """Enabled for SMTP (Enable-ExchangeCertificate -Services SMTP): the transport may use its key."""
        return any(s.upper() == "SMTP" for s in self.services)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _base_context(side: ssl._SSLMethod) -> ssl.SSLContext:
    ctx = ResumingClientContext(side) if side == ssl.PROTOCOL_TLS_CLIENT else ssl.SSLContext(side)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.set_ecdh_curve("prime256v1")
    ctx.check_hostname = False
    return ctx


class CertStore:
    """A machine's personal store and installed intermediates, materialised for the ssl module."""

    def __init__(self, pki: LabPki, entries: Iterable[StoreEntry], *,
                 intermediate_store: Sequence[str] | None = None, owner: str = "store") -> None:
        self.pki = pki
        self.owner = owner
        self.entries: list[StoredCert] = [
            StoredCert(issued=pki.issued(e.certificate), has_private_key=e.has_private_key,
                       services=list(e.services), index=i)
            for i, e in enumerate(entries)
        ]
        if intermediate_store is None:
            self.intermediates = pki.intermediates()
        else:
            self.intermediates = [pki.ca(n).cert for n in intermediate_store if not pki.ca(n).is_root]
        self._dir: Path | None = None
        self._material: dict[int, tuple[Path, Path | None]] = {}
        self._client_ctx: dict[int, ssl.SSLContext] = {}
        # Schannel's client-side session cache of this machine (pki.resume); keys start with the
        # client certificate's index, so a session is only offered through the context that made it.
        self.sessions = ClientSessionCache()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @classmethod
    def for_server(cls, pki: LabPki, server: ExchangeServer) -> CertStore:
        return cls(pki, server.certificates, intermediate_store=server.intermediate_store, owner=server.name)

    def get(self, cert_name: str) -> StoredCert:
        """The first entry for the lab certificate `cert_name`."""
        for entry in self.entries:
            if entry.name == cert_name:
                return entry
        raise PkiError(f"{self.owner}: certificate {cert_name!r} is not in the store")

    def sent_chain(self, stored: StoredCert) -> list[x509.Certificate]:
        """Leaf + the issuers this machine has, stopping at the first one it lacks (Schannel builds
        the chain from the machine's stores and cannot link past a gap)."""
        have = {c.fingerprint(_SHA256) for c in self.intermediates}
        chain = [stored.cert]
        for ca in stored.issued.issuer_chain:
            if ca.fingerprint(_SHA256) not in have:
                break
            chain.append(ca)
        return chain

    # -- files for the ssl module ------------------------------------------------------------

    def _runtime_dir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"labsim-pki-{self.owner}-"))  # mode 0700
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._dir), True)
        return self._dir

    def tls_material(self, stored: StoredCert) -> tuple[Path, Path | None]:
        """(chain PEM path, key path or None without a private key), written once and reused."""
        if stored.index in self._material:
            return self._material[stored.index]
        base = self._runtime_dir() / f"{stored.index:02d}-{stored.name}"
        chain_path = _write(base.with_suffix(".chain.pem"),
                            b"".join(c.public_bytes(_PEM) for c in self.sent_chain(stored)), 0o644)
        key_path = _write(base.with_suffix(".key"), key_pem(stored.issued.key), 0o600) \
            if stored.has_private_key else None
        self._material[stored.index] = (chain_path, key_path)
        return chain_path, key_path

    def _load(self, ctx: ssl.SSLContext, stored: StoredCert) -> None:
        """Load the certificate and its key, the way a server would: if the key is not there,
        OpenSSL fails, and that failure is the `NoCredentials` Exchange logs. A key the transport
        may not read (certificate not enabled for SMTP) is not handed to OpenSSL either, and that
        failure is `UnknownCredentials`."""
        chain_path, key_path = self.tls_material(stored)
        readable = key_path if stored.smtp_enabled else None
        try:
            # Without a key file OpenSSL looks for the key in the chain file and fails.
            ctx.load_cert_chain(str(chain_path), str(readable) if readable else None)
        except ssl.SSLError as exc:
            cls = UnknownCredentialsError if key_path is not None and readable is None else NoCredentialsError
            raise cls(
                f"{self.owner}: cannot load the private key of {stored.name} ({stored.thumbprint}): {exc}",
                cert_name=stored.name, thumbprint=stored.thumbprint) from exc

    # -- contexts ----------------------------------------------------------------------------

    def server_context(self, stored: StoredCert | None,
                       accept_any_client_cert_from: Sequence[x509.Certificate] | None = None) -> ssl.SSLContext:
        """A STARTTLS server context presenting `stored` and accepting any lab client certificate.

        `accept_any_client_cert_from`: leaf certificates to accept as client certificates
        (default: every lab leaf). They are trusted directly (partial chain), time is not checked:
        the lab judges client certificates itself at virtual time after the handshake. CA
        certificates are refused because OpenSSL would use them to complete this server's own chain.
        """
        if stored is None:
            raise NoCredentialsError(f"{self.owner}: no certificate to present")
        ctx = _base_context(ssl.PROTOCOL_TLS_SERVER)
        self._load(ctx, stored)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        accepted = self.pki.all_leaf_certs() if accept_any_client_cert_from is None else accept_any_client_cert_from
        cas = [c for c in accepted if _is_ca(c)]
        if cas:
            raise ValueError("server_context accepts leaf certificates only: a CA certificate in the "
                             "verify store makes OpenSSL complete the server's own chain from it "
                             f"(got {cas[0].subject.rfc4514_string()}); pass pki.all_leaf_certs()")
        if accepted:
            ctx.load_verify_locations(cadata="".join(c.public_bytes(_PEM).decode() for c in accepted))
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | NO_CHECK_TIME
        # Exchange completes the handshake with any client certificate, from any CA, and judges
        # it afterwards: so does the lab (pki.accept_any; without it a foreign CA is accepted only
        # if listed above, and any other certificate ends the handshake).
        accept_any_client_certificate(ctx)
        server_side_cache(ctx)  # resumes a client's session by id (pki.resume)
        return ctx

    def client_context(self, stored: StoredCert | None) -> ssl.SSLContext:
        """A client context that verifies nothing (the lab classifies the peer chain itself) and
        presents `stored` as client certificate when given."""
        key = -1 if stored is None else stored.index
        ctx = self._client_ctx.get(key)
        if ctx is not None:
            return ctx
        ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_NONE
        if stored is not None:
            self._load(ctx, stored)
        # Only a context that loaded is kept: a missing key fails again on every attempt, as the
        # transport service does each time it tries to use the certificate. A store is rebuilt
        # whenever the certificates change, so a kept context never outlives its certificate.
        self._client_ctx[key] = ctx
        return ctx

    def close(self) -> None:
        """Remove the runtime directory (also done when the store is garbage-collected)."""
        if self._finalizer is not None:
            self._finalizer()
        self._dir = None
        self._material.clear()
        self._client_ctx.clear()
        self.sessions = ClientSessionCache()

    def __enter__(self) -> CertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[x509.Certificate]:
    """The chain the peer actually sent, leaf first ([] if it sent none).

    Public `get_unverified_chain()` exists from Python 3.13; on 3.11 it is only on the private
    `_sslobj`. On the server side CPython puts the client's leaf first itself (tested on 3.11);
    this helper makes sure of it either way. Falls back to the leaf alone if neither is there.
    """
    leaf_der = ssl_object.getpeercert(binary_form=True)
    if leaf_der is None:
        return []
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    ders: list[bytes] = []
    if getter is not None:
        for item in getter() or []:
            ders.append(item if isinstance(item, bytes) else item.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]
    if not ders or ders[0] != leaf_der:
        ders = [leaf_der, *(d for d in ders if d != leaf_der)]
    return [_certificate(d) for d in ders]


@lru_cache(maxsize=256)
def _certificate(der: bytes) -> x509.Certificate:
    """One object per DER encoding: every session of a peer presents the same certificates, and
    what is kept per certificate object (thumbprints, classification) then serves them all."""
    return x509.load_der_x509_certificate(der)
