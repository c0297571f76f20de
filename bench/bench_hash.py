"""PDQ hashing per core on 1–4 MP photos: python-threatexchange's hasher (what HMA runs) beside ours, exact and
reduced, in alternating rounds; CPU per image; and how far reduced hashes land from the full-decode hash.

    python bench/bench_hash.py [--images 200] [--rounds 3] [--steps]

Figures are CPU time (`time.process_time`, this process only, one thread: what one hashing process costs per
image whatever else the machine runs), with wall time beside it. Each round times every path over the whole
corpus, in a rotated order, so a noisy stretch of the machine falls on all paths alike. Distances are Hamming
distances to pytx's hash of the same bytes (the full-decode hash HMA computes). `--steps` adds the alternatives
that led to the default: what each step of reduced hashing does to CPU and distance (bench/README.md).
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import os

# As in the hashing processes (procpool.pool.CHILD_ENV), before numpy loads: one process is one core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import io
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import pdqhash
from PIL import Image
from threatexchange.signal_type.pdq import pdq_hasher

from labeler.pipeline import hasher
from labeler.pipeline.hasher import _bits_to_hex, _to_pdq_array, hamming_distance, hash_image
from labeler.pipeline.pdq_reduced import hash_from_samples, samples_from_pixels

try:
    from bench import _harness as h
    from bench import _photos
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness as h  # type: ignore[no-redef]
    import _photos  # type: ignore[no-redef]

Hasher = Callable[[bytes], tuple[str, int]]


def pytx(data: bytes) -> tuple[str, int]:
    return pdq_hasher.pdq_from_bytes(data)


def ours(**options: object) -> Hasher:
    def run(data: bytes) -> tuple[str, int]:
        result = hash_image(data, max_pixels=50_000_000, **options)  # type: ignore[arg-type]
        return result.hash, result.quality

    return run


def reduced_to(min_side: int) -> Hasher:
    """The service's reduced hashing with another smallest decoded side (the module constant, swapped in)."""

    def run(data: bytes) -> tuple[str, int]:
        default, hasher.REDUCED_MIN_SIDE = hasher.REDUCED_MIN_SIDE, min_side
        try:
            result = hash_image(data, max_pixels=50_000_000, reduced_decode=True)
        finally:
            hasher.REDUCED_MIN_SIDE = default
        return result.hash, result.quality

    return run


