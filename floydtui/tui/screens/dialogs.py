"""Small modal screens: a path to save or export to, quitting, and the too-small message."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Static

from floydtui.errors import FloydError
from floydtui.tui.widgets.fields import FolderSuggester


class PathDialog(ModalScreen[Path | None]):
    """Asks for a path; `accept` does the work and raises FloydError to keep the dialog open
    with the problem shown under the box."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, default: Path, accept: Callable[[Path], Path], ok_label: str = "Save") -> None:
        super().__init__()
        self.title_text = title
        self.default = default
        self.accept = accept
        self.ok_label = ok_label

    @property
    def path_input(self) -> Input:
        return self.query_one("#path-input", Input)

    @property
    def problem_line(self) -> Static:
        return self.query_one("#path-problem", Static)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Input(str(self.default), id="path-input", suggester=FolderSuggester(Path.cwd()))
            yield Static("", id="path-problem", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.ok_label, id="ok", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        text = self.path_input.value.strip()
        problem = self.problem_line
        if not text:
            problem.update("a path is needed")
            return
        try:
            done = self.accept(Path(text).expanduser())
        except FloydError as e:
            problem.update(Text("\n".join(p.message + (f" — {p.hint}" if p.hint else "") for p in e.problems)))
            return
        except OSError as e:
            problem.update(f"cannot write there: {e.strerror or e}")
            return
        self.dismiss(done)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceDialog(ModalScreen[str | None]):
    """A question with a few answers, each with a key; Escape answers None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str, str]], detail: str = "") -> None:
        """`choices`: (answer, key, label) in order; the first is the default button."""
        super().__init__()
        self.question = question
        self.choices = choices
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-title")
            if self.detail:
                yield Static(self.detail, classes="dialog-detail", markup=False)
            with Horizontal(classes="dialog-buttons"):
                for i, (answer, key, label) in enumerate(self.choices):
                    yield Button(f"{label} ({key})", id=f"answer-{answer}", compact=True,
                                 variant="primary" if i == 0 else "default")

    def on_key(self, event) -> None:
        for answer, key, _ in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id).removeprefix("answer-"))

    def action_cancel(self) -> None:
        self.dismiss(None)


class TooSmallScreen(Screen):
    """Shown instead of a squeezed layout while the terminal is smaller than the app needs."""

    def __init__(self, need: tuple[int, int]) -> None:
        super().__init__()
        self.need = need

    @property
    def message(self) -> Static:
        return self.query_one("#too-small-message", Static)

    def compose(self) -> ComposeResult:
        yield Static(id="too-small-message")

    def on_mount(self) -> None:
        self.show_size(self.app.size.width, self.app.size.height)

    def show_size(self, width: int, height: int) -> None:
        w, h = self.need
        self.message.update(
            f"floydtui needs a terminal of at least {w}x{h}; this one is {width}x{height}.\n"
            "Make the window larger (or the font smaller); nothing is lost meanwhile.")
