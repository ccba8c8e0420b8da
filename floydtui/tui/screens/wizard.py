"""The wizard: seven steps over one `WizardState`; save, export and launch from any step."""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.message import Message
from textual.screen import Screen
from textual.worker import get_current_worker
from textual.widgets import ContentSwitcher, Static

from floydtui.errors import FloydError, Problem
from floydtui.tui.screens.panes.base import PresetChanged, WizardPane
from floydtui.tui.screens.panes.flavour import FlavourPane
from floydtui.tui.state import WizardState
from floydtui.tui.text import fit_path
from floydtui.tui.workers import WorkerFailures
from floydtui.tui.widgets.keybar import KeyBar
from floydtui.tui.widgets.stepbar import StepBar

if TYPE_CHECKING:  # the step modules load when first shown; their messages reach on_* below by name
    from floydtui.tui.screens.panes.datasets import DatasetsPane
    from floydtui.tui.screens.panes.hardware import HardwareReport
    from floydtui.tui.screens.panes.review import ReviewPane

# (step, title, "module:class"): a step's module is imported when the step is first shown.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("flavour", "Flavour", "flavour:FlavourPane"),
    ("hardware", "Hardware", "hardware:HardwarePane"),
    ("training", "Training", "forms:TrainingPane"),
    ("validation", "Validation", "forms:ValidationPane"),
    ("datasets", "Datasets", "datasets:DatasetsPane"),
    ("embeds", "Text embeds", "embeds:EmbedsPane"),
    ("review", "Review", "review:ReviewPane"),
)
SCAN_DELAY_S = 0.4  # edits settle before the datasets are scanned again
FOLDER_SETTLE_S = 0.8  # a folder path being typed: each prefix that exists is a folder too

def pane_class(step: str) -> type[WizardPane]:
    """A step's pane class, its module imported on first use."""
    module, cls = dict((s, m) for s, _, m in STEPS)[step].split(":")
    return getattr(importlib.import_module(f"floydtui.tui.screens.panes.{module}"), cls)


def pane_of(problem: Problem) -> str:
    """Which step shows a problem at its field: the one whose pane declares the key, in the problem's
    scope where two panes do (a dataset's resolution, [training]'s); else a dataset's other problems
    on the datasets step, the rest on review."""
    in_dataset = "[[datasets]]" in problem.where
    panes = [(step, pane_class(step)) for step, _, _ in STEPS]
    in_scope = [step for step, pane in panes if problem.key in (pane.DATASET_KEYS if in_dataset else pane.KEYS)]
    anywhere = [step for step, pane in panes if problem.key in pane.KEYS + pane.DATASET_KEYS]
    return next(iter(in_scope + anywhere), "datasets" if in_dataset else "review")


class ScanStarted(Message):
    """A scan of these folders began (for one version of the preset)."""

    def __init__(self, preset: Any, folders: list[Path]) -> None:
        super().__init__()
        self.preset = preset
        self.folders = folders


class ScanDone(Message):
    """The datasets' scan for one version of the preset."""

    def __init__(self, preset: Any, scans: list | None, problems: list[Problem]) -> None:
        super().__init__()
        self.preset = preset
        self.scans = scans
        self.problems = problems


