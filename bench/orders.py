"""Order intake under load: order-api and wallet-pool on PostgreSQL + Redis, ``POST /v1/orders`` from N
concurrent clients on loopback for a fixed time, then the raw PostgreSQL limit for the same writes measured
with ``pgbench`` and ``bench/order_writes.sql``. Prints orders/s, p50/p99 and the ratio ours / raw.

Each client posts a new customer's order with an ``Idempotency-Key``, as a frontend does, from its own
address behind a trusted proxy. The services run with their default settings except the trace sample ratio
(``--sample-ratio``) and warnings-only logs; a stand-in notifier accepts their events, and the run reports
how far order-api's outbox relay (``order.created``) was behind when the load stopped.

Usage: ``.venv/bin/python bench/orders.py [--seconds 20] [--concurrency 32]`` (``make bench`` runs it).
Bounded: one run of ``--seconds`` plus warm-up, loopback only, a pool large enough not to run out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import uvloop
from aiohttp import web
from loadgen import percentile  # bench/loadgen.py: a script's own folder is on its import path
from sqlalchemy.engine import URL, make_url

from coin_addresses import demo_address
from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.testing import (
    ServiceProcess,
    event_receiver_stand_in,
    eventually,
    migrated_database,
    serve_stand_in,
)

ROOT = Path(__file__).resolve().parents[1]

PAYOUT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
BAR_ORDERS_PER_SECOND = 300
BAR_P99_MS = 150
REDIS_URL = "redis://127.0.0.1:6379/12"


def entries(*items: ApiKeyEntry) -> str:
    return json.dumps([e.model_dump() for e in items])


def notifier_stand_in(received: dict[str, int]) -> web.Application:
    """The notifier's event receiver, accepting every event (as the real one does once it is in its inbox), so
    the services' outbox relays do their production work; ``received`` counts them by type."""

    def count(event: dict[str, Any], _request: web.Request) -> None:
        received[event["type"]] = received.get(event["type"], 0) + 1

    return event_receiver_stand_in(count)


