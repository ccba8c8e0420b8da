"""Validation images across steps: one row per prompt, size and seed, one column per step, paged.

How a LoRA learns shows in the same prompt at step 100, 200, 300 side by side. The grid
fits the terminal: as many step columns and prompt rows as fit, and the arrow keys (or
[ ] and PgUp/PgDn) page through the rest. Images are decoded in a worker.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from floydtui.tui.runstate import ValidationImage, ValidationSet
from floydtui.tui.widgets.keybar import KeyBar
from floydtui.tui.widgets.validation_view import render_tile
from floydtui.tui.workers import WorkerFailures

LABEL_W = 16  # the prompt column
CELL_MIN_W = 14  # narrower than this, a 64px image is a smudge
CELL_H = 7  # lines per row: a caption and six of image (12 px at two pixels a line)


Row = tuple[str, int, int, int | None]  # prompt, width, height, seed (None: the run's one seed)


def row_of(img: ValidationImage) -> Row:
    return img.prompt, img.width, img.height, img.seed


def grid_rows(sets: list[ValidationSet]) -> list[Row]:
    """(prompt, width, height, seed) of every image any step made, in the order they first appear."""
    return list(dict.fromkeys(row_of(img) for vs in sets for img in vs.images))


def cell(sets: list[ValidationSet], row: Row, step: int) -> ValidationImage | None:
    """The image of `row` at `step`, if that validation made one."""
    vs = next((v for v in sets if v.step == step), None)
    return next((img for img in vs.images if row_of(img) == row), None) if vs else None


class CellsReady(Message):
    def __init__(self, page: tuple, tiles: list[Text]) -> None:
        super().__init__()
        self.page = page
        self.tiles = tiles


class CompareScreen(WorkerFailures, Screen):
    """Prompts as rows, steps as columns; Escape goes back to the monitor."""

    BINDINGS = [
        Binding("left,left_square_bracket", "page_steps(-1)", "Earlier"),
        Binding("right,right_square_bracket", "page_steps(1)", "Later"),
        Binding("up,pageup", "page_rows(-1)", "Up"),
        Binding("down,pagedown", "page_rows(1)", "Down"),
        Binding("escape,c", "app.pop_screen", "Back"),
    ]

    def __init__(self, sets: list[ValidationSet]) -> None:
        super().__init__()
        self.sets = list(sets)
        self.rows = grid_rows(self.sets)
        self.steps = [vs.step for vs in self.sets]
        self.first_step = max(0, len(self.steps) - 1)  # set on resize: the newest steps show first
        self.first_row = 0
        self._page: tuple | None = None
        self._placed = False

    @property
    def title_line(self) -> Static:
        return self.query_one("#compare-title", Static)

    @property
    def grid(self) -> Grid:
        return self.query_one("#compare-grid", Grid)

    def compose(self) -> ComposeResult:
        yield Static(id="compare-title")
        yield Grid(id="compare-grid")
        yield KeyBar()

    def on_resize(self) -> None:
        if not self._placed:  # open on the newest steps
            self.first_step = max(0, len(self.steps) - self.columns_fit())
            self._placed = True
        self.show()

    def columns_fit(self) -> int:
        return max(1, (self.size.width - LABEL_W) // (CELL_MIN_W + 1))

    def rows_fit(self) -> int:
        return max(1, (self.size.height - 3) // (CELL_H + 1))

    def update_sets(self, sets: list[ValidationSet]) -> None:
        """New validations arrived while the grid is open."""
        self.sets, self.rows, self.steps = list(sets), grid_rows(sets), [vs.step for vs in sets]
        self.show()

    def show(self) -> None:
        """Lay out the page that fits and start drawing its images."""
        ncols, nrows = min(self.columns_fit(), len(self.steps)), min(self.rows_fit(), len(self.rows))
        self.first_step = max(0, min(self.first_step, len(self.steps) - ncols))
        self.first_row = max(0, min(self.first_row, len(self.rows) - nrows))
        steps = self.steps[self.first_step:self.first_step + ncols]
        rows = self.rows[self.first_row:self.first_row + nrows]
        cell_w = max(CELL_MIN_W, (self.size.width - LABEL_W) // max(1, ncols) - 1)
        page = (tuple(steps), tuple(rows), cell_w, len(self.sets))
        title = Text()
        title.append(" Validation across steps ", style="bold reverse")
        if steps:
            title.append(f"  steps {steps[0]}–{steps[-1]} of {len(self.steps)} validations")
            title.append(f"  ·  prompts {self.first_row + 1}–{self.first_row + len(rows)} of {len(self.rows)}")
        self.title_line.update(title)
        if page == self._page:
            return
        self._page = page
        grid = self.grid
        grid.styles.grid_size_columns = len(steps) + 1
        grid.styles.grid_columns = f"{LABEL_W} " + " ".join(["1fr"] * len(steps))
        grid.styles.grid_rows = f"1 {' '.join([str(CELL_H + 1)] * len(rows))}"
        self.draw(page, steps, rows, cell_w, not self.app.no_color)

    @work(thread=True, exclusive=True, group="comparison images", exit_on_error=False)
    def draw(self, page: tuple, steps: list[int], rows: list, cell_w: int, colour: bool) -> None:
        """Decode and render the page's images off the UI thread."""
        tiles = []
        for row in rows:
            for step in steps:
                img = cell(self.sets, row, step)
                tiles.append(render_tile(img, cell_w, CELL_H - 1, colour, label="") if img is not None
                             else Text("(none at this step)", style="dim"))
        self.post_message(CellsReady(page, tiles))

    @on(CellsReady)
    def _cells_ready(self, event: CellsReady) -> None:
        if event.page != self._page:
            return  # paged on while these were drawn
        steps, rows = event.page[0], event.page[1]
        grid = self.grid
        grid.remove_children()
        widgets = [Static("prompt · size", classes="compare-head")]
        widgets += [Static(f"step {step}", classes="compare-head") for step in steps]
        tiles = iter(event.tiles)
        for prompt, w, h, seed in rows:
            size = f"{w}x{h}" if seed is None else f"{w}x{h} seed {seed}"
            widgets.append(Static(Text(f"{prompt}\n{size}", overflow="fold"), classes="compare-label"))
            widgets += [Static(next(tiles), classes="compare-cell") for _ in steps]
        grid.mount_all(widgets)

    def action_page_steps(self, delta: int) -> None:
        self.first_step += delta * max(1, min(self.columns_fit(), len(self.steps)))
        self.show()

    def action_page_rows(self, delta: int) -> None:
        self.first_row += delta * max(1, min(self.rows_fit(), len(self.rows)))
        self.show()

    def worker_failed(self, worker, error) -> None:
        self._page = None
