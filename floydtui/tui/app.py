"""The app: the wizard or the monitor as its first screen, built by `create_app`.

The commands, the tests and the screenshot script all build it through the factory. The
monitor, the plot and Pillow load only when a run is shown, so the wizard's first screen
appears about as fast as a bare Textual app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import events
from textual.app import App
from textual.binding import Binding

from floydtui.tui.state import WizardState

MIN_SIZE = (70, 20)  # below this the forms and the monitor cannot lay out; say so instead


class FloydApp(App):
    """floydtui's TUI: `state` opens the wizard; `run_dir` (with `reader`) opens the monitor."""

    TITLE = "floydtui"
    # Every screen's styles load with the app, so the first frame is drawn already styled.
    CSS_PATH = ["app.tcss", "screens/wizard.tcss", "screens/monitor.tcss"]
    ENABLE_COMMAND_PALETTE = False  # ctrl+p is "back" in the wizard; every action has its own key
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(self, state: WizardState | None = None, run_dir: Path | None = None, reader: Any = None,
                 process: Any = None) -> None:
        super().__init__()
        self.state = state
        self.run_dir = run_dir
        self.reader = reader
        self.process = process

    def get_default_screen(self):
        """The first screen itself, rather than a blank one with it pushed on top."""
        if self.run_dir is not None:
            return self.monitor_screen(self.run_dir, self.reader, self.process)
        from floydtui.tui.screens.wizard import WizardScreen

        return WizardScreen(self.state or WizardState())

    def on_mount(self) -> None:
        self.check_size(self.size.width, self.size.height)

    def monitor_screen(self, run_dir: Path, reader: Any = None, process: Any = None):
        """The monitor on a run directory; the events reader defaults to its events.jsonl."""
        from floydtui.events import EventReader
        from floydtui.tui.screens.monitor import MonitorScreen

        return MonitorScreen(run_dir, reader or EventReader(run_dir / "events.jsonl"), process)

    def launch(self, preset_path: Path, run_dir: Path) -> None:
        """Start `floydtui run PRESET --json` and show the monitor on its run directory."""
        from floydtui.tui.runproc import RunProcess

        self.push_screen(self.monitor_screen(run_dir, process=RunProcess(preset_path, run_dir)))

    def on_resize(self, event: events.Resize) -> None:
        self.check_size(event.size.width, event.size.height)

    def check_size(self, width: int, height: int) -> None:
        """Cover the app with a message while the terminal is too small; uncover it after."""
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        top = self.screen_stack[-1] if self.screen_stack else None
        if not small and type(top).__name__ != "TooSmallScreen":
            return  # the usual case, decided without importing the dialogs
        from floydtui.tui.screens.dialogs import TooSmallScreen

        if small and not isinstance(top, TooSmallScreen):
            self.push_screen(TooSmallScreen(MIN_SIZE))
        elif small and isinstance(top, TooSmallScreen):
            top.show_size(width, height)
        elif not small and isinstance(top, TooSmallScreen):
            self.pop_screen()

    async def action_quit(self) -> None:
        """Quitting asks the screens first, top down: a run that is still going, unsaved changes."""
        for screen in reversed(self.screen_stack):
            request = getattr(screen, "request_quit", None)
            if request is not None:
                request()
                return
        self.exit()

    def quit_past(self, screen) -> None:
        """`screen` agrees to quit: the screens under it are asked next (the wizard's unsaved changes)."""
        stack = self.screen_stack
        for below in reversed(stack[:stack.index(screen)] if screen in stack else []):
            request = getattr(below, "request_quit", None)
            if request is not None:
                request()
                return
        self.exit()


def create_app(preset: str | Path | None = None, run_dir: str | Path | None = None, reader: Any = None,
               process: Any = None) -> FloydApp:
    """The app for `floydtui [PRESET]` (wizard) or `floydtui watch RUN_DIR` (monitor).

    `reader` replaces the events.jsonl reader (tests script it); `process` is a RunProcess
    the monitor starts and can stop."""
    if run_dir is not None:
        return FloydApp(run_dir=Path(run_dir).resolve(), reader=reader, process=process)
    state = WizardState.open(preset) if preset else WizardState()
    return FloydApp(state=state)
