"""The run list: the run directories under the output folders, newest first; Enter opens one in the monitor.

The folders are listed by `floydtui.runs` (the same code as `floydtui runs`) in a worker.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from floydtui.tui.text import fit_path
from floydtui.tui.widgets.keybar import KeyBar
from floydtui.tui.workers import WorkerFailures

STATUS_STYLE = {"completed": "green", "failed": "red", "stopped": "yellow", "running": "blue",
                "interrupted": "yellow", "starting": "dim"}


class RunsFound(Message):
    def __init__(self, runs: list) -> None:
        super().__init__()
        self.runs = runs


class RunsScreen(WorkerFailures, Screen):
    """Status, step, last loss, start time and folder of each run under `roots`."""

    BINDINGS = [
        Binding("enter", "open", "Open in the monitor", show=False),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, roots: list[Path]) -> None:
        super().__init__()
        self.roots = list(dict.fromkeys(Path(r) for r in roots))
        self.runs: list = []

    @property
    def table(self) -> DataTable:
        return self.query_one("#runs-table", DataTable)

    @property
    def title_line(self) -> Static:
        return self.query_one("#runs-title", Static)

    @property
    def note(self) -> Static:
        return self.query_one("#runs-note", Static)

    def compose(self) -> ComposeResult:
        yield Static(id="runs-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-note", classes="form-note")
        yield KeyBar()

    def on_mount(self) -> None:
        self.table.add_columns("status", "step", "loss", "started", "folder")
        self.action_refresh()

    def on_resize(self) -> None:
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(" Runs ", style="bold reverse")
        room = (self.app.size.width - 16) // len(self.roots)
        title.append("  under " + ", ".join(fit_path(str(r), room) for r in self.roots))
        self.title_line.update(title)

    def action_refresh(self) -> None:
        self.note.update("Looking for run directories…")
        self.find(self.roots)

    @work(thread=True, exclusive=True, group="run list", exit_on_error=False)
    def find(self, roots: list[Path]) -> None:
        """List the runs off the UI thread (it reads each run's events.jsonl)."""
        from floydtui.runs import find_runs

        runs = [run for root in roots if root.is_dir() for run in find_runs(root)]
        self.post_message(RunsFound(sorted(runs, key=lambda r: r.started or 0.0, reverse=True)))

    @on(RunsFound)
    def _found(self, event: RunsFound) -> None:
        self.runs = event.runs
        self.table.clear()
        for run in self.runs:
            step = f"{run.step:,}/{run.total_steps:,}" if run.total_steps else f"{run.step:,}"
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)) if run.started else "—"
            self.table.add_row(Text(run.status, style=STATUS_STYLE.get(run.status, "")), step,
                               f"{run.loss:.4f}" if run.loss is not None else "—", started, self._shown(run.path))
        note = self.note
        if self.runs:
            note.update("Enter opens the run in the monitor; Escape goes back.")
            self.table.focus()
        else:
            note.update("No run directories (folders with events.jsonl) here yet: launch one from the wizard "
                        "(ctrl+r), or run `floydtui run PRESET`.")

    def _shown(self, path: Path) -> str:
        for root in self.roots:
            try:
                return str(path.relative_to(root)) or "."
            except ValueError:
                continue
        return str(path)

    @on(DataTable.RowSelected, "#runs-table")
    def action_open(self) -> None:
        """The run under the cursor, in the monitor (Escape comes back here)."""
        row = self.table.cursor_row
        if not self.runs or not 0 <= row < len(self.runs):
            return
        self.app.push_screen(self.app.monitor_screen(self.runs[row].path))

    def worker_failed(self, worker, error) -> None:
        self.note.update(Text("Could not list the runs: see the message.", style="red"))
