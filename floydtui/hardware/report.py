"""The memory section of `floydtui check` (filled in by the hardware layer)."""

from __future__ import annotations

from floydtui.checks import CheckSection
from floydtui.config.preset import Preset


def check_memory(preset: Preset) -> CheckSection:
    return CheckSection("memory", ["memory estimate: see floydtui doctor"])
