"""What differs between Exchange builds, as data (docs/transport-fidelity.md §6).

Each server has a `build` (topology `ExchangeServer.build`, `Set-LabServerBuild`): 2013, 2016
before the single-row certificate format ("2016-early"), 2016 CU22 ("2016") and 2019 (the
default). `BUILD_TRAITS` says, per build, what the logs and replies of that build look like; the
writers and the SMTP rules read it instead of asking "which build?" themselves.

Sources: the certificate rows - 2013 code `ProtocolLogSession.LogCertificate` (multi-row even in
the last 2013 build) [V-code], seed 004 (a 2016 server in 2017, multi-row) and seed 002 (KB 4495258,
"2016 or 2013") [seed], the single row of 2016 CU22 (QAZ) and 2019 [V-obs]; SMTPUTF8 on the
Default Frontend connector: absent in 2016 CU22 (QAZ), present in 2019 (JPB) [V-obs], absent in
2013 [INFERRED]; relay denial: `550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain`
in 2016/2019 [V-obs Q&A 2019], `550 5.7.1 Unable to relay` in 2013 [REF uncertain]; the reply a
failed outbound TLS negotiation leaves as the queue's failover response (docs/transport-fidelity.md
§6.1): `421 4.4.1 Connection timed out` in the 2013 CU23 code (`SmtpOutSession.HandleError` ->
local disconnect -> `SmtpResponse.ConnectionTimedOut`) [V-code] and in KB 4051498 / KB 4495258
[V-obs]; `421 4.2.1 Unable to connect` on the 2016 server of seed 004 (2017) and on 2013 CU17
(therealcontoso.com 2017-10) [V-obs].
"""

from __future__ import annotations

from dataclasses import dataclass

from ..topology.model import EXCHANGE_BUILD_VERSIONS


@dataclass(frozen=True)
class BuildTraits:
    """The formats and texts one Exchange build writes."""

    multi_row_certificates: bool  # `Sending certificate` + one row per property (2013, early 2016)
    frontend_smtputf8: bool       # Default Frontend advertises SMTPUTF8 by default
    relay_denied: str             # RCPT to a non-accepted domain without relay permission
    tls_failure_response: str     # the failover response after this server's own TLS negotiation failed


_RELAY_2016 = "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"
_TIMED_OUT = "421 4.4.1 Connection timed out"  # SmtpResponse.ConnectionTimedOut
_UNABLE = "421 4.2.1 Unable to connect"  # SmtpResponse.UnableToConnect

BUILD_TRAITS: dict[str, BuildTraits] = {
    "2013": BuildTraits(multi_row_certificates=True, frontend_smtputf8=False, relay_denied="550 5.7.1 Unable to relay",
                       tls_failure_response=_TIMED_OUT),
    "2016-early": BuildTraits(multi_row_certificates=True, frontend_smtputf8=False, relay_denied=_RELAY_2016,
                              tls_failure_response=_UNABLE),
    "2016": BuildTraits(multi_row_certificates=False, frontend_smtputf8=False, relay_denied=_RELAY_2016,
                        tls_failure_response=_TIMED_OUT),
    "2019": BuildTraits(multi_row_certificates=False, frontend_smtputf8=True, relay_denied=_RELAY_2016,
                        tls_failure_response=_TIMED_OUT),
}
assert set(BUILD_TRAITS) == set(EXCHANGE_BUILD_VERSIONS), "every build has its traits"


def traits(build: str) -> BuildTraits:
    """The traits of `build` (a topology ExchangeBuild value)."""
    return BUILD_TRAITS[build]


def received_id(version: str) -> str:
    """The Received header's `id` for a server version: `15.01.2375.007` -> `15.1.2375.7` [V-obs]."""
    return ".".join(str(int(p)) for p in version.split("."))
