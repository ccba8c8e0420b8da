"""`floydtui check`: every problem with a preset, section by section.

Each section is computed by the layer that owns it (config, data, hardware, hub) and returns a
`CheckSection` (floydtui.errors, the bottom layer); the CLI prints them and the wizard's review
screen shows the same objects. This module sits above those layers: none of them imports it.
"""

from __future__ import annotations

from dataclasses import replace

from floydtui.config.flavours import stage_name
from floydtui.config.preset import Preset
from floydtui.config.reporting import reporting_problems, requested_trackers, webhook_file, webhook_source
from floydtui.data.report import check_datasets
from floydtui.errors import CheckSection
from floydtui.hardware.report import check_memory
from floydtui.hub.plan import disk_section


def config_section(preset: Preset) -> CheckSection:
    f = preset.flavour
    sizes = preset.validation_sizes
    lines = [
        f"flavour {f.name}: {stage_name(f.stage)}, {f.params_label} UNet, base {preset.base_model}",
        f"{preset.training['model_type']} rank {preset.training['lora_rank']}, batch "
        f"{preset.training['train_batch_size']}, lr {preset.training['learning_rate']:g} -> "
        f"{preset.training['lr_end']:g} ({preset.training['lr_scheduler']}), resolution {preset.resolution}",
        "validation " + ", ".join(f"{w}x{h}" for w, h in sizes),
        f"output {preset.output_dir}",
        reporting_line(preset),
    ]
    out = preset.output
    problems = [*preset.warnings, *(replace(p, where=f"{preset.source or 'preset'} [output]")
                                    for p in reporting_problems(out["report_to"], out["webhook_config"],
                                                                preset.base_dir))]
    return CheckSection("preset", lines, problems,
                        {"flavour": f.name, "stage": f.stage, "base_model": preset.base_model})


def reporting_line(preset: Preset) -> str:
    """Where the run reports besides events.jsonl (never a webhook URL)."""
    out = preset.output
    trackers = requested_trackers(out["report_to"]) if out["report_to"] != "all" else ["all installed"]
    parts = [f"{', '.join(trackers)} in {preset.output_dir / 'logs'}" if trackers else "no trackers"]
    source = webhook_source(out["webhook_config"])
    if source != "none":
        path = webhook_file(out["webhook_config"], preset.base_dir)
        parts.append(f"webhooks from {path}" if path else "webhooks inline in the preset")
    return "reports to events.jsonl, " + ", ".join(parts)


def run_checks(preset: Preset, scans: list | None = None) -> list[CheckSection]:
    """Config, then datasets, then memory, then disk: each layer's own section (`scans`: already made)."""
    datasets = check_datasets(preset, scans)
    # the embed cache encodes at most one caption per usable image: its time needs the count
    memory = check_memory(preset, captions=datasets.data.get("usable"))
    return [config_section(preset), datasets, memory.section(), disk_section(preset)]
