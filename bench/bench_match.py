"""Embedded matcher lookup latency, build time and memory at 100k and 1M entries (target p99 ≤ 3 ms at 1M).

Prints figures only, never asserts on time. Queries are half near-duplicates (10 bits flipped from a banked
hash, must be found) and half random misses, like hma.md §4's measurements of pytx's indexes. Latency is
measured on `PdqIndex.query` directly and through `EmbeddedMatcher.lookup` (adds the asyncio.to_thread hop).

    python bench/bench_match.py [--sizes 100000,1000000] [--queries 2000] [--pytx]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import resource
import time

import numpy as np

from labeler.pipeline.match.embedded import EmbeddedMatcher
from labeler.pipeline.match.index import PdqIndex


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def random_hex(rng: np.random.Generator, count: int) -> list[str]:
    raw = rng.integers(0, 256, size=(count, 32), dtype=np.uint8)
    return [row.tobytes().hex() for row in raw]


def near(rng: np.random.Generator, pdq_hex: str, bits: int) -> str:
    value = int(pdq_hex, 16)
    for bit in rng.choice(256, size=bits, replace=False):
        value ^= 1 << int(bit)
    return f"{value:064x}"


def summary(samples: list[float]) -> str:
    ms = np.array(samples) * 1e3
    return f"median {np.median(ms):.3f} ms  p99 {np.percentile(ms, 99):.3f} ms  max {ms.max():.3f} ms  (n={len(ms)})"


def bench_size(n: int, queries: int, with_pytx: bool) -> None:
    rng = np.random.default_rng(n)
    hashes = random_hex(rng, n)
    rows = [(h, "BANK_A" if i % 2 else "BANK_B", str(i)) for i, h in enumerate(hashes)]
    wanted = rng.integers(0, n, queries // 2)
    qs = [near(rng, hashes[i], 10) for i in wanted] + random_hex(rng, queries - queries // 2)
    order = rng.permutation(len(qs))
    qs = [qs[i] for i in order]
    gc.collect()
    before = rss_mb()

    start = time.perf_counter()
    index = PdqIndex.build(rows)
    build_s = time.perf_counter() - start
    gc.collect()
    added = rss_mb() - before
    print(f"\n== {n:,} entries ==")
    print(f"build (add_many + compact): {build_s:.2f} s; RSS added {added:.0f} MB (index arrays + entry metadata)")

    for q in qs[:50]:
        index.query(q)  # warm up
    times = []
    found = 0
    for q in qs:
        t = time.perf_counter()
        hits = index.query(q)
        times.append(time.perf_counter() - t)
        found += bool(hits)
    print(f"PdqIndex.query            {summary(times)}; {found} of {queries // 2} near-duplicates found")

    async def via_matcher(index: PdqIndex) -> list[float]:
        matcher = EmbeddedMatcher(index)
        samples = []
        for q in qs:
            t = time.perf_counter()
            await matcher.lookup(q)
            samples.append(time.perf_counter() - t)
        await matcher.aclose()
        return samples

    print(f"EmbeddedMatcher.lookup    {summary(asyncio.run(via_matcher(index)))}")

    start = time.perf_counter()
    index.add_many((h, "LATE", str(i)) for i, h in enumerate(random_hex(rng, 10_000)))
    add_s = time.perf_counter() - start
    tail_times = []
    for q in qs[:500]:
        t = time.perf_counter()
        index.query(q)
        tail_times.append(time.perf_counter() - t)
    start = time.perf_counter()
    index.compact()
    compact_s = time.perf_counter() - start
    print(
        f"add 10k more: {add_s * 1e3:.0f} ms; lookups with them unindexed {summary(tail_times)}; "
        f"compact {compact_s:.2f} s"
    )

    if with_pytx:
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex

        start = time.perf_counter()
        ref = PDQIndex.build([(h, i) for i, h in enumerate(hashes)])
        print(f"pytx PDQIndex (HMA's): build {time.perf_counter() - start:.2f} s")
        times = []
        for q in qs:
            t = time.perf_counter()
            ref.query(q)
            times.append(time.perf_counter() - t)
        print(f"pytx PDQIndex.query       {summary(times)}")
        for q in qs[:200]:  # same answers
            ours = {int(m.entry_id) for m in index.query(q) if m.bank != "LATE"}
            assert ours == {m.metadata for m in ref.query(q)}
        del ref
    del index, rows, hashes
    gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--pytx", action="store_true", help="also time pytx's PDQIndex (faiss) on the same data")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}")
    for n in (int(s) for s in args.sizes.split(",")):
        bench_size(n, args.queries, args.pytx)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak RSS {peak:.0f} MB (includes the benchmark's own hash strings)")


if __name__ == "__main__":
    main()
