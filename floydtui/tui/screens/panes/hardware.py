"""Step 2: the devices, the guide's requirement, floydtui's estimate phase by phase, the verdict,
the time a step and the run would take, and the changes that would make it fit, each applied
with a key. On a machine without a GPU a real flavour gets no verdict against the CPU's RAM:
the step says first that no GPU was found and how long training would take here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Label, ListItem, ListView, Static

from floydtui.errors import FloydError, Problem
from floydtui.hardware.estimate import gib
from floydtui.hardware.report import MemoryReport, check_memory
from floydtui.tui.screens.panes.base import PresetChanged, WizardPane

GUIDE_REQUIREMENT = ("The guide: a LoRA at rank 32, batch 4 needs about 24G of VRAM; a full UNet tune "
                     "needs more than 48G. SimpleTuner's pre-caching fits a stage I LoRA in 22G.")
VERDICT_STYLE = {"fits": ("FITS", "bold green"), "tight": ("TIGHT", "bold yellow"),
                 "does_not_fit": ("DOES NOT FIT", "bold red")}


@dataclass
class HardwareReport(Message):
    """What the hardware worker found for one version of the preset: `floydtui check`'s memory
    report, and what only the wizard shows besides (xformers, the download and disk). It bubbles
    up to the screen, which shares it with the training and embeds steps."""

    memory: MemoryReport = field(default_factory=MemoryReport)
    xformers: tuple[bool, str] | None = None
    disk: Any = None  # the hub's disk CheckSection
    problems: list[Problem] = field(default_factory=list)  # why the devices or the disk could not be read


def hardware_report(preset, captions: int | None = None) -> HardwareReport:
    """Detect devices, estimate the preset's memory and time, and collect advice (runs in a worker
    thread); `captions`: the datasets' unique captions, for the embed cache's time."""
    from floydtui.hardware.devices import xformers_available

    memory = check_memory(preset, captions)
    report = HardwareReport(memory)
    if not memory.detected:
        report.problems.extend(memory.problems)
        return report
    report.xformers = xformers_available(memory.device)
    if preset is None:
        return report
    try:
        from floydtui.hub import disk_section

        report.disk = disk_section(preset)
    except FloydError as e:
        report.problems.extend(e.problems)
    return report


class AdviceItem(ListItem):
    def __init__(self, number: int, item: Any) -> None:
        self.item = item
        style, colour = VERDICT_STYLE.get(item.verdict, (item.verdict, ""))
        text = Text()
        text.append(f" {number} ", style="reverse")
        text.append(f" {item.change}  ")
        text.append(f"peak {gib(item.peak_mib)} ", style="dim")
        text.append(style.lower(), style=colour)
        super().__init__(Label(text))


class HardwarePane(WizardPane):
    """Devices, requirement, estimate, verdict, advice, xformers, download and disk."""

    BINDINGS = [Binding(str(n), f"apply_advice({n})", f"Apply {n}", show=False) for n in range(1, 10)] + [
        Binding("x", "use_xformers", "xformers", show=False)]

    report: HardwareReport | None = None

    def build(self) -> Iterable[Widget]:
        yield VerticalScroll(
            Static(id="hw-no-gpu"),
            Static("Detecting devices…", id="hw-devices"),
            Static(id="hw-verdict"),
            Static(id="hw-time"),
            Static("Changes that would make it fit (press the number, or Enter):", id="hw-advice-title",
                   classes="form-group"),
            ListView(id="hw-advice"),
            Static(id="hw-estimate"),
            Static(GUIDE_REQUIREMENT, id="hw-guide", classes="form-note"),
            Static(id="hw-xformers"),
            Static(id="hw-disk"),
            Static(id="hw-notes", classes="form-note"),
            id="hardware-body",
        )

    @property
    def no_gpu_line(self) -> Static:
        return self.query_one("#hw-no-gpu", Static)

    @property
    def devices_view(self) -> Static:
        return self.query_one("#hw-devices", Static)

    @property
    def verdict_line(self) -> Static:
        return self.query_one("#hw-verdict", Static)

    @property
    def time_line(self) -> Static:
        return self.query_one("#hw-time", Static)

    @property
    def advice_title(self) -> Static:
        return self.query_one("#hw-advice-title", Static)

    @property
    def advice_list(self) -> ListView:
        return self.query_one("#hw-advice", ListView)

    @property
    def estimate_view(self) -> Static:
        return self.query_one("#hw-estimate", Static)

    @property
    def xformers_line(self) -> Static:
        return self.query_one("#hw-xformers", Static)

    @property
    def disk_view(self) -> Static:
        return self.query_one("#hw-disk", Static)

    @property
    def notes_view(self) -> Static:
        return self.query_one("#hw-notes", Static)

    def state_changed(self) -> None:
        scans = self.wizard.scans
        captions = None if scans is None else len({r.caption for s in scans for r in s.usable if r.caption})
        self.run_report(self.state.estimate_preset(), captions)

    @work(thread=True, exclusive=True, group="hardware", exit_on_error=False)
    def run_report(self, preset, captions: int | None = None) -> None:
        """Detection and the estimate can take a moment (nvidia-smi): off the UI thread."""
        try:
            report = hardware_report(preset, captions)
        except FloydError as e:
            report = HardwareReport(problems=list(e.problems))
        self.post_message(report)

    @on(HardwareReport)
    def show_report(self, report: HardwareReport) -> None:
        """Draw the report; it then bubbles up to the screen."""
        self.report = report
        memory = report.memory
        self.devices_view.update(self._devices_text(report))
        self.estimate_view.update(self._estimate_table(memory))
        self.no_gpu_line.update(Text(memory.no_gpu, style="bold yellow"))
        self.no_gpu_line.display = bool(memory.no_gpu)
        self.verdict_line.update(self._verdict_text(memory))
        self.time_line.update(self._time_text(memory))
        self.advice_list.clear()
        items = [AdviceItem(i, a) for i, a in enumerate(memory.advice[:9], 1)]
        self.advice_list.extend(items)
        self.advice_title.display = bool(items)
        self.advice_list.display = bool(items)
        if self.wizard.current_step == "hardware":
            # The list of changes just appeared or went: the cursor goes to it, or to the step's body. Else it
            # can stay on the last step's hidden widgets (the step opened before its first report, with nothing
            # to put it on) or on the list just hidden, and the keys bound here (the numbers, x) go nowhere.
            self.call_after_refresh(self.take_cursor)
        self.xformers_line.update(self._xformers_text(report))
        self.disk_view.update(self._disk_text(report))
        notes = memory.estimate.notes if memory.estimate is not None else []
        self.notes_view.update("How the estimate is made:\n" + "\n".join(f" • {n}" for n in notes) if notes else "")

    def _devices_text(self, r: HardwareReport) -> Text:
        text = Text()
        text.append("Devices  ", style="bold")
        if not r.memory.devices:
            text.append("none detected")
        for d in r.memory.devices:
            text.append(f"\n  {d.name} ({d.backend}:{d.index})  {gib(d.total_mib)} total, {gib(d.free_mib)} free")
        for p in r.problems:
            text.append(f"\n  {p.message}", style="red")
            if p.hint:
                text.append(f"\n  fix: {p.hint}", style="dim")
        return text

    def _estimate_table(self, m: MemoryReport) -> Group | Text:
        est = m.estimate
        if est is None:
            return Text("Estimate: fix the training settings' errors to see one.", style="dim")
        p = self.state.estimate_preset()
        t = p.training
        title = (f"{'GPU memory it would need' if m.no_gpu else 'Estimate'} for {p.flavour.name}, "
                 f"{t['model_type']} rank {t['lora_rank']}, batch "
                 f"{t['train_batch_size']}, {'fp32' if t['mixed_precision'] == 'no' else t['mixed_precision']}")
        table = Table(box=None, show_header=False, padding=(0, 2), expand=False)
        table.add_column("phase")
        table.add_column("memory", justify="right")
        table.add_column("")
        for phase, mib in est.phases.items():
            table.add_row(phase.replace("_", " "), gib(mib), "← peak" if phase == est.peak_phase else "")
        return Group(Text(title, style="bold"), table)

    def _verdict_text(self, m: MemoryReport) -> Text:
        if not m.judged or m.device is None or m.estimate is None:
            return Text("")
        label, style = VERDICT_STYLE[m.verdict]
        text = Text()
        text.append("Verdict  ", style="bold")
        text.append(f" {label} ", style=style + " reverse")
        spare = m.device.total_mib - m.estimate.peak_mib
        text.append(f"  on {m.device.name} ({gib(m.device.total_mib)}): peak {gib(m.estimate.peak_mib)}, "
                    + (f"{gib(spare)} to spare" if spare >= 0 else f"{gib(-spare)} short"))
        return text

    def _time_text(self, m: MemoryReport) -> Text:
        text = Text()
        if m.timing is None or m.no_gpu:
            return text  # the no-GPU message at the top already gives the time
        text.append("Time  ", style="bold")
        text.append(m.timing.line())
        text.append(f"  ({m.timing.basis})", style="dim")
        return text

    def _xformers_text(self, r: HardwareReport) -> Text:
        if r.xformers is None:
            return Text("")
        ok, reason = r.xformers
        current = self.state.resolved("training", "attention_mechanism")
        text = Text()
        text.append("xformers  ", style="bold")
        if not ok:
            text.append(f"not offered: {reason}", style="dim")
        elif current == "xformers":
            text.append(f"in use ({reason})")
        else:
            text.append(f"available ({reason}): press x to use it (less memory than sdpa)")
        return text

    def _disk_text(self, r: HardwareReport) -> Text:
        text = Text()
        if r.disk is None:
            return text
        text.append("Download and disk  ", style="bold")
        for line in r.disk.lines:
            text.append(f"\n  {line}")
        for p in r.disk.problems:
            text.append(f"\n  {p.message}", style="red" if p.is_error else "yellow")
            if p.hint:
                text.append(f" — {p.hint}", style="dim")
        return text

    def action_apply_advice(self, number: int) -> None:
        """Apply the numbered change to the preset."""
        if self.report is None or not 1 <= number <= len(self.report.memory.advice):
            return
        item = self.report.memory.advice[number - 1]
        self.state.apply_overrides(dict(item.overrides))
        self.notify(f"Applied: {item.change}", timeout=3)
        self.post_message(PresetChanged(self))

    def action_use_xformers(self) -> None:
        if self.report and self.report.xformers and self.report.xformers[0]:
            self.state.set("training", "attention_mechanism", "xformers")
            self.post_message(PresetChanged(self))

    @on(ListView.Selected, "#hw-advice")
    def _advice_selected(self, event: ListView.Selected) -> None:
        self.action_apply_advice(event.list_view.index + 1)
