"""The dataset section of `floydtui check` (filled in by the datasets layer)."""

from __future__ import annotations

from floydtui.checks import CheckSection
from floydtui.config.preset import Preset
from floydtui.errors import Problem


def check_datasets(preset: Preset) -> CheckSection:
    section = CheckSection("datasets")
    for ds in preset.image_datasets:
        folder = preset.path(ds["instance_data_dir"])
        if not folder.is_dir():
            section.problems.append(Problem(f"instance_data_dir {folder} does not exist",
                                            where=f"[[datasets]] {ds['id']!r}", key="instance_data_dir",
                                            hint="fix the path (relative paths are from the preset's folder)"))
        else:
            section.lines.append(f"{ds['id']}: {folder}")
    return section
