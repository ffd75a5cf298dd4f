"""The FIFO pick under sustained churn: ``bench/pick_churn.sql`` (pick, reserve, release) with pgbench for
``--seconds``, once with nothing cleaning up behind it and once with wallet-pool's own busy-table vacuum
(``servicekit.maintenance``, the function its worker runs) every ``--vacuum-seconds``. Prints the
transactions per second of the first and the last seconds of each run.

Without cleanup the dead index entries pile up at the head of ``ix_wallet_free_fifo`` and every pick steps
over them; the per-table autovacuum settings of the migrations only help where the server's autovacuum is on.

Usage: ``.venv/bin/python bench/pick_churn.py [--seconds 15] [--clients 8]`` (``make bench`` runs it).
Bounded: two runs of ``--seconds`` on loopback against a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

from servicekit.db import Database
from servicekit.maintenance import vacuum_busy_tables
from servicekit.testing import migrated_database
from wallet_pool.db import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
WALLETS = 1000
PROGRESS = re.compile(r"progress: ([0-9.]+) s, ([0-9.]+) tps")


async def fresh_pool(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE wallet_pool.wallet RESTART IDENTITY CASCADE")
        await connection.execute(
            "INSERT INTO wallet_pool.wallet (currency, network, address, status, allocation_count, created_at) "
            "SELECT 'BTC', 'bitcoin', 'churn-' || g, 'free', 0, now() FROM generate_series(1, $1) g",
            WALLETS,
        )
        await connection.execute("VACUUM ANALYZE wallet_pool.wallet")
    finally:
        await connection.close()


async def churn(dsn: str, *, seconds: int, clients: int) -> list[float]:
    """pgbench's transactions per second, one figure per second."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise RuntimeError("pgbench is not installed")
    process = await asyncio.create_subprocess_exec(
        pgbench, "-h", "127.0.0.1", "-U", "postgres", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
        "-T", str(seconds), "-P", "1", "-f", str(ROOT / "bench" / "pick_churn.sql"), dsn.rsplit("/", 1)[1],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    output = stdout.decode() + stderr.decode()
    if process.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{output}")
    return [float(tps) for _, tps in PROGRESS.findall(output)]


async def vacuum_while(task: asyncio.Task[list[float]], *, database: Database, every: float) -> int:
    passes = 0
    while not task.done():
        passes += await vacuum_busy_tables(database=database, tables=("wallet",), dead_rows_threshold=1000)
        await asyncio.sleep(every)
    return passes


def summary(series: list[float]) -> dict[str, Any]:
    tail = series[-3:] or [0.0]
    return {"first_second_tps": series[0] if series else None, "last_3s_tps": round(sum(tail) / len(tail), 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--vacuum-seconds", type=float, default=2.0, help="wallet-pool's vacuum_check_seconds"
    )
    args = parser.parse_args()
    if shutil.which("pgbench") is None:
        print("pick churn: pgbench is not installed; skipped")
        return
    results: dict[str, Any] = {}
    async with migrated_database("wallet-pool", prefix="desk_churn") as url:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        await fresh_pool(dsn)
        bare = await churn(dsn, seconds=args.seconds, clients=args.clients)
        results["no cleanup"] = {**summary(bare), "series": bare}

        await fresh_pool(dsn)
        database = Database(
            url=url, schema=SCHEMA, var_dir=Path(tempfile.gettempdir()), service_name="wallet-pool"
        )
        try:
            run = asyncio.create_task(churn(dsn, seconds=args.seconds, clients=args.clients))
            passes = await vacuum_while(run, database=database, every=args.vacuum_seconds)
            kept = await run
        finally:
            await database.dispose()
        results["wallet-pool vacuum"] = {**summary(kept), "series": kept, "vacuums": passes}

    print(f"FIFO pick under churn ({WALLETS} wallets, {args.clients} clients, {args.seconds} s, pgbench):")
    for name, figures in results.items():
        print(
            f"  {name:20}: first second {figures['first_second_tps']:8.1f} tps, "
            f"last 3 s {figures['last_3s_tps']:8.1f} tps"
            + (f" ({figures['vacuums']} vacuums)" if "vacuums" in figures else "")
        )
    out = ROOT / "var" / "bench" / "pick_churn.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
