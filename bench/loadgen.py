"""HTTP load generator: ``python -m bench.loadgen URL --concurrency N --duration S --paths ...``.

Runs as its own process (so the API's event loop and the client's never share a
core's time slice in one interpreter): N asyncio workers, each one client with
its own keep-alive connection, sending GET requests round-robin over the given
paths for S seconds. Two ways to pace them:

- closed loop (default): back to back, at most N requests in flight, so by
  Little's law mean latency = N / throughput. This finds the saturation
  throughput; its latency is the queue that saturation builds, whatever the
  server's speed (p99 <= 20 ms at 200 clients would need > 10,000 requests/s).
- open loop (``--rate R``): the N clients together offer R requests/s, each on a
  fixed schedule (client k sends at start + k/R + i*N/R). Latency is measured
  from the *scheduled* send time, so a request held up behind a slow one, or by
  a generator that fell behind, counts the wait (coordinated omission corrected,
  as wrk2 does). This is the latency N concurrent clients see at that load.

Prints one JSON object: requests, errors, requests/s and latency p50/p99 (ms).

The client is aiohttp (C HTTP parser; already installed for web3), one session
and one connection per worker. It used to be one shared httpx.AsyncClient, and
that was the 7 s p99 figure 4 reported: httpcore's pool walks every connection
and queued request for each request it places
(``AsyncConnectionPool._assign_requests_to_connections``, O(connections x
requests); encode/httpx#3215, encode/httpcore#1035), so at 200 workers the
generator spent its core there and in ``getpeername`` syscalls, sending ~60
requests/s while the API sat idle. httpx with a client per worker still cost
~2-3 ms of generator CPU per request; aiohttp costs a fraction of that, so on a
2-core machine more of the measured latency is the API's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp
import uvloop


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


async def run(
    url: str, paths: list[str], concurrency: int, duration: float, rate: float | None = None
) -> dict[str, float]:
    latencies: list[float] = []
    service: list[float] = []  # send to answer (open loop: without the schedule's slip)
    by_path: dict[str, list[float]] = {p: [] for p in paths}
    failures: dict[str, int] = {}
    errors = 0
    timeout = aiohttp.ClientTimeout(total=30)
    sessions = [
        aiohttp.ClientSession(
            base_url=url, connector=aiohttp.TCPConnector(limit=1), timeout=timeout
        )
        for _ in range(concurrency)
    ]
    try:
        # Every connection opened before the clock starts: the figures are about
        # requests, not about 200 TCP handshakes landing in the first milliseconds.
        async def connect(session: aiohttp.ClientSession) -> None:
            async with session.get(paths[0]) as resp:
                await resp.read()

        await asyncio.gather(*(connect(s) for s in sessions))
        start = time.perf_counter()
        stop = start + duration
        interval = concurrency / rate if rate else 0.0

        async def worker(offset: int) -> None:
            nonlocal errors
            session = sessions[offset]
            i = offset
            due = start + offset / rate if rate else 0.0
            while (due if rate else time.perf_counter()) < stop:
                if rate and (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                path = paths[i % len(paths)]
                i += 1
                t0 = time.perf_counter()
                try:
                    async with session.get(path) as resp:
                        await resp.read()
                        outcome = str(resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                t1 = time.perf_counter()
                elapsed_one = t1 - (due if rate else t0)
                service.append(t1 - t0)
                due += interval
                latencies.append(elapsed_one)
                by_path[path].append(elapsed_one)
                if outcome != "200":
                    errors += 1
                    failures[outcome] = failures.get(outcome, 0) + 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    return {
        "client": f"aiohttp {aiohttp.__version__}, one connection per client",
        "mode": "open" if rate else "closed",
        "offered_per_s": rate,
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
        "p999_ms": round(1000 * percentile(latencies, 99.9), 2),
        "service_p99_ms": round(1000 * percentile(service, 99), 2),
        "failures": failures,
        "by_path": {
            p: {
                "requests": len(v),
                "p50_ms": round(1000 * statistics.median(v), 2),
                "p99_ms": round(1000 * percentile(v, 99), 2),
            }
            for p, v in by_path.items()
            if v
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--paths", nargs="+", required=True)
    parser.add_argument(
        "--rate", type=float, default=None, help="open loop: requests/s offered by all clients"
    )
    args = parser.parse_args()
    # uvloop (installed for uvicorn) spends less of the shared cores on the client side.
    result = uvloop.run(run(args.url, args.paths, args.concurrency, args.duration, args.rate))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
