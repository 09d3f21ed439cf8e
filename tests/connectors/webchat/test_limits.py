"""Rate limits in memory and the client's address behind a proxy."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from connectors.webchat.limits import Rate, TokenBuckets, client_address, parse_networks


def test_a_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    buckets = TokenBuckets(Rate(5, 600))  # five per ten minutes
    assert [buckets.allow("v", now=0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not buckets.allow("v", now=100.0)  # 100 s refill 0.83 of a token
    assert buckets.allow("v", now=130.0)
    assert not buckets.allow("v", now=131.0)
    # Another key has its own bucket.
    assert buckets.allow("w", now=131.0)


def test_refused_attempts_do_not_dig_the_hole_deeper() -> None:
    buckets = TokenBuckets(Rate(1, 60))
    assert buckets.allow("v", now=0.0)
    for second in range(1, 59):
        assert not buckets.allow("v", now=float(second))
    assert buckets.allow("v", now=60.0)


def test_the_number_of_buckets_stays_bounded() -> None:
    buckets = TokenBuckets(Rate(2, 60), max_keys=100)
    for n in range(1000):
        buckets.allow(f"spray-{n}", now=0.0)
        assert len(buckets) <= 100
    # Idle buckets are dropped first: a full one behaves as a new one would.
    buckets = TokenBuckets(Rate(2, 60), max_keys=3)
    buckets.allow("busy", now=0.0)
    buckets.allow("busy", now=0.0)
    buckets.allow("idle-1", now=0.0)
    buckets.allow("idle-2", now=0.0)
    # At 30 s the idle ones are full again and make room; the busy one is remembered.
    assert buckets.allow("new", now=30.0)
    assert len(buckets) == 2
    assert buckets.allow("busy", now=30.0)
    assert not buckets.allow("busy", now=30.0)
    buckets.prune(now=10_000.0)
    assert len(buckets) == 0


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # No trusted proxy in the way: the header is the client's word only.
        ("203.0.113.5", "198.51.100.7", "203.0.113.5"),
        # Through the proxy: the first address from the right that is not a proxy.
        ("10.0.0.2", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.2", "192.0.2.66, 198.51.100.7", "198.51.100.7"),
        ("10.0.0.2", "198.51.100.7, 10.0.0.9", "198.51.100.7"),
        ("10.0.0.2", "2001:db8::1", "2001:db8::1"),
        # Nothing usable: the proxy itself.
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", "not-an-address", "10.0.0.2"),
        ("10.0.0.2", "10.0.0.3", "10.0.0.2"),
    ],
)
def test_the_client_address_believes_only_trusted_proxies(
    peer: str, forwarded: str, expected: str
) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    request = make_mocked_request("GET", "/chat/ws", headers=headers)
    request = request.clone(remote=peer)
    assert client_address(request, parse_networks(["10.0.0.0/8"])) == expected
    assert client_address(request, []) == peer
