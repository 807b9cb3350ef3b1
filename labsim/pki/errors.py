"""Errors of the lab PKI.

They are faults *inside* the simulated world (a key that is not there, a CRL server that does not
answer), raised so that the transport code can turn each into the words Exchange uses for it.
"""

from __future__ import annotations

from ..errors import LabsimError

__all__ = ["PkiError", "NoCredentialsError", "UnknownCredentialsError", "CrlUnavailable"]


class PkiError(LabsimError):
    """Something about the lab's certificates, keys or CRLs."""


class NoCredentialsError(PkiError):
    """The certificate to present has no usable private key (Exchange: `NoCredentials`).

    Raised when OpenSSL really fails to load the key, never from a flag check, so the fault emerges
    the way it does on a real server.
    """

    status = "NoCredentials"  # the SecurityStatus name Exchange logs

    def __init__(self, message: str, *, cert_name: str | None = None, thumbprint: str | None = None) -> None:
        super().__init__(message)
        self.cert_name = cert_name
        self.thumbprint = thumbprint


class UnknownCredentialsError(NoCredentialsError):
    """The key exists but the transport service may not use it (Exchange: `UnknownCredentials`).

    Enable-ExchangeCertificate -Services SMTP is what gives the transport service access to a
    certificate's private key; a certificate never enabled for SMTP fails this way when a connector
    selects it by TlsCertificateName (KB 4051498). Raised when OpenSSL really fails to load it.
    """

    status = "UnknownCredentials"


class CrlUnavailable(PkiError):
    """A CRL could not be fetched; `reason` is short ("connection refused", "timed out", "HTTP 404")."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"CRL {url} unavailable: {reason}")
        self.url = url
        self.reason = reason
