"""Exchange's exact words in SMTP protocol logs: one table or template per kind of text.

Why a separate module: the same mechanism must always produce the same words wherever it happens
(shared/design-notes.md, "Faults that emerge"), so session code asks this module for text and
never spells an Exchange string itself. Sources follow shared/reference/log-formats.md §2.3:
[REAL] = seen in a real log excerpt, [UNVERIFIED] = believed exact but not seen in a real log,
[INFERRED] = our own choice where nothing public shows the answer.
"""

from __future__ import annotations

import errno
import ipaddress
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Literal

from ..clock import iso_ms

__all__ = [
    "SENDING_CERTIFICATE", "REMOTE_CERTIFICATE", "RECEIVING_MESSAGE", "ATTEMPTING_TO_CONNECT",
    "SET_SESSION_PERMISSIONS", "PERMISSIONS_IN_ENUM_ORDER", "DISCONNECT_REASONS",
    "CHAIN_VALIDITY_STATUSES", "WINSOCK_MESSAGES", "SOCKET_ERROR_NAMES",
    "certificate_row_data", "dotnet_serial_hex", "tls_success_context", "tls_negotiation_failed",
    "outbound_tls_auth_failed", "client_certificate_chain_status", "tls_domain_capabilities",
    "receiving_message_data", "proxy_destinations_context", "proxying_inbound_context",
    "ehlo_reply_receive", "ehlo_reply_send",
    "connect_failed_context", "winsock_code", "session_permissions_data", "disconnect_context",
    "format_endpoint", "escape_controls", "byte_quantified_size",
]

# --- control bytes ------------------------------------------------------------------------------

# Exchange's log writer (Utf8Csv.Escape) turns CR and LF into `\r` / `\n` (csvfmt.escape does that)
# and writes every other byte raw, NUL included. [INFERRED] labsim never writes a raw control byte
# into a log: the other C0 controls (TAB excepted) and DEL become `\xNN` (two lower-case hex digits,
# the form Exchange's own error text uses for a byte, `'0x{0:x2}'`). docs/smtp-limits.md §5.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def escape_controls(text: str) -> str:
    r"""`text` with C0 controls other than TAB, CR and LF, and DEL, written as `\xNN` [INFERRED]."""
    if (text.isascii() and text.isprintable()) or _CONTROLS.search(text) is None:  # (the first: in C, no regex)
        return text
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def byte_quantified_size(n: int) -> str:
    """ByteQuantifiedSize.ToString(): `256 KB (262,144 bytes)` - the largest unit, `{0:G4}`, then the
    byte count with thousands separators (Microsoft.Exchange.Data.ByteQuantifiedSize)."""
    for shift, unit in ((40, "TB"), (30, "GB"), (20, "MB"), (10, "KB")):
        if n >> shift:
            return f"{n / (1 << shift):.4g} {unit} ({n:,} bytes)"
    return f"{n} B ({n:,} bytes)"


# --- certificates -------------------------------------------------------------------------------

# [REAL: QAZ 15.01.2375] the single-row certificate format of 2016/2019.
SENDING_CERTIFICATE = ("Sending certificate Subject Issuer name Serial number Thumbprint "
                       "Not before Not after Subject alternate names")
# [INFERRED] by analogy with SENDING_CERTIFICATE; the analyzer ELX matches "Remote certificat*".
REMOTE_CERTIFICATE = ("Remote certificate Subject Issuer name Serial number Thumbprint "
                      "Not before Not after Subject alternate names")


def certificate_row_data(subject: str, issuer: str, serial_hex: str, thumbprint: str,
                         not_before: datetime, not_after: datetime, sans: Sequence[str]) -> str:
    """`data` of the certificate row [REAL: QAZ]: a leading space, then space-separated values.

    `subject`/`issuer` as .NET prints them (`CN=x, O=y`); commas make the CSV layer quote the
    field [INFERRED from the quoting rule]. SANs are joined by `;` [REAL].
    """
    return (f" {subject} {issuer} {serial_hex} {thumbprint} {iso_ms(not_before)} "
            f"{iso_ms(not_after)} {';'.join(sans)}")


def dotnet_serial_hex(serial: int) -> str:
    """X509Certificate2.SerialNumber: the DER integer's bytes in upper-case hex.

    Unlike `format(serial, "X")` it keeps whole bytes and the leading 00 of a serial whose top
    bit is set, as Windows does.
    """
    if serial < 0:
        raise ValueError("certificate serials are positive")
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big").hex().upper()


# --- TLS ----------------------------------------------------------------------------------------

