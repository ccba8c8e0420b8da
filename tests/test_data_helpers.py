"""Helpers for the datasets tests: presets around a folder, and image files of any kind."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from floydtui.config.preset import preset_from_dict

# The guide's dataloader example (spec/deepfloyd-guide.txt), verbatim but for the folder.
GUIDE_DATASETS = [
    {
        "id": "primary-dataset",
        "type": "local",
        "instance_data_dir": "/training/data/primary-dataset",
        "crop": True,
        "crop_aspect": "square",
        "crop_style": "random",
        "resolution": 64,
        "resolution_type": "pixel",
        "minimum_image_size": 64,
        "maximum_image_size": 256,
        "target_downsample_size": 128,
        "prepend_instance_prompt": False,
        "instance_prompt": "Your Subject Trigger Phrase or Word",
        "caption_strategy": "instanceprompt",
        "repeats": 1,
    },
    {
        "id": "an example backend for text embeds.",
        "dataset_type": "text_embeds",
        "default": True,
        "disable": False,
        "type": "local",
        "cache_dir": "/training/cache/deepfloyd/text/dreambooth",
    },
]


def make_preset(root: Path, datasets: list[dict] | None = None, flavour: str = "i-medium-400m", **training):
    """A preset file in `root` (relative paths resolve there) with the given image datasets."""
    if datasets is None:
        datasets = [dict(GUIDE_DATASETS[0], instance_data_dir="imgs")]
    data = {"model": {"model_flavour": flavour}, "training": training,
            "datasets": datasets + [dict(GUIDE_DATASETS[1], cache_dir="cache")]}
    return preset_from_dict(data, source=root / "preset.toml")


def guide(folder: str = "imgs", **changes) -> dict:
    """The guide's image dataset pointed at `folder`, with fields changed."""
    return dict(GUIDE_DATASETS[0], instance_data_dir=folder, **changes)


def pattern(w: int, h: int, seed: int = 0) -> np.ndarray:
    """An RGB image with structure everywhere, so crops at different places differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) % 256)], axis=-1)
    return (base + rng.integers(0, 30, size=(h, w, 3))).clip(0, 255).astype(np.uint8)


def write_image(path: Path, w: int, h: int, seed: int = 0, fmt: str | None = None, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if w * h > 1_000_000:  # big photos: a plain colour, which is quick to make and to compress
        Image.new("RGB", (w, h), (seed * 40 % 256, 120, 200)).save(path, format=fmt, **save)
    else:
        Image.fromarray(pattern(w, h, seed)).save(path, format=fmt, **save)
    return path


def png_bomb(path: Path, w: int = 40000, h: int = 40000) -> Path:
    """A PNG whose header claims w x h pixels (past PIL's decompression-bomb limit)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path
