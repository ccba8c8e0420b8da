"""The memory section of `floydtui check`: the preset's estimate and verdict on this machine.

A preset that does not fit is an error only where a GPU is detected or assumed: on a machine
without one, the preset may be meant for another box, so check says so as a warning (and
the built-in demo model, which trains on a CPU, passes).
"""

from __future__ import annotations

from floydtui.checks import CheckSection
from floydtui.config.flavours import BUILTIN_MODELS
from floydtui.config.preset import Preset
from floydtui.errors import FloydError, Problem
from floydtui.hardware.devices import Device, best_device, detect_devices, platform_problems
from floydtui.hardware.estimate import Advice, advice, estimate, gib, verdict


def check_memory(preset: Preset) -> CheckSection:
    """The verdict for this preset on the detected (or assumed) best device, with advice."""
    where = f"{preset.source or 'preset'} [training]"
    try:
        devices = detect_devices()
    except FloydError as e:  # a bad FLOYDTUI_ASSUME_GPU: report it here, keep the other sections
        return CheckSection("memory", ["devices: FLOYDTUI_ASSUME_GPU could not be read"], list(e.problems))
    device = best_device(devices)
    est = estimate(preset, device)
    result = verdict(est, device)
    tips = advice(preset, device) if result != "fits" else []
    builtin = preset.model["pretrained_model_name_or_path"] in BUILTIN_MODELS

    lines = [f"device: {device.label() if device else 'none found'}"
             + (f", {len(devices)} found" if len(devices) > 1 else ""),
             f"estimate: peak {gib(est.peak_mib)} in {est.peak_phase} ("
             + ", ".join(f"{p} {gib(v)}" for p, v in est.phases.items()) + f"): {result.replace('_', ' ')}"]
    lines += [f"  {n}" for n in est.notes]
    lines += [f"  to fit: {a.change} -> {gib(a.peak_mib)} ({a.verdict.replace('_', ' ')})" for a in tips]

    problems = platform_problems(device, preset.training["attention_mechanism"], where)
    on_gpu = device is not None and device.is_gpu
    if not on_gpu and not builtin:
        problems.append(Problem(
            "no GPU found: training would run on the CPU, far too slow for a real DeepFloyd flavour",
            where=where, severity="warning",
            hint="run check on the GPU machine, or set FLOYDTUI_ASSUME_GPU=\"NAME:MiB\" to check against a card"))
    if result != "fits" and device is not None:
        problems.append(_fit_problem(est.peak_mib, est.peak_phase, result, device, tips, where, on_gpu))
    if on_gpu and result != "does_not_fit" and device.free_mib < est.peak_mib:
        problems.append(Problem(
            f"{device.name} has {gib(device.free_mib)} free now: other processes hold "
            f"{gib(device.total_mib - device.free_mib)}", where=where, severity="warning",
            hint="stop them before the run (nvidia-smi lists them)"))
    data = {
        "device": _device_dict(device) if device else None,
        "devices": [_device_dict(d) for d in devices],
        "estimate": est.to_dict(),
        "verdict": result,
        "advice": [{"change": a.change, "overrides": a.overrides, "peak_mib": a.peak_mib, "verdict": a.verdict}
                   for a in tips],
    }
    return CheckSection("memory", lines, problems, data)


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
