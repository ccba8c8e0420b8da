"""The memory section of `floydtui check`: the preset's estimate and verdict on this machine,
and how long a step, the run and the embed cache would take. `check_memory` returns it as
data (`MemoryReport`): check prints its `section()`, the wizard's hardware step draws the same
report.

A preset that does not fit is an error only where a GPU is detected or assumed. On a machine
without one, a real flavour gets no verdict against the CPU's RAM (training it on a CPU is
not a plan): check says no GPU was found and how long a step would take here, as a warning,
since the preset may be meant for another box. The built-in tiny models train on a CPU and
get the verdict against RAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from floydtui.config.flavours import BUILTIN_MODELS
from floydtui.config.preset import Preset
from floydtui.config.schema import unmatched_targets_problem
from floydtui.errors import CheckSection, FloydError, Problem
from floydtui.hardware.devices import Device, best_device, detect_devices, platform_problems
from floydtui.hardware.estimate import (Advice, Estimate, advice, estimate, gib, settings_from_preset, unmatched_targets,
                                        verdict)
from floydtui.hardware.speed import TimeEstimate, estimate_time


def preset_time(preset: Preset, device: Device | None, captions: int | None = None) -> TimeEstimate:
    """The time estimate of a preset's training on a device (max_train_steps optimizer steps)."""
    s = settings_from_preset(preset, device)
    t = preset.training
    steps = t["max_train_steps"]
    if not steps and captions:  # num_train_epochs instead: the steps an epoch of the usable images takes
        steps = t["num_train_epochs"] * -(-captions // (t["train_batch_size"] * t["gradient_accumulation_steps"]))
    return estimate_time(s.flavour, batch=s.batch_size, resolution=s.size, checkpointing=s.gradient_checkpointing,
                         accumulation=t["gradient_accumulation_steps"], steps=steps,
                         weight_dtype=s.weight_dtype, device=device, captions=captions,
                         text_encoder_placement=s.text_encoder_placement, method=s.method,
                         embed_batch_size=s.embed_batch_size)


def no_gpu_message(preset: Preset, timing: TimeEstimate) -> str:
    """What a machine without a GPU means for a real flavour: the first thing the user reads."""
    return (f"no GPU found: training {preset.flavour.name} here would take {timing.line()} "
            f"({timing.basis})")


def gets_verdict(preset: Preset, device: Device | None) -> bool:
    """A verdict against a CPU's RAM only for the built-in tiny models, which train on a CPU."""
    if device is not None and device.is_gpu:
        return True
    return preset.model["pretrained_model_name_or_path"] in BUILTIN_MODELS


@dataclass
class MemoryReport:
    """What the memory check found, as data: `floydtui check` prints it (`section()`) and the
    wizard's hardware step draws it, so the two say the same thing."""

    devices: list[Device] = field(default_factory=list)
    device: Device | None = None  # the best one: the estimate is judged against it
    estimate: Estimate | None = None  # None without a preset (the wizard's has errors) or without devices
    verdict: str = ""  # fits, tight, does_not_fit; not_judged: a real flavour on a machine without a GPU
    advice: list[Advice] = field(default_factory=list)  # the changes that would make it fit, in order
    timing: TimeEstimate | None = None
    no_gpu: str = ""  # when not judged: the first thing the user reads
    problems: list[Problem] = field(default_factory=list)
    detected: bool = True  # False: FLOYDTUI_ASSUME_GPU could not be read, and the problems say why

    @property
    def judged(self) -> bool:
        return self.verdict in ("fits", "tight", "does_not_fit")

    def section(self) -> CheckSection:
        """`floydtui check`'s face of the report: its lines, its problems and its --json data."""
        if not self.detected:
            return CheckSection("memory", ["devices: FLOYDTUI_ASSUME_GPU could not be read"], list(self.problems))
        device, est = self.device, self.estimate
        lines = [f"device: {device.label() if device else 'none found'}"
                 + (f", {len(self.devices)} found" if len(self.devices) > 1 else "")]
        if est is None:
            return CheckSection("memory", lines, list(self.problems))
        if self.no_gpu:
            lines.append(self.no_gpu)
        lines.append(f"estimate: peak {gib(est.peak_mib)} in {est.peak_phase} ("
                     + ", ".join(f"{p} {gib(v)}" for p, v in est.phases.items()) + ")"
                     + (f": {self.verdict.replace('_', ' ')}" if self.judged else " on a GPU"))
        if self.judged and self.timing is not None:
            lines.append(f"time: {self.timing.line()} ({self.timing.basis})")
        lines += [f"  {n}" for n in est.notes]
        lines += [f"  to fit: {a.change} -> {gib(a.peak_mib)} ({a.verdict.replace('_', ' ')})" for a in self.advice]
        data = {
            "device": _device_dict(device) if device else None,
            "devices": [_device_dict(d) for d in self.devices],
            "estimate": est.to_dict(),
            "verdict": self.verdict,
            "time": self.timing.to_dict() if self.timing is not None else None,
            "advice": [{"change": a.change, "overrides": a.overrides, "peak_mib": a.peak_mib, "verdict": a.verdict}
                       for a in self.advice],
        }
        return CheckSection("memory", lines, list(self.problems), data)


def check_memory(preset: Preset | None, captions: int | None = None) -> MemoryReport:
    """The verdict for this preset on the detected (or assumed) best device, with advice, times and
    problems; `captions`: how many the embed cache would encode (the datasets' usable images).
    Without a preset (the wizard's has errors), the devices alone."""
    try:
        devices = detect_devices()
    except FloydError as e:  # a bad FLOYDTUI_ASSUME_GPU: report it here, keep the other sections
        return MemoryReport(problems=list(e.problems), detected=False)
    device = best_device(devices)
    report = MemoryReport(devices, device)
    if preset is None:
        return report
    where = f"{preset.source or 'preset'} [training]"
    est = report.estimate = estimate(preset, device)
    judged = gets_verdict(preset, device)
    result = report.verdict = verdict(est, device) if judged else "not_judged"
    tips = report.advice = advice(preset, device) if judged and result != "fits" else []
    timing = report.timing = preset_time(preset, device, captions)
    on_gpu = device is not None and device.is_gpu
    if not judged:
        report.no_gpu = no_gpu_message(preset, timing)

    problems = report.problems = platform_problems(device, preset.training["attention_mechanism"], where)
    problems.extend(target_problems(preset, where))
    if not judged:
        problems.append(Problem(
            report.no_gpu, where=where, severity="warning",
            hint="run check on the GPU machine, or set FLOYDTUI_ASSUME_GPU=\"NAME:MiB\" to check against a card"))
    if judged and result != "fits" and device is not None:
        problems.append(_fit_problem(est.peak_mib, est.peak_phase, result, device, tips, where, on_gpu))
    if on_gpu and result != "does_not_fit" and device.free_mib < est.peak_mib:
        problems.append(Problem(
            f"{device.name} has {gib(device.free_mib)} free now: other processes hold "
            f"{gib(device.total_mib - device.free_mib)}", where=where, severity="warning",
            hint="stop them before the run (nvidia-smi lists them)"))
    return report


def target_problems(preset: Preset, where: str) -> list[Problem]:
    """lora_target_modules entries that match no Linear or Conv2d layer of the model's UNet (the
    layers peft wraps), found before a model is loaded; the trainer refuses them too, after the load."""
    t = preset.training
    if t["model_type"] != "lora":
        return []
    model_id = preset.model["pretrained_model_name_or_path"]
    name = model_id if model_id in BUILTIN_MODELS else preset.flavour.name
    absent = unmatched_targets(name, tuple(t["lora_target_modules"]))
    return [unmatched_targets_problem(absent, f"{name}'s UNet", where)] if absent else []


def _fit_problem(peak: int, phase: str, result: str, device: Device, tips: list[Advice], where: str,
                 on_gpu: bool) -> Problem:
    left = device.total_mib - peak
    if result == "tight":
        message = f"tight: needs about {gib(peak)} ({phase}) of {device.name}'s {gib(device.total_mib)}, " \
                  f"{gib(left)} to spare"
    else:
        message = f"does not fit: needs about {gib(peak)} ({phase}) but {device.name} has {gib(device.total_mib)}"
    fitting = next((a for a in tips if a.verdict == "fits"), tips[-1] if tips else None)
    if fitting:
        sets = " ".join(f"--set {k}={_toml(v)}" for k, v in fitting.overrides.items())
        hint = f"{fitting.change} -> {gib(fitting.peak_mib)}; in the preset or as {sets}"
        key = next(iter(fitting.overrides))
    else:
        hint = "use a GPU with more memory"
        key = ""
    # Without a GPU the preset is likely meant for another machine: never fail check for it here.
    severity = "error" if on_gpu and result == "does_not_fit" else "warning"
    return Problem(message, where=where, hint=hint, severity=severity, key=key)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def _device_dict(d: Device) -> dict:
    return {"name": d.name, "backend": d.backend, "total_mib": d.total_mib, "free_mib": d.free_mib}