class WizardScreen(WorkerFailures, Screen):
    """Flavour, hardware, training, validation, datasets, text embeds, review."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("ctrl+n", "step(1)", "Next step", priority=True),
        Binding("ctrl+p", "step(-1)", "Back", priority=True),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+e", "export", "Export", priority=True),
        Binding("ctrl+r", "launch", "Run", priority=True),
        Binding("ctrl+o", "runs", "Runs", priority=True),
    ]

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self.state = state
        self.scans: list | None = None  # the latest scan_preset result, shared by the panes
        self.scans_for: Any = None  # the preset that scan was made for
        self.scanning: Any = None  # the preset being scanned now (None: no scan running)
        self.unbounded: set[Path] = set()  # folders the user asked to scan past the bound
        self.hardware: HardwareReport | None = None  # the hardware step's latest report
        self._scan_timer = None

    @property
    def steps(self) -> StepBar:
        return self.query_one(StepBar)

    @property
    def title_bar(self) -> Static:
        return self.query_one("#title-bar", Static)

    @property
    def switcher(self) -> ContentSwitcher:
        return self.query_one(ContentSwitcher)

    @property
    def current_step(self) -> str:
        return self.steps.current

    @property
    def xformers(self) -> tuple[bool, str] | None:
        return self.hardware.xformers if self.hardware is not None else None

    def pane(self, step: str) -> WizardPane:
        """A step's pane, built (and its module imported) on first use."""
        found = self.query(f"#pane-{step}")
        if found:
            return found.first(WizardPane)
        pane = pane_class(step)(id=f"pane-{step}")
        self.slot(step).mount(pane)
        return pane

    def slot(self, step: str) -> Container:
        """Where a step's pane is mounted."""
        return self.query_one(f"#slot-{step}", Container)

    def built_panes(self) -> list[WizardPane]:
        return list(self.query(WizardPane))

    def compose(self) -> ComposeResult:
        yield Static(id="title-bar")
        yield StepBar([(s, t) for s, t, _ in STEPS], "flavour")
        with ContentSwitcher(initial="slot-flavour"):
            for step, _, _ in STEPS:
                with Container(id=f"slot-{step}", classes="step-slot"):
                    if step == "flavour":
                        yield FlavourPane(id="pane-flavour")
        yield KeyBar()

    def on_mount(self) -> None:
        # The title now; the tabs' error counts once the first screen is drawn: routing a problem to its step
        # reads every pane's keys, which imports the six panes not shown yet (and the hardware estimator).
        # The flavour step's pane takes the cursor when it mounts.
        self.update_title()
        self.call_after_refresh(self.update_chrome)

    def go(self, step: str) -> None:
        """Show a step: build its pane on first use, and put the cursor in it."""
        self.steps.current = step
        self.switcher.current = f"slot-{step}"
        pane = self.pane(step)
        if step in ("datasets", "embeds") and self.scans is None and self.scanning is None:
            self.scan_now()
        if pane.is_mounted:  # a pane built just now takes the cursor once mounted (WizardPane.on_mount)
            self.call_after_refresh(pane.take_cursor)

    # ---- changes ----------------------------------------------------------
    @on(PresetChanged)
    def preset_changed(self, event: PresetChanged) -> None:
        event.stop()
        self.cancel_scan()  # the next edit cancels the running scan: its preset is gone
        if event.key == "instance_data_dir":
            index = event.source.dataset_index if event.source is not None else None
            self.schedule_scan(FOLDER_SETTLE_S, folder_index=index)
        else:
            self.schedule_scan()
        for pane in self.built_panes():
            pane.state_changed()
        self.update_chrome()

    def on_resize(self) -> None:
        self.update_title()  # the path is fitted to the width

    def update_chrome(self) -> None:
        """The title bar and each tab's count of errors at its fields."""
        self.update_title()
        self.steps.errors = dict(Counter(pane_of(p) for p in self.state.errors))

    def update_title(self) -> None:
        """The flavour, the preset's path fitted to the width, and whether it is modified."""
        modified = "  ● modified" if self.state.dirty else ""
        head = f"  {self.state.flavour}  ·  "
        room = self.app.size.width - len(" floydtui ") - len(head) - len(modified) - 1
        source = fit_path(str(self.state.source), room) if self.state.source else "new preset (unsaved)"
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(" floydtui ", style="bold reverse")
        title.append(head + source)
        title.append(modified, style="yellow")
        self.title_bar.update(title)

    # ---- the datasets' scan ------------------------------------------------
    def schedule_scan(self, delay: float = SCAN_DELAY_S, folder_index: int | None = None) -> None:
        """Scan once the edits pause; with `folder_index` (a folder path being typed in that dataset),
        only if the path names a folder: not at each prefix on the way that is not one."""
        if self._scan_timer is not None:
            self._scan_timer.stop()
        folder = self.state.dataset_folder(folder_index) if folder_index is not None else None
        if folder_index is not None and (folder is None or not folder.is_dir()):
            return
        self._scan_timer = self.set_timer(delay, self.scan_now)

    def scan_now(self) -> None:
        """Scan the current preset now, unless it is being or has been scanned (Enter, leaving the field)."""
        preset = self.state.preset
        if self._scan_timer is not None:
            self._scan_timer.stop()
        if preset is not None and (preset is self.scanning or preset is self.scans_for):
            return
        self.cancel_scan()
        self.scanning = preset
        self.scan(preset, frozenset(self.unbounded))
        self.refresh_scan_panes()

    def scan_past_bound(self, folder: Path) -> None:
        """The user says this folder is the dataset: scan all of it."""
        self.unbounded.add(folder)
        self.scans_for = None
        self.scan_now()

    def cancel_scan(self) -> None:
        self.workers.cancel_group(self, "scan")
        self.scanning = None

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def scan(self, preset, unbounded: frozenset) -> None:
        """The datasets' scan (headers only, cached by the data layer), off the UI thread.

        Each folder's walk stops at the data layer's bound unless the user asked for all of
        it; an edit cancels the worker, and the data layer stops at its next check."""
        if preset is None:
            self.post_message(ScanDone(None, None, []))
            return
        from floydtui.data.discover import ScanCancelled
        from floydtui.data.pipeline import DatasetSettings
        from floydtui.data.scan import WIZARD_MAX_FILES, WIZARD_MAX_SECONDS, scan_preset

        worker = get_current_worker()
        folders = [DatasetSettings.from_preset(preset, ds).folder for ds in preset.image_datasets]
        self.post_message(ScanStarted(preset, folders))
        try:
            scans = scan_preset(preset, max_files=WIZARD_MAX_FILES, max_seconds=WIZARD_MAX_SECONDS,
                                unbounded=unbounded, should_stop=lambda: worker.is_cancelled)
        except ScanCancelled:
            return
        except FloydError as e:
            self.post_message(ScanDone(preset, [], list(e.problems)))
            return
        if not worker.is_cancelled:
            self.post_message(ScanDone(preset, scans, []))

    @on(ScanDone)
    def _scanned(self, event: ScanDone) -> None:
        if event.preset is not self.state.preset:
            return  # an older version's scan that finished before its cancel was seen
        self.scans, self.scans_for, self.scanning = event.scans, event.preset, None
        for p in event.problems:
            self.notify(p.message + (f"\nfix: {p.hint}" if p.hint else ""), severity="error")
        self.refresh_scan_panes()

    def refresh_scan_panes(self) -> None:
        for pane in self.built_panes():
            if pane.id in ("pane-datasets", "pane-embeds") and pane.is_mounted:  # a new pane refreshes on mount
                pane.state_changed()

    def worker_failed(self, worker, error) -> None:
        """A scan that crashed is not running any more: the panes stop saying "scanning…"."""
        if worker.group == "scan":
            self.scanning = None
            self.refresh_scan_panes()

    @on(StepBar.Chosen)
    def _step_clicked(self, event: StepBar.Chosen) -> None:
        self.go(event.step)

    # ---- what the panes send up -------------------------------------------
    def on_hardware_report(self, report: HardwareReport) -> None:
        """The hardware pane's latest report; the training and embeds panes read it."""
        self.hardware = report
        for pane in self.built_panes():
            if pane.id in ("pane-training", "pane-embeds"):
                pane.state_changed()

    def on_datasets_pane_folder_settled(self, event: DatasetsPane.FolderSettled) -> None:
        """A dataset's folder was entered or left: scan it now."""
        event.stop()
        self.scan_now()

    def on_datasets_pane_scan_all(self, event: DatasetsPane.ScanAll) -> None:
        """The user says a bounded folder is the dataset."""
        event.stop()
        self.scan_past_bound(event.folder)

    def on_review_pane_requested(self, event: ReviewPane.Requested) -> None:
        """Save, export or launch from the review step's buttons."""
        event.stop()
        {"save": self.action_save, "export": self.action_export, "launch": self.action_launch}[event.action]()

    # ---- actions ----------------------------------------------------------
    def action_step(self, delta: int) -> None:
        """Go to the next (1) or previous (-1) step."""
        order = [s for s, _, _ in STEPS]
        self.go(order[(order.index(self.current_step) + delta) % len(order)])

    def action_save(self, then=None) -> None:
        """Save where the preset came from, else ask where; `then(path)` runs after a save."""
        if self.state.preset is None:
            self.refuse("save")
            return
        if self.state.source is not None:
            self._save_to(self.state.source, then)
            return

        def saved(path: Path | None) -> None:
            if path is not None and then is not None:
                then(path)

        from floydtui.tui.screens.dialogs import PathDialog

        self.app.push_screen(PathDialog("Save the preset as", self.state.default_save_path(), self._save_at),
                             saved)

    def _save_to(self, path: Path, then=None) -> None:
        try:
            saved = self._save_at(path)
        except FloydError as e:
            self.show_problems(e.problems)
            return
        if then is not None:
            then(saved)

    def _save_at(self, path: Path) -> Path:
        saved = self.state.save(path)
        self.notify(f"Saved {saved}", timeout=3)
        self.post_message(PresetChanged())
        return saved

    def action_export(self) -> None:
        """SimpleTuner's config.json + multidatabackend.json, into a folder."""
        if self.state.preset is None:
            self.refuse("export")
            return
        from floydtui.config.simpletuner import export_simpletuner

        preset = self.state.preset
        default = (self.state.source.with_suffix("") if self.state.source else Path.cwd() / "simpletuner")
        default = default.parent / f"{default.name}-simpletuner"

        def export(folder: Path) -> Path:
            written, warnings = export_simpletuner(preset, folder)
            self.notify("Exported " + ", ".join(p.name for p in written) + f" to {folder}", timeout=4)
            for w in warnings:  # what SimpleTuner 4.10.1 cannot say, as `floydtui export` prints it
                self.notify(f"{w.message}" + (f" ({w.hint})" if w.hint else ""), severity="warning", timeout=8)
            return folder

        from floydtui.tui.screens.dialogs import PathDialog

        self.app.push_screen(PathDialog("Export for SimpleTuner into the folder", default, export, "Export"))

    def action_launch(self) -> None:
        """Save, then start `floydtui run PRESET --json` and open the monitor on its run directory."""
        if self.state.errors:
            self.refuse("launch")
            return
        self.action_save(then=lambda path: self.app.launch(path, self.state.preset.output_dir))

    def action_runs(self) -> None:
        """The run list: the runs under the output folders (the preset's output_dir's folder, and output/)."""
        from floydtui.tui.screens.runs import RunsScreen

        roots = [self.state.base_dir / "output"]
        if self.state.preset is not None:
            roots.insert(0, self.state.preset.output_dir.parent)
        self.app.push_screen(RunsScreen(roots))

    def refuse(self, what: str) -> None:
        self.show_problems(self.state.errors, f"Cannot {what} yet")

    def show_problems(self, problems: list[Problem], head: str = "Not saved") -> None:
        first = problems[0] if problems else None
        detail = f"{first.message}" + (f"\nfix: {first.hint}" if first and first.hint else "") if first else ""
        more = f" (and {len(problems) - 1} more: see Review)" if len(problems) > 1 else ""
        self.notify(f"{head}: {detail}{more}", severity="error", timeout=6)
        if first is not None:
            self.go(pane_of(first))

    def request_quit(self) -> None:
        """Quit; ask first when there are unsaved changes."""
        if not self.state.dirty:
            self.app.exit()
            return

        def answered(answer: str | None) -> None:
            if answer == "quit":
                self.app.exit()
            elif answer == "save":
                self.action_save(then=lambda _path: self.app.exit())

        from floydtui.tui.screens.dialogs import ChoiceDialog

        self.app.push_screen(ChoiceDialog("The preset has unsaved changes.",
                                          [("save", "s", "Save and quit"), ("quit", "d", "Discard"),
                                           ("cancel", "escape", "Cancel")]), answered)
