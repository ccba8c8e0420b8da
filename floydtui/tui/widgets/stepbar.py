"""The wizard's steps as one line: the current one highlighted, each with its count of errors.

One widget rather than a tab per step keeps the first screen quick to draw; a click on a
name posts `StepBar.Chosen`, and the keys live on the screen.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class StepBar(Widget):
    """Renders (step, title) pairs; `current` and `errors` (step -> count) drive it."""

    DEFAULT_CSS = """
    StepBar { height: 1; background: $panel-darken-1; }
    """

    current: reactive[str] = reactive("")
    errors: reactive[dict] = reactive(dict, always_update=True)

    class Chosen(Message):
        def __init__(self, step: str) -> None:
            super().__init__()
            self.step = step

    def __init__(self, steps: list[tuple[str, str]], current: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.steps = steps
        self.set_reactive(StepBar.current, current)
        self._spans: list[tuple[int, int, str]] = []

    def label(self, step: str) -> str:
        """A step's text as shown, error count included (tests read it)."""
        title = dict(self.steps)[step]
        n = self.errors.get(step, 0)
        return f"{title} ({n}!)" if n else title

    def render(self) -> Text:
        text = self._line(numbered=True)
        # At 80 columns the numbers and long titles do not all fit: drop them rather than hide a step.
        return text if text.cell_len <= self.size.width else self._line(numbered=False)

    def _line(self, numbered: bool) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        self._spans = []
        for i, (step, title) in enumerate(self.steps, 1):
            start = len(text)
            active = step == self.current
            shown = f" {i} {title}" if numbered else f" {title.split()[-1].capitalize()}"
            text.append(shown, style="bold reverse" if active else "")
            n = self.errors.get(step, 0)
            if n:
                text.append(f" ({n}!)", style="bold red" + (" reverse" if active else ""))
            text.append(" ", style="bold reverse" if active else "")
            self._spans.append((start, len(text), step))
            text.append(" ")
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, step in self._spans:
            if start <= event.x < end:
                self.post_message(self.Chosen(step))
