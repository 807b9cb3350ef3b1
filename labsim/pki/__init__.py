"""The lab's PKI: deterministic CAs, leaves and CRLs; server stores; Exchange-style validation.

Modules: names (.NET DNs, TlsCertificateName), authority (LabPki), store (CertStore, ssl
contexts, peer_chain), validate (classify -> ChainStatus), crl_server (CRL over HTTP), errors.
"""

from __future__ import annotations

from .authority import (
    CaMaterial,
    IssuedCert,
    LabPki,
    crl_url_for,
    serial_hex,
    thumbprint,
)
from .crl_server import CrlServer, http_get
from .errors import (
    CrlUnavailable,
    NoCredentialsError,
    PkiError,
    UnknownCredentialsError,
)
from .names import dotnet_dn, parse_dn, parse_tls_certificate_name, tls_certificate_name
from .store import CertStore, StoredCert, peer_chain
from .validate import ChainStatus, CrlCache, ValidationResult, classify, name_matches

__all__ = [
    "CaMaterial", "IssuedCert", "LabPki", "crl_url_for", "serial_hex", "thumbprint",
    "CrlServer", "http_get", "CrlUnavailable", "NoCredentialsError", "PkiError", "UnknownCredentialsError",
    "dotnet_dn", "parse_dn", "parse_tls_certificate_name", "tls_certificate_name",
    "CertStore", "StoredCert", "peer_chain",
    "ChainStatus", "CrlCache", "ValidationResult", "classify", "name_matches",
]
