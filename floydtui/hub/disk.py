"""Free disk space: before a download, before a run, and during one.

A run writes checkpoints and validation images; a full disk mid-write leaves half a file and
a crash. `DiskGuard.check` is called before each write and stops the run cleanly, with the
last checkpoint intact, when a filesystem falls under `min_free_disk_mib`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from floydtui.errors import FloydError

MIB = 1024 * 1024


def format_size(n: int | None) -> str:
    """Bytes as the hub shows them (decimal units): 9.5 GB, 812.3 MB, 4.1 kB."""
    if n is None:
        return "unknown size"
    for unit, step in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= step:
            return f"{n / step:.1f} {unit}"
    return f"{n} B"


def existing_ancestor(path: str | os.PathLike) -> Path:
    """The path itself or its nearest existing parent: where a folder not yet made will live."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why floydtui could not make or write a folder at `path`, or None when it can."""
    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        return f"{p} is a file, not a folder"
    base = existing_ancestor(p)
    if not base.is_dir():
        return f"{base} is a file, so no folder can be made under it"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{base} is not writable by this user"
    return None


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the filesystem holding `path`, to name it in messages."""
    p = existing_ancestor(path).resolve()
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def device_of(path: str | os.PathLike) -> int:
    """The filesystem id of `path` (st_dev), to group paths that share a disk."""
    return existing_ancestor(path).stat().st_dev


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes free to an unprivileged writer on the filesystem holding `path`."""
    return shutil.disk_usage(existing_ancestor(path)).free


class DiskGuard:
    """Refuses a write when a filesystem holding `paths` has less than `min_free_mib` MiB free.

    The trainer calls `check("checkpoint-000100")` before each checkpoint and validation write and
    stops with its last saved state when it raises.
    """

    def __init__(self, paths, min_free_mib: int) -> None:
        self.paths = [Path(p) for p in paths]
        self.min_free_mib = int(min_free_mib)

    @classmethod
    def for_preset(cls, preset) -> "DiskGuard":
        """The run's output folder and text-embed cache, with the preset's min_free_disk_mib."""
        return cls([preset.output_dir, preset.text_embeds_cache_dir], preset.training["min_free_disk_mib"])

    def check(self, what: str) -> None:
        """Raise FloydError when a filesystem is under the threshold; `what` names the write refused."""
        if self.min_free_mib <= 0:
            return
        seen: set[int] = set()
        for path in self.paths:
            dev = device_of(path)
            if dev in seen:
                continue
            seen.add(dev)
            free_mib = free_bytes(path) // MIB
            if free_mib < self.min_free_mib:
                raise FloydError.one(
                    f"only {free_mib} MiB free on {mount_point(path)} (min_free_disk_mib = {self.min_free_mib}): "
                    f"stopped with a saved state before writing {what}",
                    where=str(path), key="min_free_disk_mib",
                    hint=f"free space on {mount_point(path)} or lower min_free_disk_mib in [training], "
                         "then rerun: the run resumes from its last checkpoint")
