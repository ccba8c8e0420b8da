"""The monitor: a run seen through its run directory's events.jsonl (DESIGN.md sections 6-7).

A worker polls the reader and posts `EventsArrived`; the handler folds the events into a
`RunState` and redraws what changed. When the monitor started the run, another worker
starts the child process and waits for it. Closing asks whether to stop the run (with a
checkpoint) or leave it running for `floydtui watch`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ProgressBar, RichLog, Static
from textual.worker import get_current_worker

from floydtui.tui.runproc import AttachedRun
from floydtui.tui.runstate import LogLine, RunState, format_duration
from floydtui.tui.screens.dialogs import ChoiceDialog
from floydtui.tui.text import fit_path
from floydtui.tui.widgets.keybar import KeyBar
from floydtui.tui.workers import WorkerFailures
from floydtui.tui.widgets.loss_plot import LossPlot
from floydtui.tui.widgets.validation_view import ValidationView

POLL_S = 0.25  # how often events.jsonl is read; the trainer flushes each line


class EventsArrived(Message):
    def __init__(self, events: list[dict[str, Any]]) -> None:
        super().__init__()
        self.events = events


class RunStarted(Message):
    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid


class RunExited(Message):
    def __init__(self, returncode: int, log_tail: str = "") -> None:
        super().__init__()
        self.returncode = returncode
        self.log_tail = log_tail  # the child's last stderr lines, read by the worker when it failed


class MonitorScreen(WorkerFailures, Screen):
    """Stats, embed-cache progress, the loss plot, validation images, the log."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("l", "toggle_log", "Log axis"),
        Binding("left_square_bracket", "page(-1)", "Earlier"),
        Binding("right_square_bracket", "page(1)", "Later"),
        Binding("v", "validate_now", "Validate now"),
        Binding("c", "compare", "Compare"),
        Binding("s", "stop", "Stop"),
        Binding("q", "app.quit", "Quit", show=False),  # ^q Quit is on the bar already
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, run_dir: Path, reader: Any, process: Any = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.reader = reader
        self.process = process
        self.state = RunState(self.run_dir)
        self.exit_code: int | None = None
        self.stopping = False
        self.quit_when_ended = False
        self._reading = threading.Lock()  # one poll at a time, each posted before the next reads

    # ---- widgets -------------------------------------------------------------
    @property
    def plot(self) -> LossPlot:
        return self.query_one(LossPlot)

    @property
    def validation_view(self) -> ValidationView:
        return self.query_one(ValidationView)

    @property
    def log_view(self) -> RichLog:
        return self.query_one("#run-log", RichLog)

    @property
    def title_line(self) -> Static:
        return self.query_one("#run-title", Static)

    @property
    def stats_view(self) -> Static:
        return self.query_one("#run-stats", Static)

    @property
    def embed_row(self) -> Horizontal:
        return self.query_one("#embed-row", Horizontal)

    @property
    def embed_bar(self) -> ProgressBar:
        return self.query_one("#embed-bar", ProgressBar)

    @property
    def embed_rate(self) -> Static:
        return self.query_one("#embed-rate", Static)

    @property
    def live(self) -> bool:
        """A run that is going on: our child alive, or events that started and have not ended."""
        if self.process is not None:
            return self.process.alive
        return self.state.running

    def compose(self) -> ComposeResult:
        yield Static(id="run-title")
        yield Static(id="run-stats")
        with Horizontal(id="embed-row"):
            yield Static("embed cache", id="embed-label")
            yield ProgressBar(id="embed-bar", show_eta=False)
            yield Static(id="embed-rate")
        with Horizontal(id="run-main"):
            yield LossPlot(self.state.losses, id="loss-plot")
            with Vertical(id="val-box"):
                yield ValidationView(id="validation")
        yield RichLog(id="run-log", wrap=True, markup=False, max_lines=1000)
        yield KeyBar()

    def on_mount(self) -> None:
        self.embed_row.display = False
        self.update_stats()
        if self.process is not None:
            self.start_run()
        self.follow_events()

    # ---- workers ------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="events", exit_on_error=False)
    def follow_events(self) -> None:
        """Poll the reader and post what it returns; never touches widgets."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            self.read_events()
            time.sleep(POLL_S)

    def read_events(self) -> None:
        """One poll of the reader, posted; under a lock, so two workers never interleave or reorder events."""
        with self._reading:
            events = self.reader.poll()
            if events:
                self.post_message(EventsArrived(events))

    @work(thread=True, exclusive=True, group="process", exit_on_error=False)
    def start_run(self) -> None:
        """Start the child and watch for its end; closing the app ends this worker, never the run."""
        worker = get_current_worker()
        self.post_message(RunStarted(self.process.start()))
        while not worker.is_cancelled:
            code = self.process.poll()
            if code is not None:
                self.read_events()  # the events the run wrote just before exiting land first
                tail = self.process.log_tail() if code not in (0, 130) else ""
                self.post_message(RunExited(code, tail))
                return
            time.sleep(POLL_S)

    # ---- messages ----------------------------------------------------------------
    @on(EventsArrived)
    def events_arrived(self, event: EventsArrived) -> None:
        changed = self.state.apply(event.events)
        if "loss" in changed:
            self.plot.mark_dirty()
        if changed & {"stats", "loss", "progress"}:
            self.update_stats()
        if "progress" in changed:
            self.update_progress()
        if "validation" in changed:
            self.validation_view.update_sets(self.state.validations)
            for screen in self.app.screen_stack:
                if hasattr(screen, "update_sets"):  # the comparison grid, open over this monitor
                    screen.update_sets(self.state.validations)
        if "log" in changed:
            self.update_log()
        if "end" in changed and self.quit_when_ended:
            self.app.exit()

    @on(RunStarted)
    def _run_started(self, event: RunStarted) -> None:
        self.write_log(LogLine(time.time(), "info", f"started pid {event.pid}: {' '.join(self.process.command)}"))

    @on(RunExited)
    def _run_exited(self, event: RunExited) -> None:
        self.exit_code = event.returncode
        if event.returncode not in (0, 130) and self.state.status in ("", "completed"):
            self.write_log(LogLine(time.time(), "error", f"floydtui run exited with {event.returncode}",
                                   event.log_tail or f"see {self.process.log_path}"))
            self.notify(f"The run exited with {event.returncode}; its last output is in the log pane.",
                        severity="error", timeout=10)
        self.update_stats()
        if self.quit_when_ended:
            self.app.exit()

    # ---- drawing ------------------------------------------------------------------------
    def on_resize(self) -> None:
        self.update_stats()  # the title's path is fitted to the width

    def update_stats(self) -> None:
        s = self.state
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(" floydtui monitor ", style="bold reverse")
        head = f"  {s.run_id or 'waiting for the run to start'}  ·  "
        room = self.app.size.width - len(" floydtui monitor ") - len(head) - 1
        title.append(head + fit_path(str(self.run_dir), room))
        self.title_line.update(title)
        stats = Text()
        status = self._status_text()
        stats.append(f" {status[0]} ", style=status[1] + " reverse")
        if s.flavour:
            stats.append(f"  {s.flavour}")
            stats.append(f" · {s.model_name}", style="bold" if s.builtin else "")
            stats.append(f" on {s.device}" + (f" x{s.world_size}" if s.world_size > 1 else ""))
        stats.append(f"  phase {s.phase or '—'}\n")
        total = f"/{s.total_steps:,}" if s.total_steps else ""
        stats.append(f" step {s.step:,}{total}   epoch {s.epoch}   ")
        stats.append(f"loss {s.loss:.4f}   " if s.loss is not None else "loss —   ")
        stats.append(f"lr {s.lr:.2e}   " if s.lr is not None else "lr —   ")
        stats.append(f"{s.samples_per_s:.1f} samples/s   " if s.samples_per_s is not None else "")
        stats.append(f"ETA {format_duration(s.eta_s)}")
        if s.last_checkpoint:
            stats.append(f"   checkpoint {Path(s.last_checkpoint).name}", style="dim")
        self.stats_view.update(stats)

    def _status_text(self) -> tuple[str, str]:
        s = self.state
        if s.status == "completed":
            return "COMPLETED", "green"
        if s.status == "stopped":
            return "STOPPED", "yellow"
        if s.status == "failed" or (self.exit_code not in (None, 0, 130)):
            return "FAILED", "red"
        if self.stopping:
            return "STOPPING", "yellow"
        if s.running or (self.process is not None and self.process.alive):
            return "RUNNING", "blue"
        return "WAITING", "dim"

    def update_progress(self) -> None:
        prog = self.state.progress.get("embed_cache")
        row = self.embed_row
        if prog is None:
            return
        row.display = True
        bar = self.embed_bar
        bar.update(total=max(prog.total, 1), progress=prog.done)
        eta = "done" if prog.done >= prog.total else f"ETA {format_duration(prog.eta_s)}"
        self.embed_rate.update(
            f" {prog.done:,}/{prog.total:,} prompts · {prog.rate:.1f}/s · {eta}")

    _logged = 0

    def update_log(self) -> None:
        new = self.state.new_logs(self._logged)
        for line in new:
            self.write_log(line)
        # The newest few also pop up; a replayed history of many would bury the screen.
        for line in [ln for ln in new if ln.level in ("warning", "error")][-3:]:
            self.notify(line.message + (f"\nfix: {line.hint}" if line.hint else ""),
                        severity=line.level, timeout=8 if line.level == "warning" else 15)
        self._logged = self.state.log_total

    def write_log(self, line: LogLine) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(line.t))
        style = {"warning": "yellow", "error": "bold red"}.get(line.level, "")
        text = Text(f"{stamp} ", style="dim")
        text.append(f"{line.level}: " if line.level != "info" else "", style=style)
        text.append(line.message, style=style)
        if line.hint:
            text.append(f"\n         fix: {line.hint}", style="dim")
        self.log_view.write(text)

    # ---- actions --------------------------------------------------------------------------
    def action_toggle_log(self) -> None:
        """Switch the loss axis between linear and log."""
        self.plot.log_scale = not self.plot.log_scale

    def action_page(self, delta: int) -> None:
        self.validation_view.page(delta)

    @property
    def stoppable(self) -> Any:
        """What `stop` signals: our child, or the attached run's process on this machine."""
        if self.process is not None:
            return self.process if self.process.alive else None
        if self.state.running and self.state.pid:
            attached = AttachedRun(self.state.pid, self.state.host)
            return attached if attached.alive else None
        return None

    def action_back(self) -> None:
        """Back to the run list, for a run opened from it (a run this monitor started stays in view)."""
        if self.process is None and len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_validate_now(self) -> None:
        """Ask the run to validate after its current step, through a request file in the run directory."""
        if not self.live:
            self.notify("The run is not running: there is nothing to validate now.", timeout=4)
            return
        from floydtui.runs import request_validation

        try:
            request_validation(self.run_dir)
        except OSError as e:
            self.notify(f"Cannot write the request into {self.run_dir}: {e.strerror or e}", severity="error",
                        timeout=8)
            return
        self.write_log(LogLine(time.time(), "info", "validation requested: the run validates after its current step"))

    def action_compare(self) -> None:
        """Validation images across steps: prompts as rows, steps as columns."""
        if not self.state.validations:
            self.notify("No validation images yet.", timeout=3)
            return
        from floydtui.tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(self.state.validations))

    def action_stop(self) -> None:
        """Stop the run: SIGINT, the trainer saves a checkpoint and exits."""
        target = self.stoppable
        if target is None:
            self.notify("The run is not running on this machine; stop it where it runs (Ctrl+C there).",
                        timeout=5)
            return
        self.stopping = True
        target.stop()
        self.write_log(LogLine(time.time(), "warning", "stop requested: saving a checkpoint, then exiting"))
        self.update_stats()

    def request_quit(self) -> None:
        """Quit; for a live run, ask whether to stop it or leave it running."""
        if not self.live:
            self.app.quit_past(self)
            return
        watch = f"floydtui watch {self.run_dir}"
        if self.stoppable is not None:
            choices = [("leave", "l", "Leave it running"), ("stop", "s", "Stop it (checkpoint)"),
                       ("cancel", "escape", "Cancel")]
            detail = f"Leave it: it goes on; `{watch}` shows it again.\nStop it: it saves a checkpoint first."
        else:
            choices = [("leave", "l", "Leave it running"), ("cancel", "escape", "Cancel")]
            detail = f"It goes on after this window closes; `{watch}` shows it again."

        def answered(answer: str | None) -> None:
            if answer == "leave":
                self.app.quit_past(self)
            elif answer == "stop":
                self.quit_when_ended = True
                self.action_stop()

        self.app.push_screen(ChoiceDialog("The run is still going.", choices, detail), answered)
