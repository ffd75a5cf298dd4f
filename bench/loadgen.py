"""A lean aiohttp load generator: N workers hit one URL for a fixed time and print a JSON summary.

Usage: ``python bench/loadgen.py URL --seconds 8 --concurrency 32 --warmup 1``. Only requests that
complete after the warm-up and before the deadline are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

MAX_REQUESTS_PER_WORKER = 1_000_000
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass
class Tally:
    """Latencies (seconds) of counted successes and the kinds of counted failures."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (``nan`` when empty)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _worker(
    session: aiohttp.ClientSession, url: str, warm_end: float, deadline: float, tally: Tally
) -> None:
    for _ in range(MAX_REQUESTS_PER_WORKER):
        start = time.perf_counter()
        if start >= deadline:
            return
        error: str | None = None
        try:
            async with session.get(url) as response:
                await response.read()
                if response.status != 200:
                    error = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        end = time.perf_counter()
        if warm_end <= end <= deadline:
            if error is None:
                tally.latencies.append(end - start)
            else:
                tally.errors[error] += 1


async def run(url: str, seconds: float, concurrency: int, warmup: float) -> dict[str, Any]:
    """Drive ``url`` with ``concurrency`` workers; return req/s, p50/p99 (ms) and error counts."""
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        warm_end = time.perf_counter() + warmup
        deadline = warm_end + seconds
        await asyncio.wait_for(
            asyncio.gather(*(_worker(session, url, warm_end, deadline, tally) for _ in range(concurrency))),
            timeout=warmup + seconds + REQUEST_TIMEOUT_SECONDS + 5,
        )
    ordered = sorted(tally.latencies)
    errors = sum(tally.errors.values())
    return {
        "requests": len(ordered),
        "errors": errors,
        "error_kinds": dict(tally.errors.most_common(5)),
        "seconds": seconds,
        "concurrency": concurrency,
        "rps": len(ordered) / seconds,
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the load on uvloop when available and print the summary as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        summary = asyncio.run(run(args.url, args.seconds, args.concurrency, args.warmup))
    else:
        summary = uvloop.run(run(args.url, args.seconds, args.concurrency, args.warmup))
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
