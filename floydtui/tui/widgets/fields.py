"""One preset key as a form row: its name, an editor of the right kind, and its problems.

The editor follows the schema `Field`: a checkbox for true/false, a list for choices, a
text box otherwise. Every edit posts `FieldEditor.Edited`; the screen writes it into the
`WizardState` and hands each row back the problems the config layer found for its key.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Input, Label, Static

from floydtui.config.schema import AUTO, Field
from floydtui.errors import Problem
from floydtui.tui.state import text_of


class FolderSuggester(Suggester):
    """Completes folder paths as they are typed (relative ones from `base_dir`); Right accepts."""

    def __init__(self, base_dir: Path) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.base_dir = base_dir

    async def get_suggestion(self, value: str) -> str | None:
        return complete_folder(value, self.base_dir)


def complete_folder(value: str, base_dir: Path) -> str | None:
    """The first folder whose path starts with `value`, with a trailing slash; None if none."""
    if not value:
        return None
    typed = Path(value).expanduser()
    full = typed if typed.is_absolute() else base_dir / typed
    parent, stem = (full, "") if value.endswith("/") else (full.parent, full.name)
    try:
        names = sorted(p.name for p in parent.iterdir() if p.is_dir() and p.name.startswith(stem)
                       and (stem.startswith(".") or not p.name.startswith(".")))
    except OSError:
        return None
    if not names:
        return None
    head = value if value.endswith("/") else value[: len(value) - len(stem)]
    return head + names[0] + "/"


class FieldEditor(Widget):
    """A form row for one schema field; `scope` is a table name or "datasets"."""

    DEFAULT_CSS = """
    FieldEditor { height: auto; width: 1fr; }
    FieldEditor > Horizontal { height: auto; }
    FieldEditor .field-name { width: 31; padding: 0 1 0 0; color: $text-muted; }
    FieldEditor .field-editor { width: 1fr; }
    FieldEditor Checkbox { width: auto; }
    FieldEditor .field-doc { padding-left: 31; color: $text-muted; display: none; height: auto; }
    FieldEditor:focus-within .field-doc { display: block; }
    FieldEditor .field-problem { padding-left: 31; height: auto; display: none; }
    FieldEditor.-error .field-problem { display: block; color: $error; }
    FieldEditor.-warning .field-problem { display: block; color: $warning; }
    FieldEditor.-error .field-name { color: $error; }
    """

    class Edited(Message):
        """The user changed a field: `value` is typed (checkbox, list) or the text typed."""

        def __init__(self, editor: "FieldEditor", value: object, is_text: bool) -> None:
            super().__init__()
            self.editor = editor
            self.value = value
            self.is_text = is_text

    def __init__(self, scope: str, field: Field, value: object, *, resolved: object = None,
                 folder_base: Path | None = None, label: str | None = None, id: str | None = None) -> None:
        super().__init__(id=id or f"field-{field.key}")
        self.scope = scope
        self.field = field
        self._value = value
        self._resolved = resolved
        self._folder_base = folder_base
        self._label = label or field.key

    @property
    def key(self) -> str:
        return self.field.key

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self._label, classes="field-name")
            yield self._make_editor()
        yield Static(self.field.doc + (f"  ({self.field.allowed()})" if self.field.choices is None else ""),
                     classes="field-doc", markup=False)
        yield Static("", classes="field-problem", markup=False)

    def _make_editor(self) -> Widget:
        # Checkbox and Select import on first use: the first screen has only a text box.
        from textual.widgets import Checkbox, Select

        f = self.field
        if f.type is bool:
            self._value = bool(self._value if self._value is not None else f.default)
            return Checkbox("", self._value, compact=True, classes="field-editor")
        if f.choices:
            self._value = self._value if self._value in f.choices else (
                self._resolved if self._resolved in f.choices else f.default)
            return Select([(str(c), c) for c in f.choices], value=self._value, allow_blank=False, compact=True,
                          classes="field-editor")
        default = self._resolved if self._resolved is not None else f.default
        placeholder = f"{text_of(default)} (default)" if default not in (None, "") else f.allowed()
        if f.default == AUTO:
            placeholder = f"auto = {text_of(self._resolved)}" if self._resolved not in (None, AUTO) else "auto"
        suggester = FolderSuggester(self._folder_base) if self._folder_base is not None else None
        return Input(text_of(self._value), placeholder=placeholder, compact=True, suggester=suggester,
                     classes="field-editor", select_on_focus=False)

    @property
    def editor(self) -> Widget:
        return self.query_one(".field-editor")

    @property
    def problem_line(self) -> Static:
        return self.query_one(".field-problem", Static)

    def set_value(self, value: object, resolved: object = None) -> None:
        """Show a value without posting an edit (filling the form for another dataset)."""
        ed = self.editor
        if isinstance(ed, Input) and ed.has_focus:
            return  # the user is typing here: their text is the truth, and the state came from it
        if self.kind == "bool":
            self._value = bool(value if value is not None else self.field.default)
        elif self.kind == "choice":
            self._value = value if value in self.field.choices else (
                resolved if resolved in self.field.choices else self.field.default)
        else:
            self._value = text_of(value)
        self._resolved = resolved
        ed.value = self._value  # the Changed this posts equals _value, so it is not taken as an edit

    def show_problems(self, problems: list[Problem]) -> None:
        """Put the config layer's own messages under the field."""
        errors = [p for p in problems if p.is_error]
        shown = errors or problems
        text = "\n".join(f"{p.message}" + (f" — {p.hint}" if p.hint else "") for p in shown)
        self.problem_line.update(text)
        self.set_class(bool(errors), "-error")
        self.set_class(bool(shown) and not errors, "-warning")

    @property
    def kind(self) -> str:
        """bool (a checkbox), choice (a list) or text (a box), from the schema field."""
        return "bool" if self.field.type is bool else "choice" if self.field.choices else "text"

    def on_input_changed(self, event: Message) -> None:
        self._edited(event)

    def on_checkbox_changed(self, event: Message) -> None:
        self._edited(event)

    def on_select_changed(self, event: Message) -> None:
        self._edited(event)

    def _edited(self, event: Message) -> None:
        event.stop()
        value = event.value
        if value == self._current() or (self.kind == "choice" and value not in self.field.choices):
            return  # the form being filled (or a blank list), not the user editing
        self._value = value
        self.post_message(self.Edited(self, value, self.kind == "text"))

    def _current(self) -> object:
        if self.kind == "text":
            return text_of(self._value)
        if self.kind == "bool":
            return bool(self._value if self._value is not None else self.field.default)
        return self._value
