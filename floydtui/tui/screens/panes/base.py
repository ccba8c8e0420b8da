"""What every wizard pane shares: the state it edits, lazy building, and form rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Iterable

from textual import on
from textual.containers import Container, ScrollableContainer
from textual.message import Message

from floydtui.config.schema import FIELD_BY_KEY
from floydtui.tui.state import DATASETS, WizardState, field_of
from floydtui.tui.widgets.fields import FieldEditor
from floydtui.tui.workers import WorkerFailures

if TYPE_CHECKING:
    from floydtui.tui.screens.wizard import WizardScreen


class PresetChanged(Message):
    """A pane changed the preset; every built pane refreshes what depends on it."""

    def __init__(self, source: "WizardPane | None" = None, key: str = "") -> None:
        super().__init__()
        self.source = source
        self.key = key  # the key edited, when one field changed


class WizardPane(WorkerFailures, Container):
    """A step of the wizard. The screen creates (and imports) a pane when it is first shown,
    so the first screen draws without building the other six."""

    # The preset keys the pane edits, top-level and of a [[datasets]] entry: the screen sends a
    # problem at one of them to this step (its tab's count, the jump to the step of an error).
    KEYS: ClassVar[tuple[str, ...]] = ()
    DATASET_KEYS: ClassVar[tuple[str, ...]] = ()
    # What can take the cursor when the step opens, the first one shown.
    CURSOR_TARGETS: ClassVar[str] = "Input, Select, Checkbox, ListView, Button"

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id)

    def compose(self):
        yield from self.build()

    def on_mount(self) -> None:
        self.call_after_refresh(self.state_changed)
        if self.id == f"pane-{self.wizard.current_step}":
            # Built for the step being opened (the screen puts the cursor only in panes already built).
            self.call_after_refresh(self.take_cursor)

    def take_cursor(self) -> None:
        """Put the cursor on the pane's first field shown, else on its scrolling body, so the keys bound on the
        pane act on the step that is shown. The step is not scrolled to it: what the step says first (the
        hardware step's no-GPU line) stays in view."""
        shown = [w for w in self.query(self.CURSOR_TARGETS) if w.focusable and w.display]
        shown = shown or [w for w in self.query(ScrollableContainer) if w.focusable and w.display]
        if shown:
            shown[0].focus(scroll_visible=False)

    @property
    def wizard(self) -> "WizardScreen":
        return self.screen  # type: ignore[return-value]

    @property
    def state(self) -> WizardState:
        return self.wizard.state

    def build(self) -> Iterable:
        """The pane's widgets."""
        raise NotImplementedError

    def state_changed(self) -> None:
        """The preset changed (here or in another pane): refresh problems and derived values."""

    def editors(self) -> list[FieldEditor]:
        return list(self.query(FieldEditor))

    def field_editor(self, key: str) -> FieldEditor:
        """The form row of a key."""
        return self.query_one(f"#field-{key}", FieldEditor)

    def table_editor(self, key: str, label: str | None = None) -> FieldEditor:
        """A form row for a top-level key (its table from the schema)."""
        table = FIELD_BY_KEY[key][0]
        return FieldEditor(table, field_of(table, key), self.state.get(table, key),
                           resolved=self.state.resolved(table, key), label=label)

    def refresh_editors(self, index: int | None = None) -> None:
        """Show each row's problems, as the config layer words them."""
        for ed in self.editors():
            ed.show_problems(self.state.problems_for(ed.key, index if ed.scope == DATASETS else None))

    @on(FieldEditor.Edited)
    def _write(self, event: FieldEditor.Edited) -> None:
        event.stop()
        ed = event.editor
        index = self.dataset_index if ed.scope == DATASETS else None
        if event.is_text:
            self.state.set_text(ed.scope, ed.key, str(event.value), index)
        else:
            self.state.set(ed.scope, ed.key, event.value, index)
        self.post_message(PresetChanged(self, ed.key))

    @property
    def dataset_index(self) -> int | None:
        """The dataset the pane's dataset rows edit (datasets and text-embeds panes)."""
        return None
