"""Benchmarks of the datasets layer (issue 3); writes bench/results/data.md.

1. Scan of 2,000 generated 1024x768 JPEGs: images/s cold (empty metadata cache) and warm
   (unchanged folder). Target: warm at least 20x faster.
2. One epoch of batches from the pixel cache against decoding and resizing every source
   image at every step, as the diffusers example scripts do (PIL open, EXIF transpose, RGB,
   resize the short edge to the resolution, random crop), same images, same batches.
   Target: at least 10x faster.

Run: .venv/bin/python bench/bench_data.py [--images N]. Generated files live in a temp dir.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import cpu_name, publish

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "data.md"
SIZE = (1024, 768)
BATCH = 4


def generate(folder: Path, count: int, variants: int = 40) -> float:
    """`count` 1024x768 JPEGs (`variants` distinct pictures, each under many names); returns seconds.

    Every file is decoded on its own by the scan and the epochs, so repeating pictures
    changes no measurement; it only keeps generating them quick.
    """
    start = time.perf_counter()
    folder.mkdir(parents=True)
    w, h = SIZE
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    base = np.stack([x * 255 // w, y * 255 // h, (x ^ y) & 255], axis=-1).astype(np.int16)
    base += rng.integers(-12, 12, size=base.shape, dtype=np.int16)
    encoded = []
    for i in range(variants):
        tint = np.array([(i * 37) % 64, (i * 59) % 64, (i * 83) % 64], dtype=np.int16)
        pixels = (np.roll(base, i * 23, axis=1) + tint).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
        encoded.append(buf.getvalue())
    for i in range(count):
        (folder / f"{i:05d}.jpg").write_bytes(encoded[i % variants])
    return time.perf_counter() - start


def evict_from_page_cache(folder: Path) -> None:
    """Drop the files' pages from the OS cache (this process's files only), so reads hit the disk."""
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # only clean pages can be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def preset_for(root: Path, folder: str = "images"):
    """The guide's dataloader example (crop square random at 64, 256 -> 128) on root/folder."""
    from floydtui.config.preset import preset_from_dict

    dataset = {"id": "bench", "instance_data_dir": folder, "crop": True, "crop_aspect": "square",
               "crop_style": "random", "resolution": 64, "minimum_image_size": 64, "maximum_image_size": 256,
               "target_downsample_size": 128, "caption_strategy": "filename", "repeats": 0}
    return preset_from_dict({"model": {"model_flavour": "i-medium-400m"},
                             "training": {"train_batch_size": BATCH}, "datasets": [dataset]},
                            source=root / "preset.toml")


def diffusers_style(path: str, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """What the diffusers DreamBooth/LoRA example datasets do per image per step."""
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = im.size
    scale = resolution / min(w, h)
    im = im.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))),
                   Image.Resampling.BILINEAR)
    x = int(rng.integers(0, im.size[0] - resolution + 1))
    y = int(rng.integers(0, im.size[1] - resolution + 1))
    return np.asarray(im)[y:y + resolution, x:x + resolution]


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, Python " \
           f"{platform.python_version()}, Pillow {Image.__version__}, numpy {np.__version__}"


