"""What every benchmark shares: the CPU's name for its machine line, and writing its results section."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, when run as a script

from floydtui.hardware.devices import cpu_name  # noqa: E402,F401  (the one reader of /proc/cpuinfo)


def publish(path: Path, lines: list[str]) -> None:
    """Write a results section (bench/results/<area>.md, assembled by bench/run.sh) and print it."""
    text = "\n".join(lines).rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(text, end="")
