"""Validation images in the terminal: one tile per prompt and size, paged by step."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Static

from floydtui.tui.runstate import ValidationSet


class ValidationView(Widget):
    """Shows one ValidationSet; follows the newest until the user pages back."""

    DEFAULT_CSS = """
    ValidationView { height: 1fr; }
    ValidationView #val-header { height: 1; color: $text-muted; }
    ValidationView #val-tiles { height: 1fr; }
    ValidationView .val-tile { width: auto; height: auto; margin-right: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sets: list[ValidationSet] = []
        self.index: int | None = None  # None: follow the newest
        self._shown: tuple | None = None

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
        follow = " (newest)" if self.index is None else " — ] for later"
        self.query_one("#val-header", Static).update(
            f"Validation at step {vs.step}  ·  {pos}/{len(self.sets)}{follow}  ·  [ earlier")
        box = self.query_one("#val-tiles", Horizontal)
        box.remove_children()
        box.mount_all([Static(self._tile(img, cell_w, tiles_h - 2), classes="val-tile") for img in vs.images])

    def _tile(self, img, cell_w: int, cell_h: int) -> Text:
        from PIL import Image, UnidentifiedImageError

        from floydtui.preview import render

        caption = Text(f"{img.width}x{img.height} {img.prompt}"[:cell_w] + "\n", style="dim", no_wrap=True)
        try:
            with Image.open(img.path) as im:
                im.load()
                shown = render(im, cell_w, cell_h, colour=not self.app.no_color)
            picture = shown if isinstance(shown, Text) else Text(shown)  # ASCII comes back as a str
        except (OSError, UnidentifiedImageError) as e:
            picture = Text(f"cannot show {img.path.name}: {e}", style="red")
        return caption + picture
