"""Images in the terminal: colour half-blocks, or an ASCII ramp when colour is off.

A cell shows two pixels stacked: the upper one as the foreground of "▀", the lower one as
the background, so pixels come out square on a terminal's 1:2 cells. Without colour
(NO_COLOR, or a monochrome terminal) each cell is a character whose ink matches the
brightness of its two pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.style import Style
from rich.text import Text

if TYPE_CHECKING:  # PIL loads when an image is drawn, not at start-up
    from PIL.Image import Image

ASCII_RAMP = " .:-=+*#%@"  # dark to bright on a dark terminal


def fit_size(width: int, height: int, max_cells_w: int, max_cells_h: int) -> tuple[int, int]:
    """The pixel size (w, h) to draw an image at, inside max_cells_w x max_cells_h cells, aspect kept."""
    max_px_w, max_px_h = max(max_cells_w, 1), max(max_cells_h, 1) * 2
    scale = min(max_px_w / width, max_px_h / height)
    w = max(1, min(max_px_w, round(width * scale)))
    h = max(2, min(max_px_h, round(height * scale)))
    return w, h + (h % 2)  # an even row count: each cell holds two


def render_image(image: "Image", max_cells_w: int, max_cells_h: int, color: bool = True) -> Text:
    """The image scaled to fit the cells, as rich Text: half-blocks in colour, else ASCII."""
    from PIL import Image as PILImage

    w, h = fit_size(image.width, image.height, max_cells_w, max_cells_h)
    # Up-scaling keeps the pixels crisp (a 64px sample is what was trained); down-scaling averages.
    method = PILImage.Resampling.NEAREST if w >= image.width else PILImage.Resampling.LANCZOS
    img = image.convert("RGB").resize((w, h), method)
    px = img.load()
    text = Text(no_wrap=True, overflow="crop")
    styles: dict[tuple, Style] = {}
    for y in range(0, h, 2):
        for x in range(w):
            top, bottom = px[x, y], px[x, y + 1]
            if color:
                key = (top, bottom)
                style = styles.get(key)
                if style is None:
                    style = styles[key] = Style(color=f"rgb{top}", bgcolor=f"rgb{bottom}")
                text.append("▀", style)
            else:
                text.append(_ascii(top, bottom))
        if y + 2 < h:
            text.append("\n")
    return text


def _ascii(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> str:
    lum = (_luma(top) + _luma(bottom)) / 2
    return ASCII_RAMP[min(len(ASCII_RAMP) - 1, int(lum / 256 * len(ASCII_RAMP)))]


def _luma(rgb: tuple[int, int, int]) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b
