"""The pixel pipeline of DESIGN.md section 5: minimum size, 25% downsample steps, crop or resize.

Sizes are planned from an image's header alone (`plan_image`), so a scan decides every
file without decoding it; the pixels follow the plan (`load_rgb`, `downsample`, `as_trained`)
when the pixel cache is built and when a batch is cut.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# Bumped when the pixels a plan produces change, so old pixel-cache entries are not reused.
PIPELINE_VERSION = 1
DOWNSAMPLE_STEP = 0.75  # the guide: "images are downsampled 25% at a time"

SMALLER_THAN_MINIMUM = "smaller than minimum_image_size"
SMALLER_THAN_RESOLUTION = "smaller than resolution"
TRANSPARENCY_NOTE = "transparency flattened onto white"


@dataclass(frozen=True)
class DatasetSettings:
    """The fields of one image dataset that decide its pixels and captions, defaults filled."""

    id: str
    folder: Path
    resolution: int
    crop: bool
    crop_aspect: str
    crop_style: str
    minimum_image_size: int
    maximum_image_size: int | None
    target_downsample_size: int | None
    caption_strategy: str
    instance_prompt: str
    prepend_instance_prompt: bool
    repeats: int

    @classmethod
    def from_preset(cls, preset: Any, ds: dict[str, Any], resolution: int | None = None) -> "DatasetSettings":
        """A dataset's settings; `resolution` overrides the dataset's own (stage II trains at 256)."""
        return cls(
            id=ds["id"], folder=preset.path(ds["instance_data_dir"]),
            resolution=resolution or ds["resolution"], crop=ds["crop"], crop_aspect=ds["crop_aspect"],
            crop_style=ds["crop_style"], minimum_image_size=ds["minimum_image_size"],
            maximum_image_size=ds["maximum_image_size"], target_downsample_size=ds["target_downsample_size"],
            caption_strategy=ds["caption_strategy"], instance_prompt=ds["instance_prompt"],
            prepend_instance_prompt=ds["prepend_instance_prompt"], repeats=ds["repeats"])

    def describe(self) -> str:
        """One line: how this dataset's images become training pixels."""
        how = (f"crop {self.crop_aspect} {self.crop_style}" if self.crop else "resize") + f" at {self.resolution}"
        down = (f", over {self.maximum_image_size} down to {self.target_downsample_size}"
                if self.target_downsample_size and self.maximum_image_size else "")
        return f"{how}; minimum {self.minimum_image_size}{down}; captions from {self.caption_strategy}"


@dataclass(frozen=True)
class Plan:
    """What the pipeline does with an image of a given size."""

    skip_reason: str | None = None
    detail: str = ""
    steps: tuple[tuple[int, int], ...] = ()  # downsample sizes in order; empty when not downsampled
    intermediate: tuple[int, int] | None = None  # (w, h) stored in the pixel cache
    bucket: tuple[int, int] | None = None  # (w, h) of the training crop or resize
    crops: bool = True  # False: the whole image is resized to the bucket

    @property
    def usable(self) -> bool:
        return self.skip_reason is None

    @property
    def downsampled(self) -> bool:
        return bool(self.steps)

    @property
    def coverage(self) -> float:
        """The share of the intermediate image the training pixels show (1.0 for a resize)."""
        if not self.usable or not self.bucket or not self.intermediate:
            return 0.0
        if not self.crops:
            return 1.0
        return (self.bucket[0] * self.bucket[1]) / (self.intermediate[0] * self.intermediate[1])


def _round(x: float) -> int:
    """Half-up rounding (Python's round() goes to even, which would make 170.5 -> 170)."""
    return int(math.floor(x + 0.5))


def downsample_steps(w: int, h: int, target: int) -> list[tuple[int, int]]:
    """The 25%-step chain from w x h down to a short edge of `target` (empty if already there)."""
    short = min(w, h)
    if short <= target:
        return []
    steps = []
    scale = 1.0
    while _round(short * scale * DOWNSAMPLE_STEP) > target:
        scale *= DOWNSAMPLE_STEP
        steps.append((_round(w * scale), _round(h * scale)))
    # The last step lands on the target exactly; the long edge keeps the original aspect.
    steps.append((target, _round(target * h / w)) if w <= h else (_round(target * w / h), target))
    return steps


def _multiple_of_8(x: float) -> int:
    return max(8, _round(x / 8) * 8)


