"""Images drawn in a terminal: colour half-blocks, or ASCII shades when colour is off.

Each character cell shows two pixels: the upper as the foreground of '▀', the lower as its
background. Without colour (NO_COLOR, a dumb terminal, a pipe) each cell is one character
from a ten-step brightness ramp. Used by `floydtui generate`; plain rich, no textual.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image
    from rich.text import Text

ASCII_RAMP = " .:-=+*#%@"


def colour_enabled() -> bool:
    """NO_COLOR (https://no-color.org) or TERM=dumb turn colour off."""
    return not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def fit(image: "Image.Image", max_cols: int, max_rows: int, cell_rows: int = 2) -> "Image.Image":
    """Scale to fit `max_cols` x `max_rows` cells (`cell_rows` pixel rows per cell), aspect kept."""
    from PIL import Image

    w, h = image.size
    scale = min(max_cols / w, (max_rows * cell_rows) / h)
    new = (max(1, round(w * scale)), max(cell_rows, round(h * scale)))
    return image.convert("RGB").resize(new, Image.Resampling.BOX if scale < 1 else Image.Resampling.NEAREST)


def half_blocks(image: "Image.Image", max_cols: int = 64, max_rows: int = 32) -> "Text":
    """A rich Text of '▀' cells in truecolour, two pixels a cell."""
    from rich.style import Style
    from rich.text import Text

    img = fit(image, max_cols, max_rows, 2)
    w, h = img.size
    px = img.load()
    text = Text()
    for y in range(0, h - 1, 2):
        for x in range(w):
            top, bottom = px[x, y], px[x, y + 1]
            text.append("▀", Style(color=f"rgb({top[0]},{top[1]},{top[2]})",
                                   bgcolor=f"rgb({bottom[0]},{bottom[1]},{bottom[2]})"))
        text.append("\n")
    return text


def ascii_art(image: "Image.Image", max_cols: int = 64, max_rows: int = 32) -> str:
    """Plain ASCII shades, one character per cell (cells are about twice as tall as wide)."""
    img = fit(image, max_cols, max_rows, 2).convert("L")
    w, h = img.size
    img = img.resize((w, max(1, h // 2)))
    px = img.load()
    last = len(ASCII_RAMP) - 1
    rows = ["".join(ASCII_RAMP[px[x, y] * last // 255] for x in range(img.size[0])) for y in range(img.size[1])]
    return "\n".join(rows)


def render(image: "Image.Image", max_cols: int = 64, max_rows: int = 32, colour: bool | None = None):
    """Half-blocks when colour is on, else ASCII: something rich can print."""
    if colour is None:
        colour = colour_enabled()
    return half_blocks(image, max_cols, max_rows) if colour else ascii_art(image, max_cols, max_rows)
