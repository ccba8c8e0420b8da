"""Validation images in the terminal: one tile per prompt and size, paged by step.

The PNGs are decoded and rendered in a worker; the widget only mounts the finished tiles.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from floydtui.tui.runstate import ValidationImage, ValidationSet
from floydtui.tui.text import fit
from floydtui.tui.workers import WorkerFailures


def render_tile(img: ValidationImage, cell_w: int, cell_h: int, colour: bool, label: str | None = None) -> Text:
    """A caption line (size and prompt, or `label`) over the image drawn in `cell_w` x `cell_h` cells.

    Decodes the PNG: call it from a worker, never on the UI thread."""
    from PIL import Image, UnidentifiedImageError

    from floydtui.preview import render

    seed = "" if img.seed is None else f" seed {img.seed}"
    head = label if label is not None else f"{img.width}x{img.height}{seed} {img.prompt}"
    caption = Text(fit(head, cell_w) + "\n", style="dim", no_wrap=True)
    try:
        with Image.open(img.path) as im:
            im.load()
            shown = render(im, cell_w, cell_h, colour=colour)
        picture = shown if isinstance(shown, Text) else Text(shown)  # ASCII comes back as a str
    except (OSError, UnidentifiedImageError, ValueError) as e:
        picture = Text(f"cannot show {img.path.name}: {e}", style="red")
    return caption + picture


class TilesReady(Message):
    """Rendered tiles for one (set, size) key."""

    def __init__(self, key: tuple, tiles: list[Text]) -> None:
        super().__init__()
        self.key = key
        self.tiles = tiles


class ValidationView(WorkerFailures, Widget):
    """Shows one ValidationSet; follows the newest until the user pages back."""

    DEFAULT_CSS = """
    ValidationView { height: 1fr; }
    ValidationView #val-header { height: auto; color: $text-muted; }
    ValidationView #val-tiles { height: 1fr; }
    ValidationView .val-tile { width: auto; height: auto; margin-right: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sets: list[ValidationSet] = []
        self.index: int | None = None  # None: follow the newest
        self._shown: tuple | None = None

    @property
    def header(self) -> Static:
        return self.query_one("#val-header", Static)

    @property
    def tiles(self) -> Horizontal:
        return self.query_one("#val-tiles", Horizontal)

    def compose(self) -> ComposeResult:
        yield Static("No validation images yet.", id="val-header", markup=False)
        yield Horizontal(id="val-tiles")

    @property
    def current(self) -> ValidationSet | None:
        if not self.sets:
            return None
        return self.sets[-1 if self.index is None else self.index]

    def update_sets(self, sets: list[ValidationSet]) -> None:
        self.sets = list(sets)
        self.show()

    def page(self, delta: int) -> None:
        """Earlier (-1) or later (+1) validation; paging past the newest follows new ones again."""
        if not self.sets:
            return
        i = (len(self.sets) - 1 if self.index is None else self.index) + delta
        i = max(0, min(len(self.sets) - 1, i))
        self.index = None if i == len(self.sets) - 1 else i
        self.show()

    def on_resize(self) -> None:
        self._shown = None
        self.call_after_refresh(self.show)

    def show(self) -> None:
        """Render the current set's images to fit the tiles (only when something changed)."""
        vs = self.current
        if vs is None:
            return
        n = len(vs.images) or 1
        tiles_w = max(self.size.width, 20)
        tiles_h = max(self.size.height - 1, 4)
        cell_w = max(8, tiles_w // n - 1)
        key = (vs.step, len(vs.images), cell_w, tiles_h, self.index)
        if key == self._shown:
            return
        self._shown = key
        pos = self.sets.index(vs) + 1
        follow = " (newest)" if self.index is None else ""
        self.header.update(f"Validation at step {vs.step} · {pos}/{len(self.sets)}{follow}")
        self.render_tiles(key, vs, cell_w, tiles_h - 2, not self.app.no_color)

    @work(thread=True, exclusive=True, group="validation images", exit_on_error=False)
    def render_tiles(self, key: tuple, vs: ValidationSet, cell_w: int, cell_h: int, colour: bool) -> None:
        """Decode and draw one set's images off the UI thread."""
        self.post_message(TilesReady(key, [render_tile(img, cell_w, cell_h, colour) for img in vs.images]))

    @on(TilesReady)
    def _tiles_ready(self, event: TilesReady) -> None:
        event.stop()
        if event.key != self._shown:
            return  # the user paged on, or the widget was resized, while these were drawn
        box = self.tiles
        box.remove_children()
        box.mount_all([Static(tile, classes="val-tile") for tile in event.tiles])

    def worker_failed(self, worker, error) -> None:
        self._shown = None  # draw again on the next change rather than never
