"""Text that fits: paths shortened from the left, so the end (the file, the run) stays readable."""

from __future__ import annotations

import os


def fit_path(path: str, room: int) -> str:
    """`path` with the home folder as ~, and when still longer than `room`, "…" and its last characters."""
    home = os.path.expanduser("~")
    if home not in ("", "/") and (path == home or path.startswith(home + os.sep)):
        path = "~" + path[len(home):]
    if len(path) <= room or room < 2:
        return path
    return "…" + path[len(path) - room + 1:]


def fit(text: str, room: int) -> str:
    """`text`, ending in "…" where it had to be cut to `room` characters."""
    return text if len(text) <= room else text[:max(0, room - 1)] + "…"
