"""In-memory rate limits for the web chat, and which address a request really came from.

Token buckets keyed by visitor or by client address, bounded in size: an attacker spraying new
keys costs memory only up to ``max_keys``, after which full (idle) buckets are dropped and, if
that is not enough, all of them (bounded memory beats perfect fairness under a spray attack).
The limits are per process; several web processes each count on their own.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` events per ``seconds``, at most ``count`` at once."""

    count: int
    seconds: float


class TokenBuckets:
    """One token bucket per key: ``allow`` spends a token, refilled at ``rate``."""

    def __init__(self, rate: Rate, max_keys: int = 50_000) -> None:
        self.capacity = float(rate.count)
        self.per_second = rate.count / rate.seconds
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.per_second)
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self.prune(now)
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def prune(self, now: float | None = None) -> None:
        """Forget buckets that have filled up again: they behave as new ones would."""
        now = time.monotonic() if now is None else now
        self._buckets = {
            key: (tokens, last)
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.per_second < self.capacity
        }


def parse_networks(values: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(value, strict=False) for value in values]


def client_address(request: web.Request, proxies: Sequence[Network]) -> str:
    """The client's address; behind a trusted proxy, read from ``X-Forwarded-For``.

    Only when the direct peer is one of ``proxies`` is the header believed, and then the first
    address from the right that is not a proxy itself (what the client put on the left is theirs
    to forge).
    """
    remote = request.remote or "unknown"
    if not proxies or not _within(remote, proxies):
        return remote
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return remote
        if not _within(hop, proxies):
            return hop
    return remote


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)
