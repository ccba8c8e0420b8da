"""A file as it is on disk beside the pixels training sees, for the wizard's dataset screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from floydtui.data import metadata as md
from floydtui.data.pipeline import (
    DatasetSettings,
    as_trained,
    crop_origin,
    crop_rng,
    downsample,
    load_rgb,
    record_key,
)
from floydtui.data.scan import scan_dataset
from floydtui.errors import FloydError


def preview_pair(preset: Any, dataset_id: str, path: str | Path, *, epoch: int = 0) -> tuple[Image.Image, Image.Image]:
    """(the original upright RGB image, the training pixels of `epoch`) for one file of a dataset.

    The crop is the one a run with the preset's seed cuts in that epoch (the first pass).
    Raises FloydError for an unknown dataset, a file outside it, or a skipped file (with why).
    """
    where = f"[[datasets]] {dataset_id!r}"
    ds = next((d for d in preset.image_datasets if d["id"] == dataset_id), None)
    if ds is None:
        ids = ", ".join(d["id"] for d in preset.image_datasets)
        raise FloydError.one(f"no image dataset {dataset_id!r}", hint=f"image datasets are: {ids}")
    s = DatasetSettings.from_preset(preset, ds)
    wanted = Path(path)
    target = wanted if wanted.is_absolute() else s.folder / wanted
    scan = scan_dataset(s, preset.stage)
    rec = next((r for r in scan.records if r.path == str(target) or r.rel == wanted.as_posix()), None)
    if rec is None:
        raise FloydError.one(f"{path} is not an image of this dataset", where=where,
                             hint=f"images are found under {s.folder}")
    if not rec.usable:
        raise FloydError.one(f"{rec.rel} is skipped: {rec.reason} ({rec.detail})", where=where)
    try:
        original, _ = load_rgb(rec.path)
    except Exception as e:  # the file changed since the scan
        reason, detail = md.decode_failure(e)
        raise FloydError.one(f"{rec.rel} cannot be shown: {reason} ({detail})", where=where)
    plan = rec.plan
    rng = crop_rng(preset.training["seed"], epoch, record_key(s.id, rec.rel), 0) \
        if s.crop_style == "random" else None
    origin = crop_origin(s.crop_style, plan.intermediate, plan.bucket, rng)
    pixels = np.asarray(downsample(original, plan.steps))
    return original, Image.fromarray(np.ascontiguousarray(as_trained(pixels, plan.bucket, s, origin)))
