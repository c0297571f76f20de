"""Test images and hashes generated in code (fixed seeds), so the suite needs no files from outside.

Images have real structure (gradients, shapes, seeded noise) so their PDQ quality is well above 50.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zlib

import numpy as np
from PIL import Image


def structured_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    """Gradients, a few filled shapes and mild noise: asymmetric, so rotations hash far apart."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * x / width
    g = 255 * (y / height) ** 1.5
    b = 127 + 100 * np.sin(x / (width / (3 + seed % 4))) * np.cos(y / (height / 5))
    img = np.stack([r, g, b], axis=2)
    for _ in range(6):
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        radius = rng.uniform(0.05, 0.2) * min(width, height)
        colour = rng.uniform(0, 255, 3)
        img[(x - cx) ** 2 + (y - cy) ** 2 < radius**2] = colour
    x0, y0 = int(width * 0.1), int(height * 0.6)
    img[y0 : y0 + height // 5, x0 : x0 + width // 3] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def jpeg_with_orientation(im: Image.Image, orientation: int = 6) -> bytes:
    """A JPEG carrying EXIF 0x0112; HMA (pytx) ignores it, and so must we."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "JPEG", quality=90, exif=exif)


def sixteen_bit(im: Image.Image) -> Image.Image:
    """An I;16 image whose values stay mostly below 256: pytx's convert("RGB") clips above 255."""
    grey = np.asarray(im.convert("L")).astype(np.uint16)
    grey[:8, :8] = 4000  # a clipped corner keeps the >255 path honest
    im16 = Image.fromarray(grey)
    assert im16.mode == "I;16", im16.mode
    return im16


def mode_corpus() -> dict[str, bytes]:
    """One encoded image per format/mode path that pytx's pdq_hasher treats differently."""
    base = structured_rgb(400, 300, seed=1)
    return {
        "png-rgb": encode(base, "PNG"),
        "jpeg-rgb": encode(base, "JPEG", quality=90),
        "jpeg-exif-orientation-6": jpeg_with_orientation(base, 6),
        "jpeg-exif-orientation-8": jpeg_with_orientation(base, 8),
        "jpeg-grey": encode(base.convert("L"), "JPEG", quality=90),
        "jpeg-cmyk": encode(base.convert("CMYK"), "JPEG", quality=90),
        "png-palette": encode(base.convert("P"), "PNG"),
        "png-palette-adaptive": encode(base.quantize(64), "PNG"),
        "gif-palette": encode(base.convert("P"), "GIF"),
        "png-rgba": encode(_with_alpha(base, "RGBA"), "PNG"),
        "png-la": encode(_with_alpha(base.convert("L"), "LA"), "PNG"),
        "png-grey": encode(base.convert("L"), "PNG"),
        "png-i16": encode(sixteen_bit(base), "PNG"),
        "webp-rgb": encode(base, "WEBP", quality=90),
        "webp-rgba": encode(_with_alpha(base, "RGBA"), "WEBP", quality=90),
        "bmp-rgb": encode(base, "BMP"),
        "tiff-rgb": encode(base, "TIFF"),
    }


def _with_alpha(im: Image.Image, mode: str) -> Image.Image:
    out = im.convert(mode)
    alpha = np.tile(np.linspace(40, 255, im.width, dtype=np.uint8), (im.height, 1))
    out.putalpha(Image.fromarray(alpha, "L"))
    return out


_JPEG_SIZES = [(1024, 1024), (1024, 768), (1600, 1200), (2048, 1536), (1200, 2400), (3000, 2000), (4032, 3024)]
_JPEG_VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "q90": ("RGB", {"quality": 90}),
    "q60-progressive": ("RGB", {"quality": 60, "progressive": True}),
    "q85-444": ("RGB", {"quality": 85, "subsampling": 0}),
    "grey": ("L", {"quality": 85}),
}
# Large JPEGs for the reduced-decode path: sizes, aspect ratios, qualities, 4:4:4, progressive, greyscale.
# The phone-sized one gets a single variant to keep the suite quick.
JPEG_CASES = [
    f"{w}x{h}-{variant}" for w, h in _JPEG_SIZES for variant in _JPEG_VARIANTS if w * h < 6_000_000 or variant == "q90"
]


@functools.cache
def _jpeg_source(width: int, height: int) -> Image.Image:
    return structured_rgb(width, height, seed=10 + _JPEG_SIZES.index((width, height)))


def jpeg_case(name: str) -> bytes:
    """The bytes of one JPEG_CASES entry."""
    size, variant = name.split("-", 1)
    width, height = map(int, size.split("x"))
    mode, options = _JPEG_VARIANTS[variant]
    return encode(_jpeg_source(width, height).convert(mode), "JPEG", **options)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`×`height` but holds almost no data (a dimension bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


_PNG_CHANNELS = {0: 1, 2: 3, 6: 4}  # PNG colour type → bytes per pixel at 8 bits: grey, RGB, RGBA


def png_zlib_bomb(width: int, height: int, colour_type: int = 0) -> bytes:
    """A real, valid all-black PNG (grey, RGB or RGBA): a few hundred KB that inflate ~1,000-fold."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (width * _PNG_CHANNELS[colour_type] + 1)
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    idat = b"".join(parts)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A ~630-byte colour JPEG whose header claims `width`×`height`: its scan stops after one 16×16 block, and
    libjpeg fills the rest in grey, so the full image is decoded from almost nothing (issue 15: 7000×7000)."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (120, 80, 200)), "JPEG", quality=75))
    struct.pack_into(">HH", data, data.index(b"\xff\xc0") + 5, height, width)
    return bytes(data)


def progressive_jpeg_with_scans(width: int, height: int, scans: int) -> bytes:
    """A valid progressive greyscale JPEG of a flat image whose last scan is repeated until there are `scans`.

    Each repeat is a refinement scan libjpeg accepts with a warning, ~30 bytes long (all blocks in a few EOB runs)
    yet a pass over every block: 4000×4000 with 1,000 scans is 94 KB (issue 15: 32 s to decode).
    """
    data = encode(Image.new("L", (width, height), 128), "JPEG", progressive=True, quality=75)
    starts = [m.start() for m in re.finditer(rb"\xff\xda", data)]  # SOS markers (never inside entropy data)
    last = data[starts[-1] : data.rindex(b"\xff\xd9")]
    return data[: starts[-1]] + last * (scans - len(starts) + 1) + b"\xff\xd9"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def random_hashes(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(count, 32), dtype=np.uint8)
    return [row.tobytes().hex() for row in raw]


def flip_bits(pdq_hex: str, count: int, seed: int) -> str:
    """`pdq_hex` with exactly `count` distinct bits flipped."""
    rng = np.random.default_rng(seed)
    value = int(pdq_hex, 16)
    for bit in rng.choice(256, size=count, replace=False):
        value ^= 1 << int(bit)
    return f"{value:064x}"