def _drafted(data: bytes, min_side: int, mode: str | None = None) -> tuple[Image.Image, tuple[int, int], int]:
    image = Image.open(io.BytesIO(data))
    full = image.size
    image.draft(mode or image.mode, (min_side, min_side))
    scale = next(s for s in (8, 4, 2, 1) if (full[0] + s - 1) // s == image.size[0])
    return image, full, scale


def luma_plane(min_side: int) -> Hasher:
    """JPEG's own Y plane decoded at reduced scale, instead of luma from decoded RGB (no chroma work at all)."""

    def run(data: bytes) -> tuple[str, int]:
        image, full, scale = _drafted(data, min_side, "L")
        pixels = np.repeat(np.asarray(image)[:, :, None], 3, axis=2)
        (digest,), quality = hash_from_samples(samples_from_pixels(pixels, full, scale))
        return digest, quality

    return run


def samples_as_bytes(min_side: int) -> Hasher:
    """The float samples rounded to bytes and handed to pdqhash's 64×64 path, instead of PDQ's last stage here."""

    def run(data: bytes) -> tuple[str, int]:
        image, full, scale = _drafted(data, min_side)
        samples = samples_from_pixels(_to_pdq_array(image), full, scale)
        small = np.clip(np.rint(samples), 0, 255).astype(np.uint8)
        vector, quality = pdqhash.compute(np.ascontiguousarray(np.repeat(small[:, :, None], 3, axis=2)))
        return _bits_to_hex(vector), int(quality)

    return run


def draft_then_pdqhash(min_side: int) -> Hasher:
    """The previous reduced decoding: JPEG at reduced scale, then pdqhash's own filters on what was decoded."""

    def run(data: bytes) -> tuple[str, int]:
        image, _, _ = _drafted(data, min_side)
        vector, quality = pdqhash.compute(_to_pdq_array(image))
        return _bits_to_hex(vector), int(quality)

    return run


def resize_then_pdqhash(side: int) -> Hasher:
    """A resize to fit `side` (Lanczos, after a reduced JPEG decode) then pdqhash: the usual 'hash a thumbnail'."""

    def run(data: bytes) -> tuple[str, int]:
        image, _, _ = _drafted(data, side)
        image = image.convert("RGB")
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        vector, quality = pdqhash.compute(np.asarray(image))
        return _bits_to_hex(vector), int(quality)

    return run


def time_rounds(paths: dict[str, Hasher], blobs: Sequence[bytes], rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Per path and round: (CPU ms per image, wall ms per image); each round visits the paths in a rotated order."""
    names = list(paths)
    for fn in paths.values():
        fn(blobs[0])  # warm caches and lazy imports
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for n in range(rounds):
        for name in names[n % len(names) :] + names[: n % len(names)]:
            fn = paths[name]
            cpu, wall = time.process_time(), time.perf_counter()
            for data in blobs:
                fn(data)
            out[name].append(
                ((time.process_time() - cpu) / len(blobs) * 1e3, (time.perf_counter() - wall) / len(blobs) * 1e3)
            )
    return out


def distance_row(results: list[tuple[str, int]], reference: list[tuple[str, int]]) -> list[str]:
    distances = [hamming_distance(a, b) for (a, _), (b, _) in zip(results, reference, strict=True)]
    quality = max(abs(a - b) for (_, a), (_, b) in zip(results, reference, strict=True))
    equal = sum(d == 0 for d in distances)
    return [
        *(f"{h.percentile(distances, q):.0f}" for q in (50, 90, 99)),
        str(max(distances)),
        f"{statistics.fmean(distances):.2f}",
        f"{equal}/{len(distances)}",
        str(quality),
    ]


def measure(title: str, paths: dict[str, Hasher], blobs: list[bytes], reference: list[tuple[str, int]], rounds: int):
    timed = time_rounds(paths, blobs, rounds)
    base = timed.get("pytx pdq_from_bytes (HMA)")
    rows = []
    for name, fn in paths.items():
        cpu = [c for c, _ in timed[name]]
        wall = [w for _, w in timed[name]]
        median = statistics.median(cpu)
        ratios = [] if base is None else [b / c for (b, _), c in zip(base, cpu, strict=True)]
        speedup = f"{statistics.median(ratios):.2f}x" if ratios else "-"
        rows.append(
            [
                name,
                f"{median:.1f} ({min(cpu):.1f}–{max(cpu):.1f})",
                f"{1e3 / median:.0f}",
                speedup,
                f"{statistics.median(wall):.1f}",
                *distance_row([fn(d) for d in blobs], reference),
            ]
        )
    headers = ["path", "CPU ms/img (rounds)", "img/s/core", "vs pytx", "wall ms/img"]
    headers += ["dist p50", "p90", "p99", "max", "mean", "equal", "Δquality max"]
    h.print_table(title, headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="photos in the corpus (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per path (default %(default)s)")
    parser.add_argument("--steps", action="store_true", help="also time the alternatives behind the default")
    args = parser.parse_args()

    h.print_machine()
    corpus = _photos.build(args.images)
    blobs = [p.data for p in corpus.photos]
    print(f"\ncorpus: {corpus.describe()}", flush=True)
    reference = [pytx(d) for d in blobs]

    measure(
        "hashing on one core: pytx beside ours (distances to pytx's hash)",
        {
            "pytx pdq_from_bytes (HMA)": pytx,
            "ours, exact (LABELER_REDUCED_DECODE=false)": ours(),
            "ours, reduced (default)": ours(reduced_decode=True),
            "ours, reduced + dihedral": ours(reduced_decode=True, dihedral=True),
        },
        blobs,
        reference,
        args.rounds,
    )
    if args.steps:
        side = hasher.REDUCED_MIN_SIDE
        measure(
            "what each step does (alternatives; distances to pytx's hash)",
            {
                "PDQ's filters as matrices, full decode": reduced_to(1 << 20),
                **{
                    f"+ JPEG decoded down to ≥{px} px{' (default)' if px == side else ''}": reduced_to(px)
                    for px in (512, 384, 256, 128)
                },
                f"JPEG's Y plane at ≥{side} px, not RGB's luma": luma_plane(side),
                f"samples rounded to bytes → pdqhash (≥{side} px)": samples_as_bytes(side),
                "JPEG at ≥512 px → pdqhash (the previous reduced)": draft_then_pdqhash(512),
                "resize to 512 px (Lanczos) → pdqhash": resize_then_pdqhash(512),
            },
            blobs,
            reference,
            args.rounds,
        )
    print(f"\nload average at the end: {h.machine()['loadavg']}")


if __name__ == "__main__":
    main()
