"""Step 7: every problem `floydtui check` would report, the preset as TOML, and the SimpleTuner
JSON it exports; then save, export, launch."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual import on, work
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Static
from textual.worker import get_current_worker

from floydtui.errors import Problem
from floydtui.tui.screens.panes.base import WizardPane

EXPORT_FOLDER = "<export folder>"  # config.json names its multidatabackend.json by the folder it is exported to


class ChecksDone(Message):
    """`run_checks` sections plus the SimpleTuner files, for one version of the preset."""

    def __init__(self, sections: list, simpletuner: dict[str, str], problems: list[Problem]) -> None:
        super().__init__()
        self.sections = sections
        self.simpletuner = simpletuner
        self.problems = problems


def simpletuner_files(preset) -> tuple[dict[str, str], list[Problem]]:
    """The files `floydtui export` would write, by name, as text, and its warnings."""
    from floydtui.config.simpletuner import export_simpletuner

    with tempfile.TemporaryDirectory(prefix="floydtui-review-") as tmp:
        written, warnings = export_simpletuner(preset, tmp)
        files = {p.name: p.read_text(encoding="utf-8") for p in written}
        real = str(Path(tmp).resolve())
    return {name: text.replace(real, EXPORT_FOLDER) for name, text in files.items()}, warnings


class ReviewPane(WizardPane):
    """Problems first (they decide whether it can launch), then the two file views."""

    class Requested(Message):
        """A button asks the screen to save, export or launch (`action`: which)."""

        def __init__(self, action: str) -> None:
            super().__init__()
            self.action = action

    def build(self) -> Iterable[Widget]:
        yield VerticalScroll(
            Horizontal(
                Button("Save  ^s", id="review-save", name="save", variant="primary", compact=True),
                Button("Export  ^e", id="review-export", name="export", compact=True),
                Button("Launch  ^r", id="review-launch", name="launch", variant="success", compact=True),
                id="review-buttons",
            ),
            Static("Checking…", id="review-problems"),
            Horizontal(
                VerticalScroll(Static(id="review-toml"), id="review-toml-box"),
                VerticalScroll(Static(id="review-json"), id="review-json-box"),
                id="review-files",
            ),
            id="review-body",
        )

    @property
    def problems_view(self) -> Static:
        return self.query_one("#review-problems", Static)

    @property
    def toml_view(self) -> Static:
        return self.query_one("#review-toml", Static)

    @property
    def toml_box(self) -> VerticalScroll:
        return self.query_one("#review-toml-box", VerticalScroll)

    @property
    def json_view(self) -> Static:
        return self.query_one("#review-json", Static)

    @property
    def json_box(self) -> VerticalScroll:
        return self.query_one("#review-json-box", VerticalScroll)

    @property
    def save_button(self) -> Button:
        return self.query_one("#review-save", Button)

    @property
    def launch_button(self) -> Button:
        return self.query_one("#review-launch", Button)

    def state_changed(self) -> None:
        from rich.syntax import Syntax

        self.toml_view.update(
            Syntax(self.state.to_toml(), "toml", theme="ansi_dark", word_wrap=True, background_color="default"))
        self.toml_box.border_title = f"Preset TOML ({self.state.source or 'unsaved'})"
        if self.state.preset is None:
            self.show_problems([], self.state.problems)
            self.json_view.update(Text("Fix the errors to see the export.", style="dim"))
        else:
            self.problems_view.update(Text("Checking datasets and memory…", style="dim"))
            wizard = self.wizard
            scans = wizard.scans if wizard.scans_for is self.state.preset else None
            self.run_checks_worker(self.state.preset, scans, frozenset(wizard.unbounded))

    @work(thread=True, exclusive=True, group="review checks", exit_on_error=False)
    def run_checks_worker(self, preset, scans: list | None, unbounded: frozenset) -> None:
        """`floydtui check`'s own sections, off the UI thread: the datasets step's scan when it is for
        this preset, else a scan bounded as the datasets step's is (cancelled by the next edit)."""
        from floydtui.checks import run_checks
        from floydtui.data.discover import ScanCancelled
        from floydtui.data.scan import WIZARD_MAX_FILES, WIZARD_MAX_SECONDS, scan_preset

        worker = get_current_worker()
        if scans is None:
            try:
                scans = scan_preset(preset, max_files=WIZARD_MAX_FILES, max_seconds=WIZARD_MAX_SECONDS,
                                    unbounded=unbounded, should_stop=lambda: worker.is_cancelled)
            except ScanCancelled:
                return
        sections = run_checks(preset, scans)
        files, export_warnings = simpletuner_files(preset)
        self.post_message(ChecksDone(sections, files, export_warnings))

    def worker_failed(self, worker, error) -> None:
        """The check crashed: say so where "Checking…" was, so the step never waits forever."""
        self.problems_view.update(
            Text(f"The check failed ({type(error).__name__}: {error}); edit the preset to check again, "
                 "or run `floydtui check PRESET` for the full message.", style="red"))

    @on(ChecksDone)
    def _checked(self, event: ChecksDone) -> None:
        from rich.syntax import Syntax

        self.show_problems(event.sections, event.problems)
        text = Text()
        for name, body in event.simpletuner.items():
            text.append(f"── {name}\n", style="bold")
            text.append_text(Syntax(body, "json", theme="ansi_dark", word_wrap=True,
                                    background_color="default").highlight(body))
        self.json_view.update(text)
        self.json_box.border_title = "SimpleTuner export (floydtui export)"

    def show_problems(self, sections: list, config_problems: list[Problem]) -> None:
        problems = list(config_problems) + [p for s in sections for p in s.problems]
        errors = [p for p in problems if p.is_error]
        text = Text()
        if errors:
            text.append(f" {len(errors)} error(s) ", style="bold reverse red")
            text.append("  Fix them to save or launch; each is also shown at its field.\n")
        else:
            text.append(" trainable ", style="bold reverse green")
            text.append(f"  {len(problems)} warning(s)\n" if problems else "  no problems found\n")
        for s in sections:
            for line in s.lines:
                text.append(f"  [{s.title}] {line}\n", style="dim")
        for p in problems:
            text.append(f"{p.severity}: ", style="bold red" if p.is_error else "bold yellow")
            text.append(f"{p.where}: " if p.where else "", style="dim")
            text.append(p.message + "\n")
            if p.hint:
                text.append(f"   fix: {p.hint}\n", style="dim")
        self.problems_view.update(text)
        self.launch_button.disabled = bool(errors)
        self.save_button.disabled = self.state.preset is None

    @on(Button.Pressed, "#review-buttons Button")
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.Requested(str(event.button.name)))
