"""Work done once instead of per row (issue 8): memoised TimeSpans and certificate rows keep their meaning."""

from __future__ import annotations

from datetime import timedelta

import pytest

from labsim.engine.runtime import LabRuntime
from labsim.topology.defaults import default_lab
from labsim.topology.timespec import parse_timespan


def test_a_memoised_timespan_is_still_parsed_and_a_bad_one_fails_every_time():
    assert parse_timespan("00:10:00") == timedelta(minutes=10)
    assert parse_timespan(" 00:10:00 ") == timedelta(minutes=10)
    assert parse_timespan("-2.00:00:00") == -timedelta(days=2)
    for _ in range(2):  # errors are not cached: the second call fails as the first did
        with pytest.raises(ValueError, match="not a TimeSpan"):
            parse_timespan("ten minutes")


async def test_a_certificate_row_is_the_certificates_own_and_built_once(tmp_path):
    rt = LabRuntime(default_lab(), seed=1, out=tmp_path)
    try:
        certs = [c.cert for c in (s.internal_cert() for s in rt.servers.values()) if c is not None]
        certs += [e.cert for s in rt.servers.values() for e in s.store.entries]
        distinct = {c: rt.certificate_row_x509(c) for c in certs}
        assert len(set(distinct.values())) == len(distinct) > 1  # each certificate its own row
        for c in certs:
            row = rt.certificate_row_x509(c)
            assert row is distinct[c]  # the same text object: not built again
            assert rt.certificate_subject(c).split(",")[0] in row and rt.certificate_thumbprint(c) in row
    finally:
        await rt.stop()
