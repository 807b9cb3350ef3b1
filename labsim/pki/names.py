"""Distinguished names the way Exchange and Windows print them.

Exchange shows and stores certificate names in .NET's `X500DistinguishedName.Name` form:
most specific RDN first, `", "` between RDNs, `S=` for stateOrProvinceName and values that contain
special characters wrapped in double quotes (`O="Contoso, Ltd"`). That string is what appears in
`TlsCertificateName` (`<I>issuer<S>subject`), in Get-ExchangeCertificate and in the logs, so the
lab must produce it byte for byte. Certificates themselves encode the RDNs the other way round
(C or DC first, CN last), so parsing reverses the printed order.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

__all__ = [
    "parse_dn", "dotnet_dn", "tls_certificate_name", "parse_tls_certificate_name",
]

# .NET (CertNameToStr, CERT_X500_NAME_STR) keys, in the spelling Windows prints.
_PRINT_KEYS: dict[ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "S",
    NameOID.COUNTRY_NAME: "C",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.EMAIL_ADDRESS: "E",
    NameOID.STREET_ADDRESS: "STREET",
    NameOID.TITLE: "T",
    NameOID.GIVEN_NAME: "G",
    NameOID.SURNAME: "SN",
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.POSTAL_CODE: "PostalCode",
}
# Accepted on input: the printed keys plus common aliases (RFC 4514 spells the state `ST`).
_PARSE_KEYS: dict[str, ObjectIdentifier] = {k.upper(): oid for oid, k in _PRINT_KEYS.items()}
_PARSE_KEYS.update({"ST": NameOID.STATE_OR_PROVINCE_NAME, "EMAIL": NameOID.EMAIL_ADDRESS,
                    "EMAILADDRESS": NameOID.EMAIL_ADDRESS})

# CertNameToStr quotes a value that contains one of these, or has leading/trailing blanks.
_NEEDS_QUOTES = set(',+="\n<>#;')


def _split_dn(text: str) -> list[list[tuple[str, str]]]:
    """Split a printed DN into RDNs of (key, value), honouring .NET's double-quoted values."""
    rdns: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError(f"{text!r}: expected KEY=value at position {i}")
        key = text[i:eq].strip()
        i = eq + 1
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise ValueError(f"{text!r}: unterminated quoted value for {key}")
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':  # "" inside quotes is one quote
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            value = "".join(buf)
            while i < n and text[i] == " ":
                i += 1
        else:
            start = i
            while i < n and text[i] not in ",;+":
                i += 1
            value = text[start:i].strip()
        current.append((key, value))
        if i < n:
            sep = text[i]
            if sep not in ",;+":
                raise ValueError(f"{text!r}: unexpected {sep!r} after the value of {key}")
            i += 1
            if i >= n or not text[i:].strip():
                raise ValueError(f"{text!r}: nothing after the final {sep!r}")
            if sep != "+":
                rdns.append(current)
                current = []
    if current:
        rdns.append(current)
    if not rdns:
        raise ValueError("empty distinguished name")
    return rdns


def _oid_for(key: str) -> ObjectIdentifier:
    upper = key.upper()
    if upper in _PARSE_KEYS:
        return _PARSE_KEYS[upper]
    if upper.startswith("OID."):
        return ObjectIdentifier(key[4:])
    raise ValueError(f"unknown name attribute {key!r} (use CN, O, OU, L, S, C, DC, E, ...)")


def parse_dn(text: str) -> x509.Name:
    """A printed .NET DN -> `x509.Name`, encoded in reverse (C/DC first, CN last) as real certs are."""
    rdns = []
    for rdn in _split_dn(text):
        attrs = [x509.NameAttribute(_oid_for(k), v) for k, v in rdn]
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(list(reversed(rdns)))


def _quote(value: str) -> str:
    if value == "" or value != value.strip() or any(ch in _NEEDS_QUOTES for ch in value):
        return '"' + value.replace('"', '""') + '"'
    return value


def _key(oid: ObjectIdentifier) -> str:
    return _PRINT_KEYS.get(oid) or f"OID.{oid.dotted_string}"


def dotnet_dn(name: x509.Name) -> str:
    """`X500DistinguishedName.Name`: most specific RDN first, `, ` between RDNs, ` + ` inside one."""
    parts = []
    for rdn in reversed(name.rdns):
        attrs = [f"{_key(a.oid)}={_quote(str(a.value))}" for a in rdn]
        parts.append(" + ".join(attrs))
    return ", ".join(parts)


def tls_certificate_name(cert: x509.Certificate) -> str:
    """The `TlsCertificateName` Exchange would store for this certificate: `<I>issuer<S>subject`."""
    return f"<I>{dotnet_dn(cert.issuer)}<S>{dotnet_dn(cert.subject)}"


def parse_tls_certificate_name(text: str) -> tuple[str, str]:
    """`<I>issuer<S>subject` -> (issuer_dn, subject_dn), both as printed (not normalised)."""
    text = text.strip()
    if not text.startswith("<I>") or "<S>" not in text:
        raise ValueError(f"{text!r} is not of the form <I>issuer<S>subject")
    issuer, subject = text[3:].split("<S>", 1)
    issuer, subject = issuer.strip(), subject.strip()
    if not issuer or not subject:
        raise ValueError(f"{text!r}: issuer and subject must both be given")
    return issuer, subject
