"""What the shared sign-in failure counts (`labeler.xrpc.failed_logins`, `labeler.store.login_failures`) cost per
attempt, on SQLite or PostgreSQL: a check (one primary-key read: what every admin API request with Basic
credentials and every sign-in pays), a failure (one upsert) and a success after failures (one delete), each
called on the limiter directly, one at a time, without HTTP.

Prints figures only, never asserts on time.

    python bench/bench_login_failures.py [--db postgres] [--attempts 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

try:
    from bench import _harness
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness  # type: ignore[no-redef]

from labeler.xrpc.failed_logins import FailureLimiter


async def timed(count: int, step: Callable[[int], Awaitable[object]]) -> list[float]:
    samples = []
    for n in range(count):
        start = time.perf_counter()
        await step(n)
        samples.append(time.perf_counter() - start)
    return samples


async def run(args: argparse.Namespace) -> None:
    async with _harness.bench_env(args) as env, _harness.running_labeler(env.settings()) as labeler:
        limiter = FailureLimiter.for_service(labeler)
        api = limiter.clients

        def keys(n: int) -> list[tuple[object, str]]:
            return [(api, f"198.51.{n // 250}.{n % 250}")]

        await timed(50, lambda n: limiter.check(keys(n)))  # warm the pool
        rows = [
            ("check, no failures on record", await timed(args.attempts, lambda n: limiter.check(keys(n)))),
            ("failure (upsert)", await timed(args.attempts, lambda n: limiter.failed(keys(n)))),
            ("check, failures on record", await timed(args.attempts, lambda n: limiter.check(keys(n)))),
            ("success after failures (delete)", await timed(args.attempts, lambda n: limiter.succeeded(keys(n)))),
        ]
    _harness.print_table(
        f"sign-in failure counts on {args.db}, {args.attempts} distinct clients, one at a time",
        ["operation", "median", "p99", "max", "mean"],
        [(name, *_harness.latency_summary(samples)) for name, samples in rows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _harness.add_common_args(parser)
    parser.add_argument("--attempts", type=int, default=2000)
    args = parser.parse_args()
    _harness.print_machine(args)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