def bucket_size(w: int, h: int, s: DatasetSettings) -> tuple[int, int]:
    """The (w, h) of the training pixels for an intermediate image of w x h."""
    r = s.resolution
    if s.crop and s.crop_aspect == "square":
        return (r, r)
    long_edge, short_edge = max(w, h), min(w, h)
    long_out = max(r, _multiple_of_8(r * long_edge / short_edge))
    if s.crop:
        # A crop never reaches past the image: round down where rounding up would.
        long_out = max(r, min(long_out, long_edge // 8 * 8))
    return (long_out, r) if w >= h else (r, long_out)


def plan_image(w: int, h: int, s: DatasetSettings) -> Plan:
    """Decide, from its size alone, what the pipeline does with a w x h image (section 5)."""
    m = s.minimum_image_size
    if w < m or h < m:
        return Plan(SMALLER_THAN_MINIMUM, f"{w}x{h} is below {m}")
    steps: tuple[tuple[int, int], ...] = ()
    t, big = s.target_downsample_size, s.maximum_image_size
    if big and (w > big or h > big) and t and min(w, h) > t:
        steps = tuple(downsample_steps(w, h, t))
    iw, ih = steps[-1] if steps else (w, h)
    if min(iw, ih) < s.resolution:
        # The guide never upsamples: an image the crop or resize would enlarge is left out.
        after = f" after downsampling to {iw}x{ih}" if steps else ""
        return Plan(SMALLER_THAN_RESOLUTION, f"{w}x{h}{after} is below resolution {s.resolution}")
    return Plan(None, "", steps, (iw, ih), bucket_size(iw, ih, s), s.crop)


def crop_origin(style: str, image: tuple[int, int], bucket: tuple[int, int],
                rng: np.random.Generator | None) -> tuple[int, int]:
    """Top-left corner of a bucket-sized crop: random (needs rng), center or corner."""
    dx, dy = image[0] - bucket[0], image[1] - bucket[1]
    if style == "corner":
        return (0, 0)
    if style == "center" or rng is None:
        return (dx // 2, dy // 2)
    return (int(rng.integers(0, dx + 1)), int(rng.integers(0, dy + 1)))


def record_key(dataset_id: str, rel: str) -> int:
    """A stable number per image, so its random crops do not depend on the order of the files."""
    digest = hashlib.blake2b(f"{dataset_id}/{rel}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def crop_rng(seed: int, epoch: int, key: int, pass_no: int) -> np.random.Generator:
    """The generator of one sample's random crop: reproducible per (seed, epoch), new each epoch."""
    return np.random.default_rng([seed, epoch, key, pass_no])


# ---- pixels ---------------------------------------------------------------
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def load_rgb(path: str | Path) -> tuple[Image.Image, str]:
    """Decode an image upright and as 8-bit RGB; returns (image, note about the conversion).

    Transparent pixels are composited onto white, the usual page colour of product shots
    and clip art, so a transparent background does not turn black.
    """
    with Image.open(path) as im:
        limit = Image.MAX_IMAGE_PIXELS
        if limit and im.width * im.height > limit:
            # An explicit check, not a warnings filter: this runs in threads, and filters are global.
            raise Image.DecompressionBombError(f"{im.width}x{im.height} is more than PIL's limit of {limit} pixels")
        im.load()
        im = ImageOps.exif_transpose(im)
    note = ""
    if im.mode in _SIXTEEN_BIT:
        # 16-bit greyscale: scale 0..65535 to 0..255 (PIL's convert would clip it to white).
        arr = np.asarray(im, dtype=np.uint32)
        im = Image.fromarray((arr // 257).clip(0, 255).astype(np.uint8), "L")
        note = "16-bit, scaled to 8-bit"
    if has_alpha(im.mode, im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
        note = TRANSPARENCY_NOTE
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im, note


def has_alpha(mode: str, info: dict) -> bool:
    """Whether an image of this mode/info has transparency to flatten."""
    return mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in info


def downsample(im: Image.Image, steps: tuple[tuple[int, int], ...]) -> Image.Image:
    """Apply the 25% steps one after another (never one big leap, as the guide asks)."""
    for size in steps:
        im = im.resize(size, Image.Resampling.BICUBIC)
    return im


def as_trained(pixels: np.ndarray, bucket: tuple[int, int], s: DatasetSettings,
               origin: tuple[int, int]) -> np.ndarray:
    """The training pixels (uint8 HxWx3 at the bucket size) from an intermediate image."""
    bw, bh = bucket
    if s.crop:
        x, y = origin
        return pixels[y:y + bh, x:x + bw]
    if pixels.shape[1] == bw and pixels.shape[0] == bh:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((bw, bh), Image.Resampling.LANCZOS))
