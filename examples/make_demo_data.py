"""Generate examples/demo-data: small synthetic shape images with sidecar .txt captions.

Deterministic (same bytes every run), no downloads. Sizes run from 64x64 to 512x384 so
that every preset in presets/ has something to train on: stage I presets (minimum 64,
over 256 down to 128) use all of them, and the ten images of at least 256x256 fill
stage II's 256px bucket. Run: python examples/make_demo_data.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 210), "yellow": (240, 210, 40),
    "purple": (140, 60, 180), "orange": (245, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond")

# (width, height) of each image: small, non-square, and >= 256 on both sides for stage II.
SIZES = [
    (64, 64), (64, 96), (96, 64), (72, 72), (80, 80), (96, 96), (96, 128), (100, 75),
    (128, 128), (128, 96), (144, 108), (160, 120), (192, 128), (200, 150),
    (256, 256), (256, 320), (320, 256), (256, 384), (384, 256), (300, 300),
    (384, 384), (400, 300), (480, 320), (512, 384),
]
SUPERSAMPLE = 4  # drawn larger and reduced, for smooth edges


def draw(size: tuple[int, int], shape: str, fg: tuple, bg: tuple) -> Image.Image:
    """One shape centred on a plain background, filling about 60% of the short edge."""
    w, h = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    r = min(w, h) * 0.3
    cx, cy = w / 2, h / 2
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif shape == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fg)
    else:
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fg)
    return im.resize(size, Image.Resampling.LANCZOS)


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def main(out: Path) -> int:
    """Write the images and captions into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    for i, size in enumerate(SIZES):
        fg_name = names[i % len(names)]
        bg_name = names[(i * 3 + 2) % len(names)]
        if bg_name == fg_name:
            bg_name = names[(names.index(fg_name) + 1) % len(names)]
        shape = SHAPES[i % len(SHAPES)]
        stem = f"{i:02d}-{fg_name}-{shape}"
        draw(size, shape, COLOURS[fg_name], COLOURS[bg_name]).save(out / f"{stem}.png", optimize=True)
        caption = f"{_a(fg_name)} {fg_name} {shape} on {_a(bg_name)} {bg_name} background"
        (out / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")
    print(f"wrote {len(SIZES)} images and captions to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "demo-data"))