# Python ssl `version()` -> SChannel protocol name stem [UNVERIFIED enum; REAL: TLS1_2_SERVER (QAZ),
# TLS1_0_CLIENT (CN)]. TLS1_3 is [INFERRED], not seen in any sample.
_SCHANNEL_PROTOCOLS = {"SSLv3": "SSL3", "TLSv1": "TLS1_0", "TLSv1.1": "TLS1_1",
                       "TLSv1.2": "TLS1_2", "TLSv1.3": "TLS1_3"}
# OpenSSL cipher-name fragment -> CAPI bulk algorithm [REAL: CALG_AES_128 (QAZ), CALG_AES_256 (CN);
# UNVERIFIED: 3DES, RC4]. SChannel has no ChaCha20, so such a cipher is an error, not a guess:
# the lab's TLS contexts must offer only what SChannel can negotiate.
_BULK = (("AES256", "CALG_AES_256"), ("AES_256", "CALG_AES_256"),
         ("AES128", "CALG_AES_128"), ("AES_128", "CALG_AES_128"),
         ("DES-CBC3", "CALG_3DES"), ("RC4", "CALG_RC4"))
# Digest suffix -> (CAPI hash, HMAC strength) [REAL: SHA_256 (QAZ), SHA1 160 (CN); UNVERIFIED: SHA_384].
# With an AEAD cipher (GCM) the strength is 0 bits [REAL: QAZ].
_MAC = (("SHA384", "CALG_SHA_384", 384), ("SHA256", "CALG_SHA_256", 256),
        ("SHA", "CALG_SHA1", 160), ("MD5", "CALG_MD5", 128))
# Key-exchange prefix -> CAPI name. 2016/2019 print CALG_ECDH_EPHEM [REAL: QAZ]; Exchange 2013 printed
# CALG_ECDHE [REAL: CN], not modelled. DH/RSA/static ECDH names are [UNVERIFIED].
_KX = (("ECDHE-", "CALG_ECDH_EPHEM"), ("TLS_", "CALG_ECDH_EPHEM"), ("DHE-", "CALG_DH_EPHEM"),
       ("EDH-", "CALG_DH_EPHEM"), ("ECDH-", "CALG_ECDH"))

_TLS_SUCCESS = ("TLS protocol {0} negotiation succeeded using bulk encryption algorithm {1} with "
                "strength {2} bits, MAC hash algorithm {3} with strength {4} bits and key exchange "
                "algorithm {5} with strength {6} bits")  # [UNVERIFIED template; REAL x3]


def tls_success_context(side: Literal["server", "client"], tls_version: str, cipher: str,
                        cipher_bits: int, kx_bits: int) -> str:
    """The `*` context after a handshake, from Python ssl's `version()` and `cipher()`.

    `side` is ours: "server" on Receive logs, "client" on Send logs. `kx_bits` is the key
    exchange strength (256 for an ECDHE P-256 group, the RSA modulus size for RSA key exchange).
    """
    if side not in ("server", "client"):
        raise ValueError(f"side must be 'server' or 'client', not {side!r}")
    stem = _SCHANNEL_PROTOCOLS.get(tls_version)
    if stem is None:
        raise ValueError(f"no SChannel protocol name for {tls_version!r}")
    name = cipher.upper()
    bulk = next((capi for frag, capi in _BULK if frag in name), None)
    if bulk is None:
        raise ValueError(f"SChannel has no bulk algorithm for cipher {cipher!r}")
    digest = next(((capi, bits) for suffix, capi, bits in _MAC
                   if name.endswith(("-" + suffix, "_" + suffix))), None)
    if digest is None:
        raise ValueError(f"no CAPI hash name for cipher {cipher!r}")
    mac_bits = 0 if ("GCM" in name or "CCM" in name) else digest[1]
    kx = next((capi for prefix, capi in _KX if name.startswith(prefix)), "CALG_RSA_KEYX")
    return _TLS_SUCCESS.format(f"SP_PROT_{stem}_{side.upper()}", bulk, cipher_bits, digest[0],
                               mac_bits, kx, kx_bits)


def tls_negotiation_failed(error: str) -> str:
    """[REAL: KB, supertekboy `NoCredentials`] `error` is a SecurityStatus name."""
    return f"TLS negotiation failed with error {error}"


def outbound_tls_auth_failed(auth_level: str, error: str) -> str:
    """[UNVERIFIED template; quoted by a user for DomainValidation/UntrustedRoot (seed 004)]."""
    return f"Outbound TLS authentication failed for auth level {auth_level} with error {error}"


