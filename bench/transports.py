"""Service-to-service HTTP clients under load: plain httpx, httpx over aiohttp, raw aiohttp (untraced, with
OpenTelemetry's official aiohttp-client instrumentation, and with a span made by hand), and servicekit's
``ServiceClient`` (aiohttp underneath, a client span per call).

A two-hop echo chain on loopback: ``loadgen.py`` -> service A -> service B (``echo_chain.py``, uvicorn,
one worker each, separate processes). Service A calls B through the client under test; one row per
client. Prints a table and a verdict, writes ``var/bench/transports.json``, and exits non-zero when a
variant had more than 1 % errors or the instrumented run did not propagate ``traceparent``.

Usage (from the repo root): ``.venv/bin/python bench/transports.py [--seconds 8] [--concurrency 32]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = ROOT / "var" / "bench"
ECHO_CHAIN = str(BENCH_DIR / "echo_chain.py")
LOADGEN = str(BENCH_DIR / "loadgen.py")
READY_TIMEOUT_SECONDS = 30.0
MAX_ERROR_RATE = 0.01

VARIANTS: dict[str, str] = {
    "httpx": "httpx.AsyncClient (default pool)",
    "httpx-aiohttp": "httpx + pooled_transport() (aiohttp)",
    "httpx-aiohttp-otel": "httpx + pooled_transport() + OTel",
    "aiohttp": "aiohttp.ClientSession",
    "aiohttp-otel": "aiohttp + official OTel aiohttp-client instrumentation",
    "aiohttp-span": "aiohttp + a client span by hand (as ServiceClient's)",
    "servicekit": "servicekit ServiceClient (aiohttp, traced)",
}
HTTPX_COMPATIBLE = ("httpx", "httpx-aiohttp", "httpx-aiohttp-otel")
INSTRUMENTED = ("httpx-aiohttp-otel", "aiohttp-otel", "aiohttp-span", "servicekit")


@dataclass
class Row:
    """One variant's figures."""

    variant: str
    label: str
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    errors: int
    error_kinds: dict[str, int] = field(default_factory=dict)
    b_requests: int = 0
    b_traceparent: int = 0
    a_cpu_ms_per_call: float | None = None
    """Service A's CPU (user + system) over the run, per call it made to B: steadier than req/s on a
    machine shared with other work."""

    @property
    def error_rate(self) -> float:
        total = self.requests + self.errors
        return self.errors / total if total else 1.0


def free_port() -> int:
    """A currently free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get_json(port: int, path: str, timeout: float = 2.0) -> Any:
    """GET ``http://127.0.0.1:{port}{path}`` and decode its JSON body (raises on non-200)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} on :{port} answered {response.status}")
        return json.loads(body)
    finally:
        conn.close()


