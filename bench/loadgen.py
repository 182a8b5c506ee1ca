"""HTTP load generator: ``python -m bench.loadgen URL --concurrency N --duration S --paths ...``.

Runs as its own process (so the API's event loop and the client's never share a
core's time slice in one interpreter): N asyncio workers on one httpx client,
each sending GET requests round-robin over the given paths for S seconds, back to
back. Prints one JSON object: requests, errors, requests/s and latency p50/p99 (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


async def run(url: str, paths: list[str], concurrency: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    by_path: dict[str, list[float]] = {p: [] for p in paths}
    failures: dict[str, int] = {}
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        stop = time.perf_counter() + duration

        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < stop:
                path = paths[i % len(paths)]
                i += 1
                t0 = time.perf_counter()
                try:
                    resp = await client.get(path)
                    outcome = str(resp.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                elapsed_one = time.perf_counter() - t0
                latencies.append(elapsed_one)
                by_path[path].append(elapsed_one)
                if outcome != "200":
                    errors += 1
                    failures[outcome] = failures.get(outcome, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
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
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.paths, args.concurrency, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