# ChainValidityStatus names [UNVERIFIED enum; REAL: EmptyCertificate].
CHAIN_VALIDITY_STATUSES = (
    "Valid", "ValidSelfSigned", "EmptyCertificate", "SubjectMismatch", "SignatureFailure",
    "UntrustedRoot", "UntrustedTestRoot", "InternalChainFailure", "WrongUsage", "CertificateExpired",
    "ValidityPeriodNesting", "PurposeError", "BasicConstraintsError", "WrongRole", "NoCNMatch",
    "Revoked", "RevocationOffline", "CertificateRevoked", "RevocationFailure", "NoRevocationCheck",
)


def client_certificate_chain_status(status: str) -> str:
    """[REAL: QAZ `'EmptyCertificate'`] Receive side, after the post-TLS EHLO."""
    if status not in CHAIN_VALIDITY_STATUSES:
        raise ValueError(f"unknown ChainValidityStatus {status!r}")
    return f"Client certificate chain validation status: '{status}'"


def tls_domain_capabilities(capabilities: str, status: str, domain: str | None = None) -> str:
    """[REAL: QAZ without domain; UNVERIFIED template with `; Domain='…'`]."""
    text = f"TlsDomainCapabilities='{capabilities}'; Status='{status}'"
    return text if domain is None else f"{text}; Domain='{domain}'"


# --- session and message rows ----------------------------------------------------------------------

RECEIVING_MESSAGE = "receiving message"           # [REAL: TST]
ATTEMPTING_TO_CONNECT = "attempting to connect"   # [REAL: ELA]
SET_SESSION_PERMISSIONS = "Set Session Permissions"  # [REAL: ELA, RML]


def receiving_message_data(session_id: int, session_start: datetime, message_number: int) -> str:
    """`{sid:X16};{session start};{n}` [REAL: TST; UNVERIFIED format]; also the MSGTRK source-context."""
    return f"{session_id:016X};{iso_ms(session_start)};{message_number}"


def proxy_destinations_context(correlation_id: str) -> str:
    """Front End proxy row [REAL: TST 2024; the Correlation Id suffix is the newer form]."""
    return f"Proxy destination(s) obtained from OnProxyInboundMessage event. Correlation Id:{correlation_id}"


def proxying_inbound_context(inbound_session_id: int) -> str:
    """The Front End proxy's Send row (Verbose) naming the inbound session it carries
    [V-code `InboundProxySmtpOutSession.ConnectResponseEvent` and `.ResetSession`: "X16"]."""
    return f"Proxying inbound session with session id {inbound_session_id:016X}"


def _reply_parts(lines: Sequence[str]) -> tuple[str, list[str]]:
    if not lines:
        raise ValueError("an SMTP reply has at least one line")
    code = lines[0][:3]
    texts = []
    for i, line in enumerate(lines):
        sep = "-" if i < len(lines) - 1 else " "
        if line[:3] != code or not code.isdigit() or line[3:4] not in (sep, ""):
            raise ValueError(f"not a wire line of a {code} reply: {line!r}")
        texts.append(line[4:])
    return code, texts


def ehlo_reply_receive(lines: Sequence[str]) -> str:
    """Receive logs: the multi-line EHLO reply as ONE `>` row, `250` + two spaces + lines by spaces.

    `lines` are the reply's wire lines without CRLF (`250-host Hello [ip]`, …, `250 XRDST`).
    [REAL: QAZ; ANALYZER: ELX `^250\\s\\s`]. Two spaces because the flattened reply is printed as
    code, (empty) enhanced status code and text, each separated by a space; TST/JPB excerpts show
    one space [REAL, possibly collapsed in publishing] - we follow QAZ and the analyzer.
    """
    code, texts = _reply_parts(lines)
    return f"{code}  {' '.join(texts)}"


def ehlo_reply_send(lines: Sequence[str]) -> list[str]:
    """Send logs: the peer's EHLO reply as one `<` row per wire line [REAL: CN, seed 004]."""
    _reply_parts(lines)
    return list(lines)


# --- connections --------------------------------------------------------------------------------

# Windows' text for the Winsock errors a lab connection can meet. [REAL: 10061 (ELA)];
# 10060 is Windows' WSAETIMEDOUT message [UNVERIFIED in an Exchange log], as are 10051/10054/10065.
WINSOCK_MESSAGES = {
    10051: "A socket operation was attempted to an unreachable network",
    10054: "An existing connection was forcibly closed by the remote host",
    10060: ("A connection attempt failed because the connected party did not properly respond after "
            "a period of time, or established connection failed because connected host has failed "
            "to respond"),
    10061: "No connection could be made because the target machine actively refused it",
    10065: "A socket operation was attempted to an unreachable host",
}
# .NET SocketError names, used in `Remote(<name>)` disconnect contexts [REAL: ConnectionReset (TST)].
SOCKET_ERROR_NAMES = {10051: "NetworkUnreachable", 10053: "ConnectionAborted", 10054: "ConnectionReset",
                      10060: "TimedOut", 10061: "ConnectionRefused", 10065: "HostUnreachable"}
