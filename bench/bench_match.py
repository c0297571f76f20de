"""Embedded PDQ matcher at bank sizes up to 10 M: build time, memory, lookup latency, and answers checked against
brute force (issue 17 targets at 10 M: ≤ 1.5 GB added RSS, build ≤ 30 s, p99 ≤ 5 ms per lookup on one core).

Prints figures only, never asserts on time. Each (implementation, size) runs in a fresh process, so memory is
measured alone. Queries are half near-duplicates (10 bits flipped from a banked hash, must be found) and half
random hashes, like hma.md §4's measurements of pytx's indexes; `--check` of them are compared with a numpy
brute-force scan of the whole bank (same entries, same distances). `--baseline REF` runs the `PdqIndex` of a git
revision too, alternating with this tree's round by round (the machine is shared: alternate, and read the CPU
columns, which are what the lookup itself cost). `--alternatives` times other structures on the same data.

    python bench/bench_match.py [--sizes 100000,1000000,10000000] [--baseline REF] [--rounds 3] [--alternatives]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from labeler.pipeline.match.embedded import EmbeddedMatcher

try:
    from bench import _harness
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
CURRENT = "this tree"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bank(n: int) -> np.ndarray:
    """n random PDQ hashes as (n, 4) uint64, the same for every run of a size."""
    return np.random.default_rng(n).integers(0, 2**64, size=(n, 4), dtype=np.uint64)


def queries(words: np.ndarray, count: int) -> np.ndarray:
    """Half near-duplicates of banked hashes (10 bits flipped), half random, shuffled."""
    rng = np.random.default_rng(len(words) + 1)
    near = words[rng.integers(0, len(words), count // 2)].copy()
    bits = np.argsort(rng.random((len(near), 256)), axis=1)[:, :10]  # 10 distinct bits per query
    for i, row in enumerate(bits):
        for b in row.tolist():
            near[i, b // 64] ^= np.uint64(1 << (b % 64))
    qs = np.concatenate([near, rng.integers(0, 2**64, size=(count - len(near), 4), dtype=np.uint64)])
    return qs[rng.permutation(len(qs))]


def hex_of(words: np.ndarray) -> list[str]:
    blob = words.tobytes().hex()
    return [blob[i : i + 64] for i in range(0, len(blob), 64)]


def rows(words: np.ndarray) -> Iterator[tuple[str, str, str]]:
    """Bank rows as the database hands them over (hex, bank, entry id), made as they are consumed."""
    for start in range(0, len(words), 100_000):
        for i, h in enumerate(hex_of(words[start : start + 100_000]), start):
            yield h, "BANK_A" if i % 2 else "BANK_B", str(i)


def load_index_class(impl: str) -> Any:
    if impl == CURRENT:
        from labeler.pipeline.match.index import PdqIndex

        return PdqIndex
    source = subprocess.run(
        ["git", "show", f"{impl}:labeler/pipeline/match/index.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_index.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("baseline_index", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.PdqIndex


def timed(fn: Callable[[str], object], qs: list[str]) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (this process, every thread) of fn(q) for each query."""
    for q in qs[:50]:
        fn(q)  # warm up
    wall, cpu = [], []
    for q in qs:
        t, c = time.perf_counter(), time.process_time()
        fn(q)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return wall, cpu


def child(impl: str, n: int, count: int, check: int) -> dict[str, Any]:
    """One implementation at one size, in this process; returns the figures."""
    index_class = load_index_class(impl)
    words = bank(n)
    qwords = queries(words, count)
    qs = hex_of(qwords)
    cpu_start = time.process_time()
    for _ in rows(words):
        pass
    rows_cpu_s = time.process_time() - cpu_start  # making the row strings, which the build timing includes
    gc.collect()
    before = rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    index = index_class.build(rows(words))
    build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    gc.collect()
    added = rss_mb() - before

    wall, cpu = timed(index.query, qs)
    found = sum(bool(index.query(q)) for q in qs)

    same = 0
    for q, qw in zip(qs[:check], qwords[:check], strict=True):
        d = np.bitwise_count(words ^ qw).sum(axis=1)
        expected = {(int(r), int(d[r])) for r in np.flatnonzero(d <= 31)}
        same += {(int(m.entry_id), m.distance) for m in index.query(q)} == expected

    async def via_matcher() -> list[float]:
        matcher = EmbeddedMatcher(index)
        samples = []
        for q in qs:
            t = time.perf_counter()
            await matcher.lookup(q)
            samples.append(time.perf_counter() - t)
        await matcher.aclose()
        return samples

    matcher_wall = asyncio.run(via_matcher())
    late = bank(10_000 + n)[:10_000]
    start = time.perf_counter()
    index.add_many((h, "LATE", f"late{i}") for i, h in enumerate(hex_of(late)))
    add_s = time.perf_counter() - start
    tail_wall, _ = timed(index.query, qs[:500])
    start = time.perf_counter()
    index.compact()
    compact_s = time.perf_counter() - start
    return {
        "impl": impl,
        "n": n,
        "build_s": build_s,
        "build_cpu_s": build_cpu_s,
        "rows_cpu_s": rows_cpu_s,
        "added_mb": added,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall": wall,
        "cpu": cpu,
        "found": found,
        "near": len(qs) // 2,
        "same": same,
        "check": min(check, len(qs)),
        "matcher": matcher_wall,
        "add_10k_s": add_s,
        "tail_wall": tail_wall,
        "compact_s": compact_s,
        "loadavg": _harness.machine()["loadavg"],
    }


