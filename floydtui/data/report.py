"""The dataset section of `floydtui check`: per-dataset summary, stopping errors, warnings."""

from __future__ import annotations

from floydtui.config.preset import Preset
from floydtui.data.dataset import eval_image_problem
from floydtui.data.scan import scan_preset
from floydtui.errors import CheckSection


def check_datasets(preset: Preset, scans: list | None = None) -> CheckSection:
    """Scan every image dataset (headers only) and report what training would use.

    `scans`: scan_preset's result for this preset when the caller has one (the wizard's)."""
    scans = scan_preset(preset) if scans is None else scans
    section = CheckSection("datasets")
    for scan in scans:
        section.lines.extend(scan.summary_lines())
        section.problems.extend(scan.problems)
    problem = eval_image_problem(preset)
    if problem:
        section.problems.append(problem)
    usable = sum(len(s.usable) for s in scans)
    embeds = preset.text_embeds_dataset
    section.lines.append(f"{usable} usable images in {len(scans)} dataset(s); text embeds cached in "
                         f"{preset.path(embeds['cache_dir'])} ([[datasets]] {embeds['id']!r})")
    section.data = {"datasets": [s.to_dict() for s in scans], "usable": usable}
    return section
