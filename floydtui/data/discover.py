"""Finding a dataset's images: every image file under instance_data_dir, recursively.

One `os.scandir` pass that also returns each file's stat, so that a rescan compares sizes
and mtimes against the metadata cache without a second system call per file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass
class Discovery:
    """The image files of a folder, sorted by relative path, and what could not be walked."""

    # (relative path with "/", full path, stat result or the OSError that stat raised)
    files: list[tuple[str, str, os.stat_result | OSError]] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # "folder: why"
    loops: list[str] = field(default_factory=list)  # folders reached a second time through a link


def discover_images(folder: Path) -> Discovery:
    """Every file with an image extension under `folder`, symlinks followed once.

    A folder reached again through a symlink (a loop, or a second link to the same folder)
    is not walked twice. Hidden names (".git", macOS "._x.jpg" resource forks) are left out.
    """
    found = Discovery()
    try:
        st = os.stat(folder)
    except OSError as e:
        found.unlisted.append(f"{folder}: {e.strerror or e}")
        return found
    seen = {(st.st_dev, st.st_ino)}
    pending = [(str(folder), "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as e:
            found.unlisted.append(f"{prefix or directory}: {e.strerror or e}")
            continue
        for entry in entries:
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
            elif name.lower().endswith(IMAGE_EXTENSIONS):
                try:
                    stat: os.stat_result | OSError = entry.stat()
                except OSError as e:  # a broken symlink, or a file that vanished
                    stat = e
                found.files.append((rel, entry.path, stat))
    found.files.sort(key=lambda item: item[0])
    return found
