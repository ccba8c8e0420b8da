"""The wizard: seven steps over one `WizardState`; save, export and launch from any step."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Static

from floydtui.errors import FloydError, Problem
from floydtui.tui.screens.panes.base import PresetChanged, WizardPane
from floydtui.tui.screens.panes.flavour import FlavourPane
from floydtui.tui.state import WizardState
from floydtui.tui.widgets.keybar import KeyBar
from floydtui.tui.widgets.stepbar import StepBar

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
SCAN_DELAY_S = 0.4  # a path being typed settles before its folder is scanned

_TRAINING_KEYS = ("model_type", "lora_rank", "lora_alpha", "use_dora", "use_bitfit", "learning_rate", "lr_end",
                  "lr_scheduler", "lr_warmup_steps", "train_batch_size", "gradient_accumulation_steps",
                  "max_train_steps", "num_train_epochs", "mixed_precision", "optimizer", "attention_mechanism",
                  "gradient_checkpointing", "resolution", "seed", "checkpointing_steps", "checkpoints_total_limit",
                  "output_dir")
_PANE_OF_KEY = {k: "training" for k in _TRAINING_KEYS} | {
    k: "validation" for k in ("validation_resolution", "validation_prompt", "validation_negative_prompt",
                              "validation_steps", "validation_num_inference_steps", "validation_guidance",
                              "validation_seed", "num_eval_images", "validation_prompts")} | {
    "model_flavour": "flavour", "pretrained_model_name_or_path": "training",
    "text_encoder_placement": "embeds", "embed_batch_size": "embeds", "clean_caption": "embeds",
    "cache_dir": "embeds"}


def pane_of(problem: Problem) -> str:
    """Which step shows a problem at its field."""
    if problem.key in _PANE_OF_KEY:
        return _PANE_OF_KEY[problem.key]
    if "[[datasets]]" in problem.where or problem.key in ("datasets", "instance_data_dir", "id"):
        return "datasets"
    return "review"


class ScanDone(Message):
    """The datasets' scan for one version of the preset."""

    def __init__(self, scans: list | None, problems: list[Problem]) -> None:
        super().__init__()
        self.scans = scans
        self.problems = problems


class WizardScreen(Screen):
    """Flavour, hardware, training, validation, datasets, text embeds, review."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("ctrl+n", "step(1)", "Next step", priority=True),
        Binding("ctrl+p", "step(-1)", "Back", priority=True),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+e", "export", "Export", priority=True),
        Binding("ctrl+r", "launch", "Launch", priority=True),
    ]

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self.state = state
        self.scans: list | None = None  # the latest scan_preset result, shared by the panes
        self.hardware: Any = None  # the latest HardwareReport
        self._scan_timer = None

    @property
    def steps(self) -> StepBar:
        return self.query_one(StepBar)

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
        module, cls = dict((s, m) for s, _, m in STEPS)[step].split(":")
        pane_cls = getattr(importlib.import_module(f"floydtui.tui.screens.panes.{module}"), cls)
        pane = pane_cls(id=f"pane-{step}")
        self.query_one(f"#slot-{step}").mount(pane)
        return pane

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
        self.call_after_refresh(self.pane("flavour").focus_chosen)
        self.update_chrome()

    def go(self, step: str) -> None:
        """Show a step: build its pane on first use, and put the cursor in it."""
        self.steps.current = step
        self.query_one(ContentSwitcher).current = f"slot-{step}"
        pane = self.pane(step)
        if step in ("datasets", "embeds") and self.scans is None:
            self.scan(self.state.preset)
        if step == "flavour":
            self.call_after_refresh(pane.focus_chosen)
        else:
            self.call_after_refresh(self.focus_first, pane)

    # ---- changes ----------------------------------------------------------
    @on(PresetChanged)
    def preset_changed(self, event: PresetChanged) -> None:
        event.stop()
        for pane in self.built_panes():
            pane.state_changed()
        self.update_chrome()
        self.schedule_scan()

    def update_chrome(self) -> None:
        """The title bar and each tab's count of errors at its fields."""
        source = str(self.state.source) if self.state.source else "new preset (unsaved)"
        title = Text()
        title.append(" floydtui ", style="bold reverse")
        title.append(f"  {self.state.flavour}  ·  {source}")
        if self.state.dirty:
            title.append("  ● modified", style="yellow")
        self.query_one("#title-bar", Static).update(title)
        counts: dict[str, int] = {}
        for p in self.state.errors:
            counts[pane_of(p)] = counts.get(pane_of(p), 0) + 1
        self.steps.errors = counts

    def schedule_scan(self) -> None:
        if self._scan_timer is not None:
            self._scan_timer.stop()
        self._scan_timer = self.set_timer(SCAN_DELAY_S, lambda: self.scan(self.state.preset))

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def scan(self, preset) -> None:
        """The datasets' scan (headers only, cached by the data layer), off the UI thread."""
        if preset is None:
            self.post_message(ScanDone(None, []))
            return
        from floydtui.data.scan import scan_preset

        try:
            self.post_message(ScanDone(scan_preset(preset), []))
        except FloydError as e:
            self.post_message(ScanDone([], list(e.problems)))

    @on(ScanDone)
    def _scanned(self, event: ScanDone) -> None:
        self.scans = event.scans
        for p in event.problems:
            self.notify(p.message + (f"\nfix: {p.hint}" if p.hint else ""), severity="error")
        for pane in self.built_panes():
            if pane.id in ("pane-datasets", "pane-embeds"):
                pane.state_changed()

    @on(StepBar.Chosen)
    def _step_clicked(self, event: StepBar.Chosen) -> None:
        self.go(event.step)

    def focus_first(self, pane: WizardPane) -> None:
        """Put the cursor on the pane's first field, so keys act on the step that is shown."""
        for widget in pane.query("Input, Select, Checkbox, ListView, FlavourCard, Button"):
            if widget.focusable and widget.display:
                widget.focus()
                return

    def record_hardware(self, report) -> None:
        """The hardware pane's latest report; the training and embeds panes read it."""
        self.hardware = report
        for pane in self.built_panes():
            if pane.id in ("pane-training", "pane-embeds"):
                pane.state_changed()

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
            written = export_simpletuner(preset, folder)
            self.notify("Exported " + ", ".join(p.name for p in written) + f" to {folder}", timeout=4)
            return folder

        from floydtui.tui.screens.dialogs import PathDialog

        self.app.push_screen(PathDialog("Export for SimpleTuner into the folder", default, export, "Export"))

    def action_launch(self) -> None:
        """Save, then start `floydtui run PRESET --json` and open the monitor on its run directory."""
        if self.state.errors:
            self.refuse("launch")
            return
        self.action_save(then=lambda path: self.app.launch(path, self.state.preset.output_dir))

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