def alternatives(n: int, count: int) -> list[list[str]]:
    """Other structures on the same bank and queries: a numpy scan and FAISS's binary indexes (what pytx uses)."""
    import faiss

    faiss.omp_set_num_threads(1)  # one core per lookup, as the targets say
    words = bank(n)
    qwords = queries(words, count)
    codes = words.view(np.uint8).reshape(n, 32)
    out = []

    def run(name: str, build: Callable[[], Any], query: Callable[[Any, np.ndarray], object], qn: int) -> None:
        gc.collect()
        before = rss_mb()
        start = time.perf_counter()
        built = build()
        build_s = time.perf_counter() - start
        added = rss_mb() - before
        samples = [qw.tobytes().hex() for qw in qwords[:qn]]
        by_hex = dict(zip(samples, qwords[:qn], strict=True))
        wall, cpu = timed(lambda h: query(built, by_hex[h]), samples)
        out.append([name, f"{build_s:.1f}", f"{added:.0f}", *_summary(wall), *_summary(cpu)[:2]])

    def faiss_range(index: Any, qw: np.ndarray) -> object:
        return index.range_search(qw.view(np.uint8).reshape(1, 32), 32)

    def flat() -> Any:
        index = faiss.IndexBinaryFlat(256)
        index.add(codes)
        return index

    def multihash() -> Any:
        index = faiss.IndexBinaryMultiHash(256, 16, 16)
        index.nflip = 1  # 16 tables × 16 bits, 1-bit neighbours: exact up to 31, like our previous index
        index.add(codes)
        return index

    scan_q = max(20, count // 20)
    run("numpy scan (bitwise_count)", lambda: words, lambda w, qw: np.bitwise_count(w ^ qw).sum(axis=1), scan_q)
    run("faiss IndexBinaryFlat range_search", flat, faiss_range, scan_q)
    run("faiss IndexBinaryMultiHash 16×16, nflip 1", multihash, faiss_range, count)
    return out


QUERY_COLUMNS = ["impl", "round", "build s", "build cpu s (rows)", "RSS added MB", "peak MB", "query p50", "p99", "max"]
QUERY_COLUMNS += ["cpu p50", "cpu p99", "matcher p99", "exact", "near found", "load"]


def query_row(k: int, r: dict[str, Any]) -> list[Any]:
    head = [
        r["impl"],
        k,
        f"{r['build_s']:.1f}",
        f"{r['build_cpu_s']:.1f} ({r['rows_cpu_s']:.1f})",
        f"{r['added_mb']:.0f}",
        f"{r['peak_mb']:.0f}",
    ]
    checks = [f"{r['same']}/{r['check']}", f"{r['found']}/{r['near']}", r["loadavg"]]
    return head + _summary(r["wall"]) + _summary(r["cpu"])[:2] + [_summary(r["matcher"])[1]] + checks


def _summary(samples: list[float]) -> list[str]:
    return [_harness.ms(_harness.percentile(samples, q)) for q in (50, 99)] + [_harness.ms(max(samples))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--check", type=int, default=100, help="queries compared with a brute-force scan")
    parser.add_argument("--baseline", help="git revision whose PdqIndex runs too, alternating with this tree's")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--alternatives", action="store_true", help="also time a numpy scan and FAISS indexes")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.queries, args.check)))
        return
    _harness.print_machine()
    impls = ([args.baseline] if args.baseline else []) + [CURRENT]
    for n in (int(s) for s in args.sizes.split(",")):
        results = []
        for round_ in range(args.rounds):
            for impl in impls:
                cmd = [sys.executable, __file__, "--child", impl, str(n)]
                cmd += ["--queries", str(args.queries), "--check", str(args.check)]
                out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
                results.append((round_ + 1, json.loads(out.splitlines()[-1])))
        _harness.print_table(
            f"PdqIndex at {n:,} entries (query: PdqIndex.query; matcher: EmbeddedMatcher.lookup, adds a thread hop)",
            QUERY_COLUMNS,
            [query_row(k, r) for k, r in results],
        )
        _harness.print_table(
            f"writes at {n:,}: 10k more entries, lookups with them unindexed, then compaction",
            ["impl", "round", "add 10k", "query p99 (tail)", "compact s"],
            [
                [r["impl"], k, _harness.ms(r["add_10k_s"]), _summary(r["tail_wall"])[1], f"{r['compact_s']:.1f}"]
                for k, r in results
            ],
        )
        if args.alternatives:
            _harness.print_table(
                f"alternatives at {n:,} (same bank and queries; scans are timed on {max(20, args.queries // 20)})",
                ["structure", "build s", "RSS added MB", "p50", "p99", "max", "cpu p50", "cpu p99"],
                alternatives(n, args.queries),
            )


if __name__ == "__main__":
    main()
