"""Finding a dataset's files: every file under instance_data_dir, recursively.

One `os.scandir` pass that also returns each image file's stat, so that a rescan compares
sizes and mtimes against the metadata cache without a second system call per file. Files
that are not images by extension are listed too, so a scan accounts for every file.

The walk can be bounded (a number of files, seconds of walking) and cancelled: the wizard
scans folders while the user types, and `/` is a folder too.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# Formats Pillow decodes by itself (no external tool) that photos and scans come in.
# TIFF gives its first page and GIF its first frame; other extensions are "not images".
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".bmp", ".dib", ".tif", ".tiff",
                    ".gif", ".tga", ".ppm", ".pgm", ".pbm", ".pnm")


class ScanCancelled(Exception):
    """The caller's `should_stop` said stop: a newer scan replaces this one."""


@dataclass
class Discovery:
    """The files of a folder, sorted by relative path, and what could not be walked."""

    # (relative path with "/", full path, stat result or the OSError that stat raised)
    files: list[tuple[str, str, os.stat_result | OSError]] = field(default_factory=list)
    others: list[tuple[str, str]] = field(default_factory=list)  # (relative, full) of files that are not images
    unlisted: list[str] = field(default_factory=list)  # "folder: why"
    loops: list[str] = field(default_factory=list)  # folders reached a second time through a link
    bounded: bool = False  # the walk stopped at max_files or max_seconds: the lists are incomplete

    @property
    def count(self) -> int:
        return len(self.files) + len(self.others)


def discover_images(folder: Path, *, max_files: int | None = None, max_seconds: float | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Discovery:
    """Every file under `folder`, image files with their stat, symlinks followed once.

    A folder reached again through a symlink (a loop, or a second link to the same folder)
    is not walked twice. Hidden names (".git", macOS "._x.jpg" resource forks) are left out.
    The walk stops with `bounded` set after more than `max_files` files or `max_seconds` of
    walking, and raises ScanCancelled as soon as `should_stop()` is true.
    """
    found = Discovery()
    try:
        st = os.stat(folder)
    except OSError as e:
        found.unlisted.append(f"{folder}: {e.strerror or e}")
        return found
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    seen = {(st.st_dev, st.st_ino)}
    pending = [(str(folder), "")]

    def over_bound() -> bool:
        if should_stop is not None and should_stop():
            raise ScanCancelled(str(folder))
        return (max_files is not None and found.count > max_files) or (
            deadline is not None and time.monotonic() > deadline)

    while pending and not found.bounded:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as e:
            found.unlisted.append(f"{prefix or directory}: {e.strerror or e}")
            continue
        for i, entry in enumerate(entries):
            if i % 256 == 0 and over_bound():  # a check per batch: a stat-free test of a clock and a count
                found.bounded = True
                break
            name = entry.name
            if name.startswith("."):
                continue
            rel = prefix + name
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                try:
                    dst = entry.stat()
                except OSError as e:
                    found.unlisted.append(f"{rel}: {e.strerror or e}")
                    continue
                if (dst.st_dev, dst.st_ino) in seen:
                    found.loops.append(rel)
                    continue
                seen.add((dst.st_dev, dst.st_ino))
                pending.append((entry.path, rel + "/"))
            elif is_image_name(name):
                try:
                    stat: os.stat_result | OSError = entry.stat()
                except OSError as e:  # a broken symlink, or a file that vanished
                    stat = e
                found.files.append((rel, entry.path, stat))
            else:
                found.others.append((rel, entry.path))
        if over_bound():
            found.bounded = True
    found.files.sort(key=lambda item: item[0])
    found.others.sort()
    return found


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the image extensions (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def extension_of(name: str) -> str:
    """A file's extension, lower case with its dot, or "(none)"."""
    suffix = os.path.splitext(name)[1].lower()
    return suffix or "(none)"
