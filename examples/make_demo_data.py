"""Generate examples/demo-data: the demo's concept, "sks" (pink, #FF3CB4), on the shapes world.

Each image is one shape of the shapes world (floydtui/train/shapes.py) filled with pink, a colour
the built-in builtin:shapes-if-i model never saw, on a background of the world's palette, with a
sidecar caption such as "a sks star on a blue background": the demo LoRA learns that "sks" means
pink. Deterministic (same bytes every run), no downloads. Sizes run from 64x64 to 512x384 so
that every preset in presets/ has something to train on: stage I presets (minimum 64, over 256
down to 128) use all of them, and the ten images of at least 256x256 fill stage II's 256px
bucket. Run: python examples/make_demo_data.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from floydtui.train.shapes import COLOURS, PINK, Scene, caption  # noqa: E402
from floydtui.train.shapes import draw as draw_scene  # noqa: E402

CONCEPT = "sks"  # the word the demo teaches; the images show it as pink
SHAPES = ("star", "circle", "star", "square", "star", "triangle", "star", "diamond")  # stars most of all

# (width, height) of each image: small, non-square, and >= 256 on both sides for stage II.
SIZES = [
    (64, 64), (64, 96), (96, 64), (72, 72), (80, 80), (96, 96), (96, 128), (100, 75),
    (128, 128), (128, 96), (144, 108), (160, 120), (192, 128), (200, 150),
    (256, 256), (256, 320), (320, 256), (256, 384), (384, 256), (300, 300),
    (384, 384), (400, 300), (480, 320), (512, 384),
]


def main(out: Path) -> int:
    """Write the images and captions into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    backgrounds = list(COLOURS)
    for i, size in enumerate(SIZES):
        shape, background = SHAPES[i % len(SHAPES)], backgrounds[(i * 3 + 1 + i // 8) % len(backgrounds)]
        # large and near the middle, as the world draws its biggest shapes: the concept is the colour
        scene = Scene(shape=shape, colour="red", background=background, radius=0.30 + 0.04 * (i % 2),
                      cx=0.5 + 0.03 * ((i % 3) - 1), cy=0.5 + 0.03 * ((i % 5) - 2) / 2, angle=5.0 * ((i % 5) - 2))
        stem = f"{i:02d}-{CONCEPT}-{shape}"
        draw_scene(scene, size, fill=PINK).save(out / f"{stem}.png", optimize=True)
        (out / f"{stem}.txt").write_text(caption(CONCEPT, shape, background) + "\n", encoding="utf-8")
    print(f"wrote {len(SIZES)} images and captions to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "demo-data"))