class Processes:
    """Child processes started by the bench; :meth:`stop_all` leaves none behind."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``python args...`` in its own session, output to ``var/bench/logs/{name}.log``."""
        with (self.log_dir / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter and our own scripts
                [sys.executable, *args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only the bench, which then stops the children
            )
        self.running.append(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], name: str, port: int) -> None:
        """Poll ``/health`` until it answers; fail fast if the process exits."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir / name}.log")
            try:
                http_get_json(port, "/health", timeout=0.5)
            except (OSError, RuntimeError, http.client.HTTPException):
                time.sleep(0.05)
            else:
                return
        raise RuntimeError(f"{name} not ready after {READY_TIMEOUT_SECONDS:.0f} s")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.running):
            self.stop(proc)


@contextmanager
def children(log_dir: Path) -> Iterator[Processes]:
    """A :class:`Processes` whose children are stopped however the block ends."""
    procs = Processes(log_dir)
    try:
        yield procs
    finally:
        procs.stop_all()


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


@dataclass
class ServiceA:
    """A running service A for one variant."""

    variant: str
    port: int
    proc: subprocess.Popen[bytes]


def start_a(procs: Processes, variant: str, b_port: int) -> ServiceA:
    """Start service A with ``variant``'s client in front of B (readiness is checked separately)."""
    port = free_port()
    proc = procs.start(
        f"a-{variant}",
        [ECHO_CHAIN, "a", "--port", str(port), "--peer", f"http://{HOST}:{b_port}", "--client", variant],
    )
    return ServiceA(variant, port, proc)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU a process has used so far (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    procs: Processes, a: ServiceA, b_port: int, seconds: float, concurrency: int, warmup: float
) -> Row:
    """Load service A, read B's counters and A's CPU around the run, then stop A."""
    try:
        before = http_get_json(b_port, "/stats")
        cpu_before = cpu_seconds(a.proc.pid)
        load = subprocess.run(  # noqa: S603 - fixed argv: this interpreter and our own script
            [
                sys.executable,
                LOADGEN,
                f"http://{HOST}:{a.port}/chain",
                *("--seconds", str(seconds), "--concurrency", str(concurrency), "--warmup", str(warmup)),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=warmup + seconds + 60,
            check=False,
            start_new_session=True,
        )
        if load.returncode != 0:
            raise RuntimeError(f"load generator failed ({load.returncode}): {load.stderr.strip()[-2000:]}")
        summary = json.loads(load.stdout)
        after = http_get_json(b_port, "/stats")
        cpu_after = cpu_seconds(a.proc.pid)
    finally:
        procs.stop(a.proc)
    calls = int(after["requests"]) - int(before["requests"])
    cpu_per_call = (
        (cpu_after - cpu_before) * 1000 / calls
        if cpu_before is not None and cpu_after is not None and calls
        else None
    )
    return Row(
        variant=a.variant,
        label=VARIANTS[a.variant],
        rps=float(summary["rps"]),
        p50_ms=_finite(summary["p50_ms"]),
        p99_ms=_finite(summary["p99_ms"]),
        requests=int(summary["requests"]),
        errors=int(summary["errors"]),
        error_kinds={str(k): int(v) for k, v in summary["error_kinds"].items()},
        b_requests=int(after["requests"]) - int(before["requests"]),
        b_traceparent=int(after["traceparent"]) - int(before["traceparent"]),
        a_cpu_ms_per_call=cpu_per_call,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_table(rows: list[Row]) -> str:
    """The results as an aligned text table."""
    header = ("variant", "req/s", "p50 ms", "p99 ms", "A CPU ms/call", "errors", "traceparent seen")
    lines = [
        (
            row.label,
            f"{row.rps:,.0f}",
            _ms(row.p50_ms),
            _ms(row.p99_ms),
            "-" if row.a_cpu_ms_per_call is None else f"{row.a_cpu_ms_per_call:.2f}",
            f"{row.errors} ({row.error_rate:.1%})",
            f"{row.b_traceparent:,}/{row.b_requests:,}",
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def fmt(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return " | ".join([first, *rest])

    rule = "-+-".join("-" * width for width in widths)
    return "\n".join([fmt(header), rule, *(fmt(cells) for cells in lines)])


def verdict(rows: list[Row]) -> str:
    """One line naming the fastest httpx-compatible client, relative to plain httpx and raw aiohttp."""
    by_variant = {row.variant: row for row in rows}
    candidates = [row for row in rows if row.variant in HTTPX_COMPATIBLE]
    if not candidates:
        return "Verdict: no httpx-compatible variant was run." + traced_verdict(by_variant)
    best = max(candidates, key=lambda row: row.rps)
    parts = [f"Verdict: fastest httpx-compatible option is {best.label} at {best.rps:,.0f} req/s"]
    plain = by_variant.get("httpx")
    if plain is not None and plain is not best and plain.rps > 0:
        parts.append(f"{best.rps / plain.rps:.1f}x plain httpx")
    raw = by_variant.get("aiohttp")
    if raw is not None and raw.rps > 0:
        parts.append(f"{best.rps / raw.rps:.0%} of raw aiohttp")
    line = parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "") + "."
    return line + traced_verdict(by_variant)


def traced_verdict(by_variant: dict[str, Row]) -> str:
    """ServiceClient against aiohttp with OpenTelemetry's official instrumentation and with a span by hand
    (the choice between the official instrumentation and ServiceClient's own span), when they were run."""
    official = by_variant.get("aiohttp-otel")
    if official is None or official.rps <= 0:
        return ""
    compared = [
        f"{by_variant[variant].label} {by_variant[variant].rps / official.rps:.0%} of its req/s"
        + _cpu_ratio(by_variant[variant], official)
        for variant in ("aiohttp-span", "servicekit")
        if variant in by_variant
    ]
    return (
        f"\nTraced, against aiohttp + official OTel ({official.rps:,.0f} req/s): " + ", ".join(compared) + "."
    )


def _cpu_ratio(row: Row, reference: Row) -> str:
    if row.a_cpu_ms_per_call is None or not reference.a_cpu_ms_per_call:
        return ""
    return f", {row.a_cpu_ms_per_call / reference.a_cpu_ms_per_call:.0%} of its CPU per call"


def failures(rows: list[Row]) -> list[str]:
    """Why the run should exit non-zero (empty when it should not)."""
    problems = [
        f"{row.variant}: {row.error_rate:.1%} errors {row.error_kinds}"
        for row in rows
        if row.error_rate > MAX_ERROR_RATE
    ]
    problems += [
        f"{row.variant}: service B saw no traceparent header"
        for row in rows
        if row.variant in INSTRUMENTED and row.b_traceparent == 0
    ]
    return problems


def _versions() -> dict[str, str]:
    names = (
        "httpx",
        "httpx-aiohttp",
        "aiohttp",
        "uvicorn",
        "fastapi",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-aiohttp-client",
    )
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def write_json(path: Path, rows: list[Row], args: argparse.Namespace, verdict_line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "transports",
        "chain": "loadgen (aiohttp) -> A (uvicorn+FastAPI) -> B (uvicorn+FastAPI echo), loopback",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": _versions(),
        "results": [asdict(row) | {"error_rate": row.error_rate} for row in rows],
        "verdict": verdict_line,
        "failures": failures(rows),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run every variant, print the table and verdict, write the JSON; 0 when all checks pass."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per variant")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent load-generator workers")
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds before measuring")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=OUT_DIR / "transports.json")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 0 < args.concurrency <= 1024 or not 0 <= args.warmup <= 30:
        parser.error("need 0 < --seconds <= 120, 0 < --concurrency <= 1024, 0 <= --warmup <= 30")
    signal.signal(signal.SIGTERM, _raise_on_sigterm)

    log_dir = OUT_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows: list[Row] = []
    print(
        f"two-hop echo chain on {HOST}: {args.concurrency} connections, "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s per variant",
        flush=True,
    )
    with children(log_dir) as procs:
        # Start every process up front (imports take seconds; idle servers cost nothing), measure one by one.
        b_port = free_port()
        b = procs.start("b", [ECHO_CHAIN, "b", "--port", str(b_port)])
        services = [start_a(procs, variant, b_port) for variant in args.variants]
        procs.wait_ready(b, "b", b_port)
        for a in services:
            procs.wait_ready(a.proc, f"a-{a.variant}", a.port)
        print(f"  services ready in {time.monotonic() - started:.1f} s", flush=True)
        for a in services:
            row = measure(procs, a, b_port, args.seconds, args.concurrency, args.warmup)
            print(f"  {row.label}: {row.rps:,.0f} req/s", flush=True)
            rows.append(row)

    verdict_line = verdict(rows)
    print()
    print(render_table(rows))
    print(verdict_line)
    write_json(args.out, rows, args, verdict_line)
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s")
    problems = failures(rows)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("interrupted; child processes stopped", file=sys.stderr)
        sys.exit(130)
