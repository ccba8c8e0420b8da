"""The pixel cache: each usable image stored once, decoded and downsampled, as uint8 RGB.

An entry is keyed by the file's identity (path, size, mtime) and the intermediate size its
dataset's fields give it, so editing the image or maximum_image_size/target_downsample_size
makes a new entry. An entry holds its size and a CRC32 of its pixels and is checked on
every read: a truncated or damaged entry reads as missing and is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np

from floydtui.data.pipeline import PIPELINE_VERSION, downsample, load_rgb
from floydtui.fsutil import atomic_write_bytes
from floydtui.paths import cache_root

_MAGIC = b"FTPX1"
_HEADER = struct.Struct("<5sIII")  # magic, width, height, crc32 of the pixels


def entry_path(path: Path, file_size: int, mtime_ns: int, intermediate: tuple[int, int]) -> Path:
    """Where the cache keeps one image at one intermediate size."""
    ident = f"{PIPELINE_VERSION}|{path}|{file_size}|{mtime_ns}|{intermediate[0]}x{intermediate[1]}"
    key = hashlib.blake2b(ident.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return cache_root() / "pixels" / key[:2] / f"{key}.px"


def read_entry(entry: Path, size: tuple[int, int]) -> np.ndarray | None:
    """The cached pixels (HxWx3 uint8, read-only), or None if absent, truncated or damaged."""
    try:
        data = entry.read_bytes()
    except OSError:
        return None
    w, h = size
    if len(data) != _HEADER.size + w * h * 3:
        return None
    magic, ew, eh, crc = _HEADER.unpack_from(data)
    body = memoryview(data)[_HEADER.size:]
    if magic != _MAGIC or (ew, eh) != (w, h) or zlib.crc32(body) != crc:
        return None
    return np.frombuffer(body, dtype=np.uint8).reshape(h, w, 3)


def entry_is_complete(entry: Path, size: tuple[int, int]) -> bool:
    """A cheap existence-and-length check (the full check happens on read)."""
    try:
        return entry.stat().st_size == _HEADER.size + size[0] * size[1] * 3
    except OSError:
        return False


def build_entry(source: Path, steps: tuple[tuple[int, int], ...], size: tuple[int, int],
                entry: Path) -> np.ndarray:
    """Decode `source`, downsample it by `steps`, store it atomically; return the pixels.

    Raises what decoding raises (OSError, DecompressionBombError, ...): the caller turns it
    into a skip reason.
    """
    image, _ = load_rgb(source)
    image = downsample(image, steps)
    pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if pixels.shape != (size[1], size[0], 3):
        raise ValueError(f"decoded to {pixels.shape[1]}x{pixels.shape[0]}, the header said {size[0]}x{size[1]}")
    body = pixels.tobytes()
    atomic_write_bytes(entry, _HEADER.pack(_MAGIC, size[0], size[1], zlib.crc32(body)) + body)
    return pixels
