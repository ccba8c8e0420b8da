"""`floydtui doctor [--json]`: the devices, then every flavour x method's memory and time on the best one.

Each row is floydtui's defaults for that flavour (LoRA rank 32, batch 4, bf16, the native
resolution, max_train_steps) with model_type lora or full: the memory of each phase, the
verdict, and about how long a step and the run take. Exit 0: doctor reports, it does not judge.
"""

from __future__ import annotations

import json

from floydtui.config.flavours import BUILTIN_MODELS, FLAVOURS, builtin_label, stage_numeral
from floydtui.config.preset import Preset, preset_from_dict
from floydtui.hardware.devices import Device, best_device, detect_devices, platform_problems, xformers_available
from floydtui.hardware.estimate import PHASES, advice, estimate, gib, verdict
from floydtui.hardware.report import preset_time
from floydtui.hardware.speed import duration

METHODS = ("lora", "full")


def grid_preset(flavour: str, method: str) -> Preset:
    """floydtui's defaults for a flavour and method (the dataset folder is never read)."""
    return preset_from_dict({
        "model": {"model_flavour": flavour},
        "training": {"model_type": method},
        "datasets": [{"id": "doctor", "instance_data_dir": "."},
                     {"id": "text-embeds", "dataset_type": "text_embeds", "default": True}],
    })


def report(devices: list[Device]) -> dict:
    """The doctor report: devices, then each flavour x method on the best device."""
    device = best_device(devices)
    rows = []
    for flavour in FLAVOURS:
        for method in METHODS:
            preset = grid_preset(flavour, method)
            est = estimate(preset, device)
            rows.append({
                "flavour": flavour,
                "method": method,
                "peak_mib": est.peak_mib,
                "phases": {p: est.phases[p] for p in PHASES},
                "verdict": verdict(est, device),
                "advice": [{"change": a.change, "peak_mib": a.peak_mib} for a in advice(preset, device)],
                "time": preset_time(preset, device).to_dict(),
            })
    return {
        "devices": [{"name": d.name, "backend": d.backend, "total_mib": d.total_mib, "free_mib": d.free_mib}
                    for d in devices],
        "estimates": rows,
        "builtin_models": builtin_models(),
    }


def builtin_models() -> list[dict]:
    """Each built-in model: its stage, what it is, and where it is (shipped, built, or built on first use)."""
    from floydtui.train.tiny import SHAPES_NAMES, builtin_model_dir

    rows = []
    for model_id, stage in BUILTIN_MODELS.items():
        folder = builtin_model_dir(model_id)
        ready = (folder / "model_index.json").is_file()
        state = ("shipped" if ready else "missing: reinstall floydtui") if model_id in SHAPES_NAMES else \
            ("built" if ready else "built on first use")
        rows.append({"id": model_id, "stage": stage, "label": builtin_label(model_id), "folder": str(folder),
                     "state": state})
    return rows


def main(args) -> int:
    devices = detect_devices()
    data = report(devices)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    _print_human(data, best_device(devices))
    return 0


_STYLE = {"fits": "green", "tight": "yellow", "does_not_fit": "red"}


def _print_human(data: dict, device: Device | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    devices = Table(title="Devices", title_justify="left")
    for col in ("", "name", "backend", "total", "free"):
        devices.add_column(col, justify="right" if col in ("total", "free") else "left")
    for d in data["devices"]:
        best = device is not None and d["name"] == device.name and d["total_mib"] == device.total_mib
        devices.add_row("*" if best else "", d["name"], d["backend"], gib(d["total_mib"]), gib(d["free_mib"]))
    console.print(devices)

    ok, why = xformers_available(device)
    console.print(f"xformers: {'yes' if ok else 'no'} ({why})")
    for p in platform_problems(device):
        console.print(f"[red]{p.format()}[/red]")
    if device is not None and not device.is_gpu:
        console.print("[yellow]no GPU found: training on this CPU would take the times below; verdicts are "
                      "against system RAM. FLOYDTUI_ASSUME_GPU=\"NAME:MiB\" checks against a card[/yellow]")

    target = device.label() if device else "no device"
    table = Table(title=f"Memory in GiB on {target}; floydtui defaults: rank 32, batch 4, bf16",
                  title_justify="left")
    # short headers and unwrapped names keep the table readable at 80 columns
    for col in ("flavour", "method", "embeds", "train", "valid.", "peak", "verdict", "step", "run"):
        table.add_column(col, justify="left" if col in ("flavour", "method", "verdict") else "right",
                         no_wrap=col in ("flavour", "verdict", "step", "run"))
    for row in data["estimates"]:
        table.add_row(row["flavour"], row["method"], *(f"{row['phases'][p] / 1024:.1f}" for p in PHASES),
                      f"{row['peak_mib'] / 1024:.1f}",
                      f"[{_STYLE[row['verdict']]}]{row['verdict'].replace('_', ' ')}[/]",
                      duration(row["time"]["step_s"]), duration(row["time"]["total_s"]))
    console.print(table)
    if data["estimates"]:
        t = data["estimates"][0]["time"]
        console.print(f"Times: a step of batch 4 and {t['steps']:,} steps (max_train_steps); {t['basis']}.")
    builtins = Table(title="Built-in models (for the demo and tests; not DeepFloyd's)", title_justify="left")
    for col in ("id", "stage", "what", "state"):
        builtins.add_column(col)
    for b in data["builtin_models"]:
        builtins.add_row(b["id"], stage_numeral(b["stage"]), b["label"], b["state"])
    console.print(builtins)
    for row in data["estimates"]:
        if row["advice"]:
            console.print(f"to fit {row['flavour']} {row['method']}: "
                          + "; then ".join(f"{a['change']} ({gib(a['peak_mib'])})" for a in row["advice"]))
    console.print("Estimates; the readings behind them are in docs/hardware.md. "
                  "`floydtui check PRESET` gives the verdict for your own settings.")
