"""What a failed delivery attempt becomes: the queue's LastError (on-prem) or EXO's reason.

A sending session ends in a structured `AttemptFailure`; these functions word it the way each
product does, in one table per product, so the same mechanism always gives the same words.
Sources: transport-behavior.md §3.1 (NoCredentials -> "421 4.4.1 Connection timed out"), §4.2
(failover texts), §4.3 (EXO's 4.4.31x/4.7.320 mail-flow-intelligence codes), seeds 002/003/004.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import replies as R
from .builds import traits
from .tls_policy import exo_tls_error


@dataclass(frozen=True)
class AttemptFailure:
    """Why one attempt to a target failed."""

    kind: str  # connect_timeout | connect_refused | tls_no_credentials | tls_cert_not_found |
    #            tls_required | tls_failed | cert_validation | response | socket
    target_ip: str
    target_port: int
    target_name: str = ""
    response: str | None = None  # the remote reply, for kind == "response"
    status: str | None = None  # a ChainValidityStatus / SecurityStatus name
    permanent: bool = False
    detail: str = ""
    expected: str | None = None  # cert_validation: the name the certificate had to match
    presented: str | None = None  # cert_validation: the subject of the certificate presented
    thumbprint: str | None = None  # cert_validation: its thumbprint


def _primary(response: str) -> str:
    return R.FAILOVER_PROTOCOL.format(response=response.rstrip("."))


def onprem_last_error(f: AttemptFailure, *, exchange2010: bool = False, build: str = "2019") -> str:
    """Get-Queue / Get-Message LastError for a failed attempt of an on-prem send connector.

    `exchange2010`: the wording of Exchange 2010 transport (FOPE, seed 003), which put its own
    certificate validation failure in the failover text too. `build`: the sending server's build
    (rules.builds), which words the failover response of its own failed TLS negotiation: `421 4.4.1
    Connection timed out` (2013 CU23 code, 2016 CU22, 2019) or `421 4.2.1 Unable to connect` (the
    2016 of seed 004) - docs/transport-fidelity.md §6.1."""
    if f.kind == "connect_timeout":
        return _primary(R.UNABLE_TO_CONNECT)
    if f.kind == "connect_refused":
        details = ("Failed to connect. Winsock error code: 10061, Win32 error code: 10061")
        return R.FAILOVER_SOCKET.format(details=details)
    if f.kind == "socket":
        # the session broke mid-way (a reset): MS Learn's TLS 1.0/1.1 article shows Queue Viewer's
        # '421 4.4.2 Connection dropped due to SocketError' for it
        return R.FAILOVER_SOCKET.format(details=R.CONNECTION_DROPPED_DUE_TO.format(reason="SocketError"))
    if f.kind in ("tls_no_credentials", "tls_failed"):
        return _primary(traits(build).tls_failure_response)
    if f.kind == "tls_cert_not_found":
        return R.TLS_CERT_NOT_FOUND
    if f.kind == "tls_required":
        return _primary(R.STARTTLS_REQUIRED)
    if f.kind == "cert_validation":
        # Exchange 2019 words its own outbound TLS authentication failure without the failover
        # wrapper, with the ChainValidityStatus in lower case: a real queue error on Microsoft Q&A
        # 1556853 reads `454 4.7.5 Certificate validation failure, reason:untrustedroot` (seed 001
        # error 10 retypes it as `..., Reason: SubjectMismatch`).
        if exchange2010 or not f.status:
            return _primary(R.CERT_VALIDATION_FAILURE)
        return f"{R.CERT_VALIDATION_FAILURE}, reason:{f.status.lower()}"
    if f.kind == "dns":
        return f.detail
    return _primary(f.response or R.UNABLE_TO_CONNECT)


EXO_CODES = {
    "dns": "450 4.4.312 DNS query failed",
    "connect_timeout": "450 4.4.315 Connection timed out",
    "connect_refused": "450 4.4.316 Connection refused",
    "socket": "450 4.4.318 Connection was closed abruptly",
    "cert_validation": "450 4.7.320 Certificate validation failed",
}


def exo_last_error(f: AttemptFailure) -> str:
    """EXO's delivery error for an outbound-connector attempt (message trace `LED=` text)."""
    if f.kind in ("connect_timeout", "connect_refused", "socket", "dns"):
        return EXO_CODES[f.kind]
    tls = exo_tls_error(f.kind, f.status, expected=f.expected, presented=f.presented, thumbprint=f.thumbprint)
    if tls is not None:  # TLS failures are worded in rules.tls_policy (one table)
        return tls
    if f.kind == "response" and f.response:
        return f"450 4.4.317 Cannot connect to remote server [Message={f.response}]"
    return "450 4.4.317 Cannot connect to remote server"
