"""The hashing benchmarks' corpus: 1–4 MP JPEG photos, reproducible on any machine that can install Debian packages.

Sources are photographs shipped by Debian's desktop wallpaper packages (`make bench-photos` installs them:
mate-backgrounds, plasma-workspace-wallpapers, lomiri-wallpapers-20.04). Each one gives several crops of random
place, aspect ratio and size (1–4 megapixels, resized with Lanczos), re-encoded as JPEG at quality 70–95, a
quarter of them progressive, the way phones and the Bluesky app write photos. Everything is seeded, so two runs
(or two machines) hash the same bytes. Without the packages, photo-like synthetic images stand in, and the
benchmarks say so: distances measured on them say little about photographs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SHARE = Path("/usr/share")
PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers-20.04")
# Photographs only (the packages also hold illustrations, which hash differently).
SOURCES = (
    *(
        f"backgrounds/mate/nature/{name}.jpg"
        for name in (
            "Aqua",
            "Blinds",
            "Dune",
            "FreshFlower",
            "Garden",
            "GreenMeadow",
            "LadyBird",
            "RainDrops",
            "Storm",
            "TwoWings",
            "Wood",
            "YellowFlower",
        )
    ),
    *(
        f"wallpapers/{name}/contents/images/2560x1440.jpg"
        for name in (
            "BytheWater",
            "ColdRipple",
            "DarkestHour",
            "EveningGlow",
            "FallenLeaf",
            "Grey",
            "Kite",
            "OneStandsOut",
            "Path",
            "summer_1am",
        )
    ),
    "wallpapers/ColorfulCups/contents/images/2560x1600.jpg",
    "wallpapers/Shell/contents/images/5120x2880.jpg",
    "backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
    "backgrounds/Infinite-Sea_by_Aury88.jpg",
)
ASPECTS = ((1, 1), (4, 3), (3, 4), (16, 9), (9, 16), (3, 2), (2, 3))
QUALITIES = (70, 80, 85, 90, 95)


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Corpus:
    photos: list[Photo]
    kind: str  # "photographs (…)" or "synthetic"

    def describe(self) -> str:
        megapixels = [p.width * p.height / 1e6 for p in self.photos]
        kib = sum(len(p.data) for p in self.photos) / len(self.photos) / 1024
        return (
            f"{len(self.photos)} JPEGs from {self.kind}, {min(megapixels):.1f}–{max(megapixels):.1f} MP, "
            f"mean {kib:.0f} KiB"
        )


def build(count: int, seed: int = 0) -> Corpus:
    """`count` photos, crops spread evenly over the installed sources (synthetic ones without any)."""
    rng = np.random.default_rng(seed)
    sources = [SHARE / s for s in SOURCES if (SHARE / s).exists()]
    if not sources:
        photos = [_encode(f"synthetic-{n}", _synthetic(rng), rng) for n in range(count)]
        return Corpus(photos, "synthetic photo-like images (install the photos: make bench-photos)")
    photos = []
    per_source = -(-count // len(sources))
    for path in sources:
        with Image.open(path) as opened:
            source = opened.convert("RGB")
        name = path.parts[4] if path.parts[3] == "wallpapers" else path.stem  # /usr/share/wallpapers/<Name>/…
        for n in range(min(per_source, count - len(photos))):
            photos.append(_encode(f"{name}-{n}", _crop(source, rng), rng))
    return Corpus(photos, f"{len(sources)} photographs ({', '.join(PACKAGES)})")


def _crop(source: Image.Image, rng: np.random.Generator) -> Image.Image:
    across, down = ASPECTS[rng.integers(len(ASPECTS))]
    pixels = rng.uniform(1.0, 4.0) * 1e6
    height = int((pixels * down / across) ** 0.5)
    width = int(height * across / down)
    fraction = rng.uniform(0.5, 1.0)
    crop_w = int(source.width * fraction)
    crop_h = int(crop_w * down / across)
    if crop_h > source.height:
        crop_h = int(source.height * fraction)
        crop_w = int(crop_h * across / down)
    left = int(rng.integers(0, source.width - crop_w + 1))
    top = int(rng.integers(0, source.height - crop_h + 1))
    return source.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.Resampling.LANCZOS)


def _synthetic(rng: np.random.Generator) -> Image.Image:
    """Smooth gradients, shapes and sensor-like noise at 1–4 MP."""
    across, down = ASPECTS[rng.integers(len(ASPECTS))]
    height = int((rng.uniform(1.0, 4.0) * 1e6 * down / across) ** 0.5)
    width = int(height * across / down)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height, x / width
    phase = rng.uniform(0, 6)
    red = 200 * x + 40 * np.sin(9 * y + phase)
    green = 180 * y + 50 * np.cos(7 * x * y + phase)
    img = np.stack([red, green, 120 + 90 * np.sin(5 * (x + y))], axis=2)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.2)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _encode(name: str, image: Image.Image, rng: np.random.Generator) -> Photo:
    quality = int(rng.choice(QUALITIES))
    progressive = bool(rng.random() < 0.25)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, progressive=progressive)
    label = f"{name}-{image.width}x{image.height}-q{quality}{'p' if progressive else ''}"
    return Photo(label, out.getvalue(), image.width, image.height)
