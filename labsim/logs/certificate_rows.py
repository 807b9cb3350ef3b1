"""The protocol log rows that show a certificate, per Exchange build (docs/transport-fidelity.md §6).

`sending_certificate_rows` gives the `(data, context)` rows a server writes when it presents its
certificate: 2016 CU22+ and 2019 write one row whose context names every field
(`protocol_text.SENDING_CERTIFICATE`, [V-obs QAZ]); 2013 and early 2016 write `Sending certificate`
then one row per property, as seed 004 quotes verbatim:

    *,,Sending certificate
    *,"CN=webmail.exchangeservergeek.com, OU=..., C=US",Certificate subject
    *,"CN=DigiCert SHA2 Secure Server CA, O=DigiCert Inc, C=US",Certificate issuer name
    *,07A7C02B0DF809CAB510F58A270A7DE9,Certificate serial number
    *,CE3A3D779940A6855B53E2F69EF2DA4BC374D3EE,Certificate thumbprint
    *,autodiscover.exchangeservergeek.com,Certificate alternate names

(Exchange 2013 code `ProtocolLogSession.LogCertificate` [V-code]; the SANs joined by `;`.)
`received_certificate_rows` is the sender's record of the peer's certificate, the same in every
build [V-obs CN, V-code `SmtpOutSession`; INFERRED for 2016/2019].
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..rules.builds import traits
from .protocol_text import SENDING_CERTIFICATE, certificate_row_data

Row = tuple[str, str]  # (data, context) of one `*` row


def sending_certificate_rows(build: str, subject: str, issuer: str, serial_hex: str, thumbprint: str,
                             not_before: datetime, not_after: datetime, sans: Sequence[str]) -> list[Row]:
    if traits(build).multi_row_certificates:
        return [("", "Sending certificate"), (subject, "Certificate subject"), (issuer, "Certificate issuer name"),
                (serial_hex, "Certificate serial number"), (thumbprint, "Certificate thumbprint"),
                (";".join(sans), "Certificate alternate names")]
    return [(certificate_row_data(subject, issuer, serial_hex, thumbprint, not_before, not_after, sans),
             SENDING_CERTIFICATE)]


def received_certificate_rows(thumbprint: str) -> list[Row]:
    return [("", "Received certificate"), (thumbprint, "Certificate thumbprint")]
