"""Where floydtui keeps its own files (built-in models, scan caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """FLOYDTUI_CACHE, else $XDG_CACHE_HOME/floydtui, else ~/.cache/floydtui."""
    env = os.environ.get("FLOYDTUI_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "floydtui"
