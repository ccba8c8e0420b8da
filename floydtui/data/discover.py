"""Finding a dataset's images: every image file under instance_data_dir, recursively."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass
class Discovery:
    """The image files of a folder (sorted by relative path) and the subfolders it could not list."""

    files: list[tuple[str, Path]] = field(default_factory=list)  # (relative path, path)
    unlisted: list[str] = field(default_factory=list)  # "folder: why"
    loops: list[str] = field(default_factory=list)  # folders reached a second time through a link


def discover_images(folder: Path) -> Discovery:
    """Every file with an image extension under `folder`, symlinks followed once.

    A folder reached again through a symlink (a loop, or a second link to the same folder)
    is not walked twice. Hidden names (".git", macOS "._x.jpg" resource forks) are left out.
    """
    found = Discovery()
    seen: set[tuple[int, int]] = set()

    def on_error(err: OSError) -> None:
        found.unlisted.append(f"{err.filename}: {err.strerror or err}")

    for root, dirs, files in os.walk(folder, followlinks=True, onerror=on_error):
        try:
            st = os.stat(root)
        except OSError as e:
            on_error(e)
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            found.loops.append(os.path.relpath(root, folder))
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = Path(root) / name
            found.files.append((path.relative_to(folder).as_posix(), path))
    found.files.sort(key=lambda item: item[0])
    return found
