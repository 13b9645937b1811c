"""The baseline: raw asyncio clients (bench/raw_clients.py) probing every user once.

connect, (TLS), the protocol's commands, close: the same commands the daemon's probe
sends, and nothing else (no timing, parsing, logging, state), at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import ssl
import sys
import time

from bench.raw_clients import CLIENTS, RawProbe


async def probe(
    client: RawProbe,
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    user: str,
    password: str,
) -> bool:
    """One probe with the protocol's raw client; True when the server said yes."""
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="localhost" if context else None
    )
    try:
        return await client(reader, writer, user, password)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def run(args: argparse.Namespace, users: list[list[str]]) -> dict[str, object]:
    """Probe every user once at the given concurrency; return the figures."""
    context = ssl.create_default_context(cafile=args.ca) if args.tls else None
    client = CLIENTS[args.protocol]
    slots = asyncio.Semaphore(args.concurrency)
    latencies: list[float] = []
    failed = 0

    async def one(user: str, password: str) -> None:
        nonlocal failed
        async with slots:
            start = time.perf_counter()
            try:
                ok = await asyncio.wait_for(
                    probe(client, args.host, args.port, context, user, password), 30
                )
            except (OSError, TimeoutError, ssl.SSLError):
                ok = False
            latencies.append(time.perf_counter() - start)
            failed += not ok

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for user, password in users:
            group.create_task(one(user, password))
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    return {
        "probes": len(users),
        "failed": failed,
        "seconds": seconds,
        "cpu_seconds": (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime),
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
        "max_rss_mb": after.ru_maxrss / 1024,
    }


def main() -> None:
    """Command line for one baseline run; prints one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=sorted(CLIENTS), default="imap")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--ca")
    parser.add_argument("--users", required=True, help="file of user<TAB>password lines")
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    with open(args.users) as handle:
        users = [line.split("\t") for line in handle.read().splitlines()]
    print(json.dumps(asyncio.run(run(args, users))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
