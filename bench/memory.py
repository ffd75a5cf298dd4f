"""The four services' memory, idle and after a burst of orders: the figures behind the Kubernetes requests
and limits (deploy/README.md, "Sizing").

Starts order-api, wallet-pool, the notifier (mailing through an SMTP server on loopback) and telegram-gateway
(posting cards to a fake Bot API) as the cross-service tests do, on a fresh PostgreSQL database and Redis,
reads each process's ``VmRSS`` and ``VmHWM`` 10 s after start, sends ``--orders`` orders from 32 concurrent
clients, waits 20 s for the events, emails and cards, and reads them again with the CPU time each spent.

Usage: ``.venv/bin/python bench/memory.py [--orders 500]``. Bounded: one burst, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from desk_testing.stack import Stack, import_btc_wallets, start_services
from notifier.testing import running_smtp_server
from order_api.testing import order_body
from servicekit.testing import REDIS_TEST_URL, ServiceProcess, migrated_database
from telegram_gateway.testing import FakeBotApi

CONCURRENCY = 32
SETTLE_SECONDS = 10.0
DRAIN_SECONDS = 20.0


def pid(process: ServiceProcess) -> int:
    if process.process is None:
        raise RuntimeError(f"{process.app} is not running")
    return process.process.pid


def memory_mib(process: ServiceProcess) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (the peak so far) of a running service, in MiB."""
    figures = {}
    for line in Path(f"/proc/{pid(process)}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) // 1024
    return figures


def cpu_seconds(process: ServiceProcess) -> float:
    fields = Path(f"/proc/{pid(process)}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def burst(order_api: ServiceProcess, count: int) -> Counter[int]:
    answers: Counter[int] = Counter()
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=order_api.url, timeout=30.0) as client:

        async def one(n: int) -> None:
            async with gate:
                response = await client.post("/v1/orders", json=order_body(f"memory{n}@example.com"))
                answers[response.status_code] += 1

        await asyncio.gather(*(one(n) for n in range(count)))
    return answers


async def measure(orders: int, logs: Path) -> None:
    with running_smtp_server() as smtp:
        async with (
            FakeBotApi() as bot_api,
            migrated_database("order-api", "wallet-pool", "notifier", "telegram-gateway") as url,
        ):
            stack = Stack(database_url=url, logs=logs)
            processes = {
                "wallet-pool": stack.wallet_pool(WALLET_POOL_REDIS_URL=REDIS_TEST_URL),
                "notifier": stack.notifier(smtp_port=smtp.port, NOTIFIER_REDIS_URL=REDIS_TEST_URL),
                "telegram-gateway": stack.telegram_gateway(
                    bot_api=bot_api, TELEGRAM_GATEWAY_REDIS_URL=REDIS_TEST_URL
                ),
                "order-api": stack.order_api(
                    ORDER_API_REDIS_URL=REDIS_TEST_URL,
                    ORDER_API_ORDER_RATE_LIMIT="1000000/minute",  # one client address sends them all
                    ORDER_API_MAX_OPEN_ORDERS_PER_IP="1000000",
                ),
            }
            running: list[ServiceProcess] = []
            try:
                await start_services(running, *processes.values())
                await import_btc_wallets(processes["wallet-pool"], stack, orders)
                await asyncio.sleep(SETTLE_SECONDS)
                idle = {name: memory_mib(p) for name, p in processes.items()}
                cpu_before = {name: cpu_seconds(p) for name, p in processes.items()}
                started = time.monotonic()
                answers = await burst(processes["order-api"], orders)
                took = time.monotonic() - started
                await asyncio.sleep(DRAIN_SECONDS)
                after = {name: memory_mib(p) for name, p in processes.items()}
                cpu = {name: cpu_seconds(p) - cpu_before[name] for name, p in processes.items()}
            finally:
                for process in reversed(running):
                    await process.stop()
    print(f"{orders} orders in {took:.1f} s, answers {dict(answers)}; cards posted {len(bot_api.messages)}")
    print(f"{'service':17} {'idle RSS':>9} {'RSS after':>10} {'peak':>6} {'CPU s':>6}")
    for name in processes:
        print(
            f"{name:17} {idle[name]['VmRSS']:>5} MiB {after[name]['VmRSS']:>6} MiB "
            f"{after[name]['VmHWM']:>2} MiB {cpu[name]:>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=500, help="orders in the burst (default 500)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="desk-memory-") as logs:
        asyncio.run(measure(arguments.orders, Path(logs)))


if __name__ == "__main__":
    main()