_WINSOCK_BY_ERRNO = {errno.ENETUNREACH: 10051, errno.ECONNABORTED: 10053, errno.ECONNRESET: 10054,
                     errno.ETIMEDOUT: 10060, errno.ECONNREFUSED: 10061, errno.EHOSTUNREACH: 10065}


def winsock_code(exc: BaseException) -> int | None:
    """The Winsock code Windows would report for a Python socket error, or None if unknown."""
    code = _WINSOCK_BY_ERRNO.get(getattr(exc, "errno", None) or -1)
    if code is None and isinstance(exc, TimeoutError):
        code = 10060  # asyncio/socket timeouts carry no errno
    return code


def format_endpoint(ip: str, port: int) -> str:
    """`IP:port` as .NET's IPEndPoint prints it (IPv6 in brackets) [INFERRED for IPv6]."""
    return f"[{ip}]:{port}" if _is_v6(ip) else f"{ip}:{port}"


@lru_cache(maxsize=1024)  # three endpoints a session, of the lab's few addresses
def _is_v6(ip: str) -> bool:
    return ipaddress.ip_address(ip.split("%")[0]).version == 6


def connect_failed_context(winsock: int, destination_domain: str, ip: str, port: int,
                           *, win32: int | None = None, message: str | None = None) -> str:
    """The Send-side `*` context of a failed TCP connect [REAL: ELA, 10061].

    `win32` defaults to the Winsock code (both 10061 in the sample); `message` to Windows' text.
    """
    if message is None:
        message = WINSOCK_MESSAGES[winsock]
    return (f"Failed to connect. Winsock error code: {winsock}, Win32 error code: "
            f"{winsock if win32 is None else win32}, Destination domain: {destination_domain}, "
            f"Error Message: {message} {format_endpoint(ip, port)}.")


# DisconnectReason enum names [UNVERIFIED; REAL: Remote, Remote(ConnectionReset)].
DISCONNECT_REASONS = ("None", "QuitVerb", "Timeout", "SenderDisconnected", "TooManyErrors",
                      "DroppedSession", "Remote", "Local", "SuppressLogging")


def disconnect_context(reason: str, remote_error: str | None = None) -> str:
    """Context of a `-` row: the reason, optionally `(<SocketError name>)` with no space."""
    if reason not in DISCONNECT_REASONS:
        raise ValueError(f"unknown DisconnectReason {reason!r}")
    return reason if remote_error is None else f"{reason}({remote_error})"


# --- permissions --------------------------------------------------------------------------------

# Permission names in enum order [UNVERIFIED order; REAL: the RML/2010 anonymous set is a subsequence].
PERMISSIONS_IN_ENUM_ORDER = (
    "SMTPSubmit", "SMTPSubmitForMLS", "SMTPAcceptAnyRecipient", "SMTPAcceptAuthenticationFlag",
    "SMTPAcceptAnySender", "SMTPAcceptAuthoritativeDomainSender", "BypassAntiSpam",
    "BypassMessageSizeLimit", "SMTPSendEXCH50", "SMTPAcceptEXCH50", "AcceptRoutingHeaders",
    "AcceptForestHeaders", "AcceptOrganizationHeaders", "SendRoutingHeaders", "SendForestHeaders",
    "SendOrganizationHeaders", "SendAs", "SMTPSendXShadow", "SMTPAcceptXShadow", "SMTPAcceptXProxyFrom",
    "SMTPAcceptXSessionParams", "SMTPAcceptXMessageContextADRecipientCache",
    "SMTPAcceptXMessageContextExtendedProperties", "SMTPAcceptXMessageContextFastIndex",
    "SMTPAcceptXAttr", "SMTPAcceptXSysProbe",
)
_PERMISSION_RANK = {name: i for i, name in enumerate(PERMISSIONS_IN_ENUM_ORDER)}


def session_permissions_data(permissions: Iterable[str]) -> str:
    """`data` of the `Set Session Permissions` row: names in enum order, `None` if empty [REAL: ELA]."""
    names = set(permissions)
    unknown = names - _PERMISSION_RANK.keys()
    if unknown:
        raise ValueError(f"unknown permission name(s): {sorted(unknown)}")
    return " ".join(sorted(names, key=_PERMISSION_RANK.__getitem__)) or "None"