async def start_services(
    database_url: str, logs: Path, sample_ratio: str, notifier_url: str
) -> tuple[ServiceProcess, ServiceProcess, str]:
    """Both services as uvicorn processes with their default settings except: the trace sample ratio
    (``--sample-ratio``), warnings-only logs, and the notifier played by a stand-in."""
    order_key, wallet_key, events_key, admin_key = (
        mint_key("oa"),
        mint_key("adm"),
        mint_key("wp"),
        mint_key("adm"),
    )
    wallet_pool = ServiceProcess(
        app="wallet_pool.main:create_app",
        env={
            "WALLET_POOL_DATABASE_URL": database_url,
            "WALLET_POOL_REDIS_URL": REDIS_URL,
            "WALLET_POOL_LOG_LEVEL": "WARNING",
            "WALLET_POOL_TRACE_SAMPLE_RATIO": sample_ratio,
            "WALLET_POOL_NOTIFIER__URL": notifier_url,
            "WALLET_POOL_API_KEYS": entries(
                ApiKeyEntry(
                    name="order-api",
                    hash=hash_key(order_key),
                    scopes=["allocations:write", "allocations:read", "pool:read", "events:publish"],
                ),
                ApiKeyEntry(name="admin", hash=hash_key(wallet_key), scopes=["wallets:write", "pool:read"]),
            ),
        },
        log_path=logs / "wallet-pool.log",
    )
    await wallet_pool.start()
    order_api = ServiceProcess(
        app="order_api.main:create_app",
        env={
            "ORDER_API_DATABASE_URL": database_url,
            "ORDER_API_REDIS_URL": REDIS_URL,
            "ORDER_API_LOG_LEVEL": "WARNING",
            "ORDER_API_TRACE_SAMPLE_RATIO": sample_ratio,
            "ORDER_API_NOTIFIER__URL": notifier_url,
            "ORDER_API_VAR_DIR": str(logs),
            "ORDER_API_API_KEYS": entries(
                ApiKeyEntry(name="admin", hash=hash_key(admin_key), scopes=["admin"]),
                ApiKeyEntry(name="wallet-pool", hash=hash_key(events_key), scopes=["events:publish"]),
            ),
            "ORDER_API_WALLET_POOL__URL": wallet_pool.url,
            "ORDER_API_WALLET_POOL__API_KEY": order_key,
            # Clients come through a trusted proxy with their own addresses (X-Forwarded-For), so the default
            # per-IP limits apply as in production, counted in Redis.
            "ORDER_API_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        },
        log_path=logs / "order-api.log",
    )
    await order_api.start()
    return wallet_pool, order_api, wallet_key


async def nearest_route(url: str) -> tuple[str, str]:
    """The services' URL for database ``url`` and how it is reached: over PostgreSQL's Unix socket when the
    server has one on this machine, as a deployment with the database on the same host would connect (loopback
    TCP costs the kernel a TCP stack on both sides of every round trip: about a tenth of the CPU per order
    here), else as given."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        directories = str(await connection.fetchval("SHOW unix_socket_directories"))
        port = int(await connection.fetchval("SHOW port"))
    finally:
        await connection.close()
    for directory in (d.strip() for d in directories.split(",")):
        socket = Path(directory, f".s.PGSQL.{port}")
        if directory.startswith("/") and await asyncio.to_thread(socket.exists):
            parsed = make_url(url)
            over_socket = URL.create(
                parsed.drivername,
                username=parsed.username,
                password=parsed.password,
                database=parsed.database,
                query={"host": directory, "port": str(port)},
            )
            return over_socket.render_as_string(hide_password=False), "Unix socket"
    return url, "loopback TCP"


async def import_wallets(wallet_pool: ServiceProcess, key: str, count: int) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        for start in range(0, count, 1000):
            addresses = [
                demo_address(currency="BTC", network="bitcoin", seed=i)
                for i in range(start, min(count, start + 1000))
            ]
            async with http.post(
                f"{wallet_pool.url}/v1/wallets", json={"currency": "BTC", "addresses": addresses}
            ) as r:
                if r.status != 201:
                    raise RuntimeError(f"wallet import failed: {r.status} {await r.text()}")


def cpu_seconds() -> dict[str, float]:
    """CPU time used so far (user + system, seconds) by every process of interest on this machine, by name:
    the two services (by their uvicorn app), PostgreSQL (all its processes), Redis, and the whole machine."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        if "order_api.main" in cmdline:
            name = "order-api"
        elif "wallet_pool.main" in cmdline:
            name = "wallet-pool"
        elif comm == "postgres":
            name = "postgresql"
        elif comm.startswith("redis"):
            name = "redis"
        elif int(proc.name) == os.getpid():
            name = "load generator"
        else:
            continue
        used[name] = used.get(name, 0.0) + seconds
    busy = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    idle = int(busy[3]) + int(busy[4])  # idle, iowait
    used["machine"] = (sum(int(v) for v in busy[:8]) - idle) / tick
    used["machine softirq"] = int(busy[6]) / tick  # loopback networking, mostly: not in any process's time
    used["machine steal"] = int(busy[7]) / tick  # taken by the hypervisor for other guests
    return used


async def cpu_during(start_at: float, end_at: float) -> dict[str, float]:
    """CPU seconds each process used between two ``time.perf_counter`` instants (the measured window).
    PostgreSQL backends that exit inside the window are missed; the services keep theirs pooled."""
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    before = cpu_seconds()
    await asyncio.sleep(max(0.0, end_at - time.perf_counter()))
    after = cpu_seconds()
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


async def load(url: str, *, seconds: float, warmup: float, concurrency: int) -> dict[str, Any]:
    """``concurrency`` clients create orders (a new customer each, with an ``Idempotency-Key``) as fast as they
    are answered."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    first_error: dict[str, str] = {}
    accepted = 0  # every order created, warm-up and stragglers included (each is announced to the notifier)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:
        warm_end = time.perf_counter() + warmup
        deadline = warm_end + seconds
        cpu = asyncio.create_task(cpu_during(warm_end, deadline))

        async def client() -> None:
            nonlocal accepted
            while (start := time.perf_counter()) < deadline:
                body = {
                    "email": f"bench-{uuid.uuid4().hex}@example.com",
                    "from_currency": "BTC",
                    "to_currency": "USDT",
                    "to_network": "TRC20",
                    "amount": "0.01",
                    "payout_address": PAYOUT,
                }
                # A fresh client address per order, as the frontend's proxy reports it.
                client_ip = str(ipaddress.IPv4Address(0x0A000000 + secrets.randbelow(1 << 24)))
                error = None
                try:
                    # As a frontend sends it: an Idempotency-Key per checkout, so a retry cannot double it.
                    headers = {"X-Forwarded-For": client_ip, "Idempotency-Key": uuid.uuid4().hex}
                    async with http.post(f"{url}/v1/orders", json=body, headers=headers) as response:
                        text = await response.text()
                        if response.status != 201:
                            error = f"HTTP {response.status}"
                            first_error.setdefault(error, text[:300])
                        else:
                            accepted += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = type(exc).__name__
                end = time.perf_counter()
                if warm_end <= end <= deadline:
                    if error is None:
                        latencies.append(end - start)
                    else:
                        errors[error] = errors.get(error, 0) + 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        cpu_used = await cpu
    ordered = sorted(latencies)
    return {
        "orders": len(ordered),
        "accepted": accepted,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "first_errors": first_error,
        "orders_per_second": len(ordered) / seconds,
        "p50_ms": percentile(ordered, 0.5) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "cpu_seconds": cpu_used,
        "cpu_ms_per_order": {
            name: round(used * 1000 / len(ordered), 2) if ordered else None for name, used in cpu_used.items()
        },
    }


async def raw_postgres_limit(*, seconds: int, concurrency: int, wallets: int) -> dict[str, Any]:
    """pgbench on a migrated scratch database running ``bench/order_writes.sql`` (the same writes)."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return {"tps": None, "note": "pgbench not installed"}
    async with migrated_database("order-api", "wallet-pool", prefix="desk_pgbench") as url:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "INSERT INTO wallet_pool.wallet (currency, network, address, status, allocation_count, created_at) "
                "SELECT 'BTC', 'bitcoin', 'bench-' || g, 'free', 0, now() FROM generate_series(1, $1) g",
                wallets,
            )
            await connection.execute("VACUUM ANALYZE wallet_pool.wallet")
        finally:
            await connection.close()
        database = dsn.rsplit("/", 1)[1]
        result = subprocess.run(  # noqa: S603, ASYNC221 - fixed argv; the bench waits for it by design
            [
                pgbench,
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-n",
                "-M",
                "prepared",
                "-c",
                str(concurrency),
                "-j",
                "2",
                "-T",
                str(seconds),
                "-f",
                str(ROOT / "bench" / "order_writes.sql"),
                database,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    latency = re.search(r"latency average = ([0-9.]+) ms", result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed:\n{result.stdout}\n{result.stderr}")
    return {"tps": float(match.group(1)), "latency_avg_ms": float(latency.group(1)) if latency else None}


async def announcements_drained(
    events: dict[str, int], *, accepted: int, within: float = 120.0
) -> dict[str, Any]:
    """How far the outbox relay was behind when the load stopped, and how long it took to catch up: intake
    answers before the order is announced (``order.created``), so the relay's share of the work shows here."""
    at_end = events.get("order.created", 0)
    started = time.perf_counter()

    async def delivered() -> int:
        return events.get("order.created", 0)

    with contextlib.suppress(AssertionError):  # reported as delivered < accepted
        await eventually(delivered, until=lambda count: count >= accepted, within=within, interval=0.1)
    return {
        "accepted": accepted,
        "delivered_when_load_stopped": at_end,
        "delivered": events.get("order.created", 0),
        "catch_up_seconds": round(time.perf_counter() - started, 1),
    }


async def main_async(args: argparse.Namespace) -> int:
    logs = ROOT / "var" / "bench" / "orders"
    logs.mkdir(parents=True, exist_ok=True)
    wallets = int(args.wallets)
    events: dict[str, int] = {}
    async with (
        migrated_database("order-api", "wallet-pool", prefix="desk_bench") as url,
        serve_stand_in(notifier_stand_in(events)) as notifier_url,
    ):
        services_url, route = (
            await nearest_route(url) if args.database_route == "nearest" else (url, "loopback TCP")
        )
        wallet_pool, order_api, wallet_key = await start_services(
            services_url, logs, args.sample_ratio, notifier_url
        )
        try:
            await import_wallets(wallet_pool, wallet_key, wallets)
            ours = await load(
                order_api.url, seconds=args.seconds, warmup=args.warmup, concurrency=args.concurrency
            )
            ours["announcements"] = await announcements_drained(events, accepted=ours["accepted"])
            ours["database_route"] = route
        finally:
            await order_api.stop()
            await wallet_pool.stop()
    raw = await raw_postgres_limit(
        seconds=int(min(args.seconds, 10)), concurrency=args.concurrency, wallets=60_000
    )
    ratio = ours["orders_per_second"] / raw["tps"] if raw.get("tps") else None
    meets = ours["orders_per_second"] >= BAR_ORDERS_PER_SECOND and ours["p99_ms"] <= BAR_P99_MS
    print(
        f"\nOrder intake: POST /v1/orders, {args.concurrency} clients, {args.seconds:.0f} s after {args.warmup:.0f} s of warm-up "
        f"(order-api + wallet-pool, PostgreSQL over {ours['database_route']} + Redis, "
        f"trace sample ratio {args.sample_ratio})"
    )
    print(
        f"  ours : {ours['orders_per_second']:8.1f} orders/s   p50 {ours['p50_ms']:6.1f} ms   "
        f"p99 {ours['p99_ms']:6.1f} ms   errors {ours['errors']} {ours['error_kinds'] or ''}"
    )
    lag = ours["announcements"]
    print(
        f"  order.created to the notifier: {lag['delivered_when_load_stopped']} of {lag['accepted']} delivered "
        f"when the load stopped, {lag['delivered']} after {lag['catch_up_seconds']} s more"
    )
    per_order = ours["cpu_ms_per_order"]
    print(
        "  CPU per order (ms): "
        + ", ".join(f"{name} {per_order[name]}" for name in sorted(per_order) if per_order[name] is not None)
        + f" (machine: {ours['cpu_seconds']['machine'] / args.seconds:.2f} of {os.cpu_count()} cores busy)"
    )
    if raw.get("tps"):
        print(
            f"  raw  : {raw['tps']:8.1f} tx/s (pgbench, the same writes in SQL, {args.concurrency} clients)"
        )
        print(f"  ratio ours/raw: {ratio:.2f}")
    print(
        f"  bar  : >= {BAR_ORDERS_PER_SECOND} orders/s with p99 <= {BAR_P99_MS} ms -> {'met' if meets else 'NOT met'}"
    )
    out = ROOT / "var" / "bench" / "orders.json"
    out.write_text(
        json.dumps(
            {
                "ours": ours,
                "raw": raw,
                "ratio": ratio,
                "meets_bar": meets,
                "events_delivered": events,
                "concurrency": args.concurrency,
                "seconds": args.seconds,
            },
            indent=2,
        )
    )
    return 0 if ours["errors"] <= ours["orders"] * 0.01 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0)
    # Steady state is measured: the first seconds of load pay one-off costs. Each service's connection pool
    # grows to its size (a new PostgreSQL connection forks a backend, introspects types and fills its catalog
    # caches: 20-50 ms of CPU each, forty of them), and the freshly imported wallets get their statistics.
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--wallets", type=int, default=15_000, help="pool size (must outlast the run)")
    parser.add_argument("--sample-ratio", default="0.1", help="trace sampling ratio of both services")
    parser.add_argument(
        "--database-route",
        choices=["nearest", "tcp"],
        default="nearest",
        help="how the services reach PostgreSQL: its Unix socket when it has one here (nearest), or loopback TCP",
    )
    # uvloop: the load generator (and the notifier stand-in it serves) should take as little of the machine
    # as it can, since it shares it with what it measures.
    return uvloop.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
