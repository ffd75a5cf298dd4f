"""Capacity planning with Erlang C (the M/M/c queue): pure functions, no I/O.

A pool is a queue with ``c`` servers (its wallets). Orders arrive at rate ``λ`` (per second) and each holds a
wallet for an exponentially distributed time of mean ``1/μ`` (allocation → release, plus the currency's reuse
cool-down, during which the wallet cannot serve either). With offered load ``a = λ/μ`` and ``c > a``:

- ``C(c, a)``, the probability that an order has to wait at all (Erlang C), computed through the Erlang B
  recursion ``B(0) = 1``, ``B(k) = a·B(k-1) / (k + a·B(k-1))`` and ``C = c·B / (c - a·(1 - B))``, which stays
  exact in floating point for thousands of servers where the factorial form overflows;
- ``P(wait > t) = C(c, a) · exp(-(c·μ - λ)·t)``.

The recommendation is the smallest ``c`` with ``P(wait > target) ≤ 10 %``: then the 90th percentile of the
wait is at most the target.
"""

from __future__ import annotations

import math

METHOD = "erlang_c"
WAIT_QUANTILE_MISSED = 0.10
"""At most this share of orders may wait longer than the target (the target is the p90 wait)."""
MAX_SERVERS = 100_000


def erlang_c(servers: int, offered_load: float) -> float:
    """The probability that an arriving order waits (``C(c, a)``); 1.0 when the pool cannot keep up
    (``c ≤ a``)."""
    if offered_load <= 0:
        return 0.0
    if servers <= offered_load:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    return servers * blocking / (servers - offered_load * (1.0 - blocking))


def probability_of_waiting_longer(
    servers: int, *, arrival_rate: float, service_rate: float, seconds: float
) -> float:
    """``P(wait > seconds)`` in an M/M/c queue with ``servers`` servers."""
    offered_load = arrival_rate / service_rate
    waits = erlang_c(servers, offered_load)
    if servers <= offered_load:
        return waits
    return waits * math.exp(-(servers * service_rate - arrival_rate) * seconds)


def servers_needed(*, arrival_rate: float, service_rate: float, target_wait_seconds: float) -> int:
    """The fewest servers (wallets) with ``P(wait > target) ≤ 10 %``; 0 when nothing arrives. One pass of the
    Erlang B recursion over ``c = 1, 2, …`` (each step reuses the previous ``B``)."""
    if arrival_rate <= 0:
        return 0
    offered_load = arrival_rate / service_rate
    blocking = 1.0
    for servers in range(1, MAX_SERVERS + 1):
        blocking = offered_load * blocking / (servers + offered_load * blocking)
        if servers <= offered_load:
            continue
        waits = servers * blocking / (servers - offered_load * (1.0 - blocking))
        decay = math.exp(-(servers * service_rate - arrival_rate) * target_wait_seconds)
        if waits * decay <= WAIT_QUANTILE_MISSED:
            return servers
    return MAX_SERVERS
