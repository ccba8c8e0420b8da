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
from floydtui.tui.screens.panes.base import PresetChanged, WizardPane

GUIDE_REQUIREMENT = ("The guide: a LoRA at rank 32, batch 4 needs about 24G of VRAM; a full UNet tune "
                     "needs more than 48G. SimpleTuner's pre-caching fits a stage I LoRA in 22G.")
VERDICT_STYLE = {"fits": ("FITS", "bold green"), "tight": ("TIGHT", "bold yellow"),
                 "does_not_fit": ("DOES NOT FIT", "bold red")}


def gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


@dataclass
class HardwareReport(Message):
    """What the hardware worker found for one version of the preset."""

    devices: list = field(default_factory=list)
    device: Any = None
    estimate: Any = None
    verdict: str = ""
    advice: list = field(default_factory=list)
    xformers: tuple[bool, str] | None = None
    disk: Any = None
    problems: list[Problem] = field(default_factory=list)
    timing: Any = None  # speed.TimeEstimate
    no_gpu: str = ""  # the no-GPU message, for a real flavour on a machine without a GPU


def hardware_report(preset, captions: int | None = None) -> HardwareReport:
    """Detect devices, estimate the preset's memory and time, and collect advice (runs in a worker
    thread); `captions`: the datasets' unique captions, for the embed cache's time."""
    from floydtui.hardware.devices import best_device, detect_devices, xformers_available
    from floydtui.hardware.estimate import advice, estimate, verdict
    from floydtui.hardware.report import gets_verdict, no_gpu_message, preset_time

    report = HardwareReport()
    try:
        report.devices = detect_devices()
    except FloydError as e:
        report.problems.extend(e.problems)
        return report
    report.device = best_device(report.devices)
    report.xformers = xformers_available(report.device)
    if preset is None:
        return report
    report.estimate = estimate(preset, report.device)
    report.timing = preset_time(preset, report.device, captions)
    if not gets_verdict(preset, report.device):
        report.no_gpu = no_gpu_message(preset, report.timing)
    elif report.device is not None:
        report.verdict = verdict(report.estimate, report.device)
        report.advice = list(advice(preset, report.device))
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
    def advice_list(self) -> ListView:
        return self.query_one("#hw-advice", ListView)

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
        self.report = report
        self.wizard.record_hardware(report)
        self.query_one("#hw-devices", Static).update(self._devices_text(report))
        self.query_one("#hw-estimate", Static).update(self._estimate_table(report))
        self.query_one("#hw-no-gpu", Static).update(Text(report.no_gpu, style="bold yellow"))
        self.query_one("#hw-no-gpu").display = bool(report.no_gpu)
        self.query_one("#hw-verdict", Static).update(self._verdict_text(report))
        self.query_one("#hw-time", Static).update(self._time_text(report))
        self.advice_list.clear()
        items = [AdviceItem(i, a) for i, a in enumerate(report.advice[:9], 1)]
        self.advice_list.extend(items)
        self.query_one("#hw-advice-title").display = bool(items)
        self.advice_list.display = bool(items)
        self.query_one("#hw-xformers", Static).update(self._xformers_text(report))
        self.query_one("#hw-disk", Static).update(self._disk_text(report))
        notes = list(getattr(report.estimate, "notes", None) or [])
        self.query_one("#hw-notes", Static).update(
            "How the estimate is made:\n" + "\n".join(f" • {n}" for n in notes) if notes else "")

    def _devices_text(self, r: HardwareReport) -> Text:
        text = Text()
        text.append("Devices  ", style="bold")
        if not r.devices:
            text.append("none detected")
        for d in r.devices:
            text.append(f"\n  {d.name} ({d.backend}:{d.index})  {gib(d.total_mib)} total, {gib(d.free_mib)} free")
        for p in r.problems:
            text.append(f"\n  {p.message}", style="red")
            if p.hint:
                text.append(f"\n  fix: {p.hint}", style="dim")
        return text

    def _estimate_table(self, r: HardwareReport) -> Group | Text:
        est = r.estimate
        if est is None:
            return Text("Estimate: fix the training settings' errors to see one.", style="dim")
        p = self.state.estimate_preset()
        t = p.training
        title = (f"{'GPU memory it would need' if r.no_gpu else 'Estimate'} for {p.flavour.name}, "
                 f"{t['model_type']} rank {t['lora_rank']}, batch "
                 f"{t['train_batch_size']}, {'fp32' if t['mixed_precision'] == 'no' else t['mixed_precision']}")
        table = Table(box=None, show_header=False, padding=(0, 2), expand=False)
        table.add_column("phase")
        table.add_column("memory", justify="right")
        table.add_column("")
        for phase, mib in est.phases.items():
            table.add_row(phase.replace("_", " "), gib(mib), "← peak" if phase == est.peak_phase else "")
        return Group(Text(title, style="bold"), table)

    def _verdict_text(self, r: HardwareReport) -> Text:
        if not r.verdict or r.device is None or r.estimate is None:
            return Text("")
        label, style = VERDICT_STYLE.get(r.verdict, (r.verdict, ""))
        text = Text()
        text.append("Verdict  ", style="bold")
        text.append(f" {label} ", style=style + " reverse")
        spare = r.device.total_mib - r.estimate.peak_mib
        text.append(f"  on {r.device.name} ({gib(r.device.total_mib)}): peak {gib(r.estimate.peak_mib)}, "
                    + (f"{gib(spare)} to spare" if spare >= 0 else f"{gib(-spare)} short"))
        return text

    def _time_text(self, r: HardwareReport) -> Text:
        text = Text()
        if r.timing is None or r.no_gpu:
            return text  # the no-GPU message at the top already gives the time
        text.append("Time  ", style="bold")
        text.append(r.timing.line())
        text.append(f"  ({r.timing.basis})", style="dim")
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
        if self.report is None or not 1 <= number <= len(self.report.advice):
            return
        item = self.report.advice[number - 1]
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
