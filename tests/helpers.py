"""Small helpers shared by test modules (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable


def copy_captioned(pngs: Iterable[Path], dest: Path) -> Path:
    """Copy demo images with their sidecar .txt captions into `dest` (created once; reused if present)."""
    if dest.exists():
        return dest
    dest.mkdir(parents=True)
    for png in pngs:
        shutil.copy(png, dest / png.name)
        shutil.copy(png.with_suffix(".txt"), dest / png.with_suffix(".txt").name)
    return dest