def main() -> int:
    """Run both benchmarks and write the results table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="JPEGs to scan")
    parser.add_argument("--epoch-images", type=int, default=1000,
                        help="of those, how many the epoch benchmark trains on (the cache build is the slow part)")
    args = parser.parse_args()
    count, epoch_count = args.images, min(args.epoch_images, args.images)
    with tempfile.TemporaryDirectory(prefix="floydtui-bench-data-") as tmp:
        root = Path(tmp)
        os.environ["FLOYDTUI_CACHE"] = str(root / "cache")
        from floydtui.data.dataset import TrainingData
        from floydtui.data.pipeline import DatasetSettings
        from floydtui.data.scan import scan_dataset

        print(f"generating {count} {SIZE[0]}x{SIZE[1]} JPEGs ...", flush=True)
        gen_s = generate(root / "images", count)
        preset = preset_for(root)
        settings = DatasetSettings.from_preset(preset, preset.image_datasets[0])

        def cold_scan(evict: bool) -> float:
            shutil.rmtree(root / "cache" / "scan", ignore_errors=True)
            if evict:
                evict_from_page_cache(root / "images")
            scan = scan_dataset(settings)
            assert scan.probed == count
            return scan.seconds

        def warm_scan() -> float:
            scan = scan_dataset(settings)
            assert scan.probed == 0 and len(scan.usable) == count
            return scan.seconds

        # The best of several runs each: the machine is shared, and the minimum is the least disturbed.
        cold_cached = min(cold_scan(evict=False) for _ in range(3))
        warm = min(warm_scan() for _ in range(10))
        can_evict = hasattr(os, "posix_fadvise")
        cold_disk = min(cold_scan(evict=True) for _ in range(3)) if can_evict else float("nan")
        print(f"scan cold {cold_disk:.2f}s from disk, {cold_cached:.2f}s from the page cache; "
              f"warm {warm:.3f}s", flush=True)

        epoch_dir = root / "epoch"
        epoch_dir.mkdir()
        for path in sorted((root / "images").iterdir())[:epoch_count]:
            os.link(path, epoch_dir / path.name)
        start = time.perf_counter()
        data = TrainingData(preset_for(root, "epoch"))
        build_s = time.perf_counter() - start
        print(f"pixel cache built in {build_s:.1f}s", flush=True)

        start = time.perf_counter()
        cached = [b.pixels for b in data.batches(0, BATCH)]
        cached_s = time.perf_counter() - start

        # The same batches, every image decoded and resized from its source file at every step.
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        baseline = [np.stack([diffusers_style(p, 64, rng) for p in b.paths]) for b in data.batches(0, BATCH)]
        baseline_s = time.perf_counter() - start
        assert len(cached) == len(baseline) and cached[0].shape == baseline[0].shape

    steps = len(cached)
    disk_ratio, cached_ratio = cold_disk / warm, cold_cached / warm
    epoch_ratio = baseline_s / cached_s
    rows = [
        ("generate the JPEGs (not a measurement of floydtui)", f"{gen_s:.1f} s", ""),
        ("scan, cold from disk (files evicted from the OS page cache; no metadata cache)",
         f"{cold_disk:.2f} s", f"{count / cold_disk:,.0f} images/s"),
        ("scan, cold from the page cache (files just written; no metadata cache)", f"{cold_cached:.2f} s",
         f"{count / cold_cached:,.0f} images/s"),
        ("scan, warm (unchanged folder: one stat per file, no image opened)", f"{warm:.3f} s",
         f"{count / warm:,.0f} images/s"),
        ("**warm vs cold scan from disk** (target >= 20x)", f"**{disk_ratio:.0f}x**",
         "met" if disk_ratio >= 20 else "MISSED"),
        ("warm vs cold scan with the files already in memory", f"{cached_ratio:.0f}x",
         "met" if cached_ratio >= 20 else "below 20x: see the note"),
        (f"pixel cache build for {epoch_count} of the images (decode, 25% steps to 171x128, store)",
         f"{build_s:.1f} s", f"{epoch_count / build_s:,.0f} images/s"),
        (f"epoch from the pixel cache ({steps} batches of {BATCH}, 64px random crops)", f"{cached_s:.2f} s",
         f"{steps * BATCH / cached_s:,.0f} images/s"),
        ("epoch decoding + resizing every source image each step", f"{baseline_s:.2f} s",
         f"{steps * BATCH / baseline_s:,.0f} images/s"),
        ("**cached vs decode-every-step epoch** (target >= 10x)", f"**{epoch_ratio:.0f}x**",
         "met" if epoch_ratio >= 10 else "MISSED"),
    ]
    publish(RESULTS, [
        "## Datasets (bench/bench_data.py)",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}.",
        f"{count} generated {SIZE[0]}x{SIZE[1]} JPEGs (quality 85, 40 distinct pictures) in a temp folder; "
        "the guide's dataloader example (resolution 64, minimum 64, maximum 256, target 128, square random "
        f"crops); the epoch benchmark uses {epoch_count} of them. Scan times are the best of three runs "
        "(warm: of ten), as the machine is shared.",
        "",
        "A cold scan reads each file's header and end marker; a warm one stats each file and opens none. "
        "The first scan of a dataset usually reads from disk (simulated here by evicting the files from the "
        "OS page cache with posix_fadvise): that is the cold scan the target is measured against. With the "
        "files already in the page cache a cold scan costs about 0.1 ms a file, while the warm one is bounded "
        "by a stat and a little Python per file, so that ratio is smaller; both are reported.",
        "",
        "| measurement | time | rate / verdict |",
        "| --- | --- | --- |",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
    ])
    return 0 if disk_ratio >= 20 and epoch_ratio >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
