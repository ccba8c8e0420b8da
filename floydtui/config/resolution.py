"""`validation_resolution`: comma-separated `N` or `WxH` items (DESIGN.md section 4)."""

from __future__ import annotations

import re

from floydtui.errors import FloydError, Problem

_ITEM = re.compile(r"^(\d+)(?:\s*[xX×]\s*(\d+))?$")
# SimpleTuner splits on commas, strips and lower-cases each item, then wants digits or digitsxdigits.
_SIMPLETUNER_ITEM = re.compile(r"^\d+(x\d+)?$", re.ASCII)


def parse_validation_resolution(value: str | int, key: str = "validation_resolution") -> list[tuple[int, int]]:
    """`"64,96,64x96,96x64"` -> [(64, 64), (96, 96), (64, 96), (96, 64)].

    Sizes are pixels, never megapixels. Raises FloydError naming the bad item.
    """
    if isinstance(value, bool):
        raise FloydError.one(f"{key} must be a string like \"64,96x64\", got {value!r}", key=key)
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise FloydError.one(
            f"{key} must be a string like \"64,96x64\", got {type(value).__name__}", key=key,
            hint='write sizes as "N" or "WxH" separated by commas, e.g. "64,96x64"')
    items = [s.strip() for s in value.split(",")]
    sizes: list[tuple[int, int]] = []
    problems: list[Problem] = []
    for i, item in enumerate(items, 1):
        m = _ITEM.match(item)
        if not item:
            problems.append(Problem(f"item {i} of {key} is empty in {value!r}", key=key,
                                    hint="remove the extra comma"))
            continue
        if not m:
            problems.append(Problem(
                f"item {i} of {key}, {item!r}, is not a size", key=key,
                hint='each item is "N" (NxN) or "WxH" in pixels, e.g. "64" or "96x64"'))
            continue
        w = int(m.group(1))
        h = int(m.group(2)) if m.group(2) else w
        if w < 8 or h < 8 or w > 4096 or h > 4096:
            problems.append(Problem(f"item {i} of {key}, {item!r}, is out of range", key=key,
                                    hint="sizes are pixels between 8 and 4096"))
            continue
        if w % 8 or h % 8:
            problems.append(Problem(f"item {i} of {key}, {item!r}, is not a multiple of 8", key=key,
                                    hint=f"use {_round8(w)}x{_round8(h)}"))
            continue
        sizes.append((w, h))
    if problems:
        raise FloydError(problems)
    return sizes


def normalise_validation_resolution(value: str | int) -> str:
    """The spelling SimpleTuner reads: `"96 x 64, 64×96"` -> `"96x64,64x96"` (items as written otherwise)."""
    return ",".join(f"{w}x{h}" if _ITEM.match(item).group(2) else str(w)
                    for item, (w, h) in zip((s.strip() for s in str(value).split(",")), parse_validation_resolution(value)))


def simpletuner_unreadable_items(value: str | int) -> list[str]:
    """Items SimpleTuner's parse_validation_resolutions would refuse (spaces around x, the sign ×)."""
    return [item.strip() for item in str(value).split(",") if not _SIMPLETUNER_ITEM.match(item.strip().lower())]


def describe_sizes(sizes: list[tuple[int, int]], seeds: int = 1) -> str:
    """"4 images: 64x64, 96x96, 64x96, 96x64" for the wizard's live parse; with `seeds` (num_validation_images)
    above 1, "8 images a prompt: 64x64, 96x96, 64x96, 96x64, 2 seeds each"."""
    n = len(sizes) * max(1, seeds)
    listed = ", ".join(f"{w}x{h}" for w, h in sizes)
    if seeds > 1:
        return f"{n} images a prompt: {listed}, {seeds} seeds each"
    return f"{n} image{'s' if n != 1 else ''}: {listed}"


def _round8(v: int) -> int:
    return max(8, int(round(v / 8)) * 8)
