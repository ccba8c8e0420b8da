"""The shapes world: what the built-in `builtin:shapes-if-*` models were pretrained on.

A procedurally generated world of one flat shape (circle, square, triangle, diamond, star)
in a named colour on a plain background of another, at varied sizes and positions, captioned
"a red circle on a blue background". Drawn at 256px with supersampling (stage II's ground
truth); stage I sees it at 64px. Pink (#FF3CB4) is deliberately outside the palette: the demo
teaches it as a new concept. `analyse` is the simple judge the tests use: the dominant palette
colour in the image's centre and at its border.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 210), "yellow": (240, 210, 40),
    "purple": (140, 60, 180), "orange": (245, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star")
PINK = (255, 60, 180)  # #FF3CB4: the demo's concept, never drawn in the pretraining world
PINK_TOLERANCE = 40  # per channel: how close a pixel must be to PINK to count as pink
SUPERSAMPLE = 2  # drawn at twice the size and reduced, for smooth edges
RADIUS = (0.20, 0.34)  # the shape's radius as a fraction of the image side
OFFSET = 0.06  # how far (fraction of the side) the centre may wander from the image's centre
STAR_INNER = 0.5  # the star's inner radius as a fraction of its outer one


@dataclass(frozen=True)
class Scene:
    """One picture of the world: what is drawn where, and its caption."""

    shape: str
    colour: str
    background: str
    radius: float  # fraction of the side
    cx: float  # centre, fraction of the side
    cy: float
    angle: float = 0.0  # degrees, for the square, triangle, diamond and star

    @property
    def caption(self) -> str:
        return caption(self.colour, self.shape, self.background)


def article(word: str) -> str:
    """'a' or 'an' before a word."""
    return "an" if word[0] in "aeiou" else "a"


def caption(colour: str, shape: str, background: str) -> str:
    """The world's caption: 'a red circle on a blue background'."""
    return f"{article(colour)} {colour} {shape} on {article(background)} {background} background"


def random_scene(rng: random.Random, *, colours=tuple(COLOURS), shapes=SHAPES) -> Scene:
    """A scene drawn from `rng`: any shape, colour and a different background colour."""
    colour = rng.choice(colours)
    background = rng.choice([c for c in COLOURS if c != colour])
    return Scene(shape=rng.choice(shapes), colour=colour, background=background,
                 radius=rng.uniform(*RADIUS), cx=0.5 + rng.uniform(-OFFSET, OFFSET),
                 cy=0.5 + rng.uniform(-OFFSET, OFFSET), angle=rng.uniform(-15.0, 15.0))


def outline(scene: Scene, width: float, height: float) -> list[tuple[float, float]] | None:
    """The shape's polygon in pixels on a `width` x `height` image (None for the circle).

    The radius is a fraction of the short side, the centre a fraction of each side.
    """
    import math

    r, cx, cy = scene.radius * min(width, height), scene.cx * width, scene.cy * height
    corners = {"square": (4, 45.0), "triangle": (3, -90.0), "diamond": (4, -90.0)}
    if scene.shape == "circle":
        return None
    if scene.shape == "star":
        points = [(r if k % 2 == 0 else r * STAR_INNER, -90.0 + 36.0 * k) for k in range(10)]
    else:
        n, start = corners[scene.shape]
        # a square's corners sit further out than its edges: r is its half side, as for the circle
        reach = r * math.sqrt(2) if scene.shape == "square" else r
        points = [(reach, start + 360.0 * k / n) for k in range(n)]
    return [(cx + d * math.cos(math.radians(a + scene.angle)), cy + d * math.sin(math.radians(a + scene.angle)))
            for d, a in points]


def draw(scene: Scene, size: int | tuple[int, int] = 256, fill: tuple[int, int, int] | None = None):
    """The scene as an RGB PIL image of `size` (a side, or (width, height)); `fill` overrides the shape's colour."""
    from PIL import Image, ImageDraw

    width, height = (size, size) if isinstance(size, int) else size
    w, h = width * SUPERSAMPLE, height * SUPERSAMPLE
    im = Image.new("RGB", (w, h), COLOURS[scene.background])
    d = ImageDraw.Draw(im)
    colour = fill or COLOURS[scene.colour]
    poly = outline(scene, w, h)
    if poly is None:
        r, cx, cy = scene.radius * min(w, h), scene.cx * w, scene.cy * h
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        d.polygon(poly, fill=colour)
    return im.resize((width, height), Image.Resampling.BOX)


def nearest_colour(rgb) -> str:
    """The palette colour (or "pink") nearest an RGB triple."""
    named = dict(COLOURS, pink=PINK)
    return min(named, key=lambda n: sum((int(a) - b) ** 2 for a, b in zip(rgb, named[n])))


def dominant(pixels) -> str:
    """The palette colour most pixels of an [h, w, 3] uint8 array are nearest to."""
    import numpy as np

    named = dict(COLOURS, pink=PINK)
    names = list(named)
    ref = np.array([named[n] for n in names], dtype=np.float32)
    flat = pixels.reshape(-1, 3).astype(np.float32)
    nearest = ((flat[:, None, :] - ref[None]) ** 2).sum(-1).argmin(1)
    return names[int(np.bincount(nearest, minlength=len(names)).argmax())]


def analyse(pixels) -> tuple[str, str]:
    """(dominant colour of the centre, of the border) of an [h, w, 3] uint8 image.

    The centre is the middle fifth of each side (inside every shape the world draws, however
    it is placed); the border is the outer tenth all round (outside every shape).
    """
    import numpy as np

    h, w = pixels.shape[:2]
    ch, cw, bh, bw = max(1, h // 10), max(1, w // 10), max(1, h // 10), max(1, w // 10)
    centre = pixels[h // 2 - ch:h // 2 + ch, w // 2 - cw:w // 2 + cw]
    ring = np.concatenate([pixels[:bh].reshape(-1, 3), pixels[-bh:].reshape(-1, 3),
                           pixels[bh:-bh, :bw].reshape(-1, 3), pixels[bh:-bh, -bw:].reshape(-1, 3)])
    return dominant(centre), dominant(ring)


def pink_fraction(pixels) -> float:
    """The fraction of an [h, w, 3] uint8 image's pixels within PINK_TOLERANCE of PINK on every channel."""
    import numpy as np

    close = np.abs(pixels.astype(np.int16) - np.array(PINK, dtype=np.int16)) <= PINK_TOLERANCE
    return float(close.all(-1).mean())
