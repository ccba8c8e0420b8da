"""Scanning a preset's image datasets: the per-file decision, summaries, and dataset problems.

`scan_preset` is what `floydtui scan`, `floydtui check` and the wizard's live summary use.
It reads headers only (through the metadata cache) and never builds the pixel cache.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from floydtui.data import metadata as md
from floydtui.data.captions import caption_for, sidecar_of
from floydtui.data.discover import IMAGE_EXTENSIONS, Discovery, ScanCancelled, discover_images, extension_of
from floydtui.data.pipeline import (
    SMALLER_THAN_MINIMUM,
    SMALLER_THAN_RESOLUTION,
    TRANSPARENCY_NOTE,
    DatasetSettings,
    Plan,
    plan_image,
)
from floydtui.errors import Problem

# The wizard's bound on a folder walk: a typed "/" or a home folder is not a dataset.
WIZARD_MAX_FILES = 20_000
WIZARD_MAX_SECONDS = 5.0
NOT_IMAGE = "not_image"  # the status of a file that is not an image by its extension
CAPTION_FILE = "caption file"

# Below this average share of the scene kept by crops, check warns (the guide's own
# 64px crops of 128px images keep 25%).
LOW_COVERAGE = 0.25
STAGE_II_SIZE = 256  # stage II trains at its 256px output size


@dataclass(slots=True)  # slots: a scan makes one per file, and a rescan should cost little more than stat
class FileRecord:
    """The pipeline's decision for one file (DESIGN.md section 5's JSON shape, plus where and why)."""

    rel: str
    path: str
    dataset: str
    status: str  # "ok" | "skipped" | "not_image"
    reason: str | None = None  # the skip reason, one of a few fixed phrases
    detail: str = ""  # the numbers behind the reason
    note: str = ""  # what was done to make it usable (colour mode, transparency, caption fallback)
    original_size: tuple[int, int] | None = None
    plan: Plan | None = None
    caption: str | None = None
    file_size: int = 0
    mtime_ns: int = 0
    frames: int = 1  # pages of a TIFF, frames of a GIF: the first is used

    @property
    def usable(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """The `scan --json` line for this file."""
        plan = self.plan if self.usable else None
        return {
            "path": self.path, "status": self.status, "reason": self.reason,
            "original_size": list(self.original_size) if self.original_size else None,
            "intermediate_size": list(plan.intermediate) if plan else None,
            "bucket": list(plan.bucket) if plan else None,
            "caption": self.caption if self.usable else None,
            "dataset": self.dataset, "detail": self.detail, "note": self.note,
        }


@dataclass
class DatasetScan:
    """One image dataset: every file's record, counts, and the problems found."""

    settings: DatasetSettings
    records: list[FileRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    probed: int = 0  # files whose headers were read (0 on an unchanged folder)
    seconds: float = 0.0
    unlisted: list[str] = field(default_factory=list)  # subfolders that could not be listed
    loops: list[str] = field(default_factory=list)  # folders reached twice through links
    not_images: list[FileRecord] = field(default_factory=list)  # every other file, with its status
    bounded: int | None = None  # the walk stopped after more than this many files: nothing was decided

    @property
    def files(self) -> int:
        """Every file found: images and not."""
        return len(self.records) + len(self.not_images)

    @property
    def not_images_by_extension(self) -> Counter:
        return Counter(extension_of(r.rel) for r in self.not_images if r.reason != CAPTION_FILE)

    @property
    def caption_files(self) -> int:
        return sum(1 for r in self.not_images if r.reason == CAPTION_FILE)

    @property
    def id(self) -> str:
        return self.settings.id

    @property
    def usable(self) -> list[FileRecord]:
        return [r for r in self.records if r.usable]

    @property
    def skipped_by_reason(self) -> Counter:
        return Counter(r.reason for r in self.records if not r.usable)

    @property
    def bound_message(self) -> str:
        """The wizard's question when the walk stopped at its bound."""
        return (f"more than {self.bounded:,} files under {self.settings.folder} — is this the dataset folder?"
                if self.bounded is not None else "")

    @property
    def downsampled(self) -> int:
        return sum(1 for r in self.usable if r.plan and r.plan.downsampled)

    @property
    def buckets(self) -> Counter:
        return Counter(r.plan.bucket for r in self.usable if r.plan)

    @property
    def coverage(self) -> float | None:
        """The average share of the (downsampled) image that training pixels show."""
        usable = self.usable
        return sum(r.plan.coverage for r in usable) / len(usable) if usable else None

    def summary_lines(self) -> list[str]:
        """A human summary: usable, skipped by reason, downsampled, buckets, crop coverage."""
        s = self.settings
        lines = [f"{s.id}: {s.folder}", f"  {s.describe()}"]
        if self.bounded is not None:
            return lines + [f"  {self.bound_message}"]
        usable, skipped = len(self.usable), len(self.records) - len(self.usable)
        lines.append(f"  {len(self.records)} files: {usable} usable, {skipped} skipped, "
                     f"{self.downsampled} downsampled")
        if skipped:
            lines.append("  skipped: " + ", ".join(f"{n} {why}" for why, n in self.skipped_by_reason.most_common()))
        others = self.not_images_by_extension
        if others or self.caption_files:
            parts = [f"{n} {ext}" for ext, n in sorted(others.items(), key=lambda kv: (-kv[1], kv[0]))]
            if self.caption_files:
                parts.append(f"{self.caption_files} caption file{'s' if self.caption_files != 1 else ''}")
            lines.append(f"  not images: {', '.join(parts)}")
        frames = sum(1 for r in self.usable if r.frames > 1)
        if frames:
            lines.append(f"  {frames} multi-page or animated file{'s' if frames != 1 else ''}: "
                         "the first page or frame is used")
        if self.buckets:
            lines.append("  buckets: " + ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(self.buckets.items())))
        if self.coverage is not None and s.crop:
            lines.append(f"  crops keep {self.coverage:.0%} of the scene on average")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The counts, for `check --json` and the wizard."""
        return {"id": self.id, "folder": str(self.settings.folder), "files": len(self.records),
                "usable": len(self.usable), "skipped": dict(self.skipped_by_reason),
                "not_images": dict(self.not_images_by_extension), "caption_files": self.caption_files,
                "downsampled": self.downsampled,
                "buckets": {f"{w}x{h}": n for (w, h), n in sorted(self.buckets.items())},
                "coverage": round(self.coverage, 4) if self.coverage is not None else None}


Progress = Callable[[int, int], None]  # (done, total)


def scan_preset(preset: Any, resolution: int | None = None, *, max_files: int | None = None,
                max_seconds: float | None = None, unbounded: Iterable[Path] = (),
                should_stop: Callable[[], bool] | None = None) -> list[DatasetScan]:
    """Scan every image dataset of a preset (headers only) and add the cross-dataset problems.

    `max_files` / `max_seconds` bound each folder's walk (the wizard's live scan), except for
    the folders in `unbounded`; `should_stop` cancels (discover.ScanCancelled).
    """
    free = {Path(f) for f in unbounded}
    scans = []
    for ds in preset.image_datasets:
        s = DatasetSettings.from_preset(preset, ds, resolution)
        bound = {} if s.folder in free else {"max_files": max_files, "max_seconds": max_seconds}
        scans.append(scan_dataset(s, stage=preset.stage, flavour=preset.flavour.name, should_stop=should_stop,
                                  **bound))
    add_bucket_problems(scans, preset.training["train_batch_size"])
    return scans


def scan_dataset(s: DatasetSettings, stage: int = 1, progress: Progress | None = None,
                 flavour: str = "", *, max_files: int | None = None, max_seconds: float | None = None,
                 should_stop: Callable[[], bool] | None = None) -> DatasetScan:
    """The per-file decisions for one dataset, through its metadata cache (`flavour` names it in messages).

    A walk stopped at `max_files` / `max_seconds` gives a scan with `bounded` set and no records.
    """
    start = time.perf_counter()
    scan = DatasetScan(s)
    if not s.folder.is_dir():
        scan.problems = dataset_problems(scan, stage, flavour)
        return scan
    found = discover_images(s.folder, max_files=max_files, max_seconds=max_seconds, should_stop=should_stop)
    if found.bounded:
        scan.bounded = max_files if max_files is not None and found.count > max_files else found.count
        scan.problems = dataset_problems(scan, stage, flavour)
        scan.seconds = time.perf_counter() - start
        return scan
    cache = md.MetadataCache(s.folder)
    total = len(found.files)

    plans: dict[tuple[int, int], Plan] = {}  # sizes repeat (one camera, one size): plan each once

    def read_sidecar(txt: str) -> dict:
        return cache.sidecar(txt, s.folder / txt)
    for i, (rel, path, st) in enumerate(found.files):
        scan.records.append(_record(rel, path, cache.facts(rel, path, st), s, read_sidecar, plans))
        if (i + 1) % 64 == 0:
            if should_stop is not None and should_stop():
                cache.save()  # what was probed so far makes the next scan quicker
                raise ScanCancelled(str(s.folder))
            if progress:
                progress(i + 1, total)
    if progress:
        progress(total, total)
    rels = {rel for rel, _, _ in found.files}
    scan.not_images = _not_images(found, rels, s.id)
    sidecars = {sidecar_of(r) for r in rels} if s.caption_strategy == "textfile" else set(cache.sidecars)
    cache.keep_only(rels, sidecars)
    cache.save()
    scan.probed = cache.probed
    scan.unlisted, scan.loops = found.unlisted, found.loops
    scan.problems = dataset_problems(scan, stage, flavour)
    scan.seconds = time.perf_counter() - start
    return scan


def _not_images(found: Discovery, image_rels: set[str], dataset: str) -> list[FileRecord]:
    """A record for each file that is not an image: a caption file beside an image, or something else."""
    captions = {sidecar_of(r) for r in image_rels}
    out = []
    for rel, path in found.others:
        if rel in captions:
            out.append(FileRecord(rel, path, dataset, NOT_IMAGE, CAPTION_FILE, "the caption file of an image"))
        else:
            ext = extension_of(rel)
            out.append(FileRecord(rel, path, dataset, NOT_IMAGE, md.NOT_AN_IMAGE,
                                  f"{ext} is not an image extension floydtui reads"))
    return out


def _record(rel: str, path: str, facts: dict[str, Any], s: DatasetSettings,
            read_sidecar: Callable[[str], dict], plans: dict[tuple[int, int], Plan]) -> FileRecord:
    if facts["status"] != "ok":
        return FileRecord(rel, path, s.id, "skipped", facts["reason"], facts["detail"], "", None, None, None,
                          facts.get("size", 0), facts.get("mtime_ns", 0))
    size = (facts["w"], facts["h"])
    plan = plans.get(size)
    if plan is None:
        plan = plans[size] = plan_image(*size, s)
    if not plan.usable:
        return FileRecord(rel, path, s.id, "skipped", plan.skip_reason, plan.detail, "", size, plan, None,
                          facts["size"], facts["mtime_ns"])
    caption, caption_note = caption_for(rel, s, read_sidecar)
    mode_note = _mode_note(facts)
    note = f"{mode_note}; {caption_note}" if mode_note and caption_note else mode_note or caption_note
    return FileRecord(rel, path, s.id, "ok", None, "", note, size, plan, caption, facts["size"], facts["mtime_ns"],
                      facts.get("frames", 1))


def _mode_note(facts: dict[str, Any]) -> str:
    """How the file's colour mode becomes RGB, decided from the header."""
    frames = facts.get("frames", 1)
    mode_note = _colour_note(facts)
    if frames > 1:
        unit = "page" if facts.get("format") == "TIFF" else "frame"
        kind = "multi-page TIFF" if unit == "page" else f"animated {facts.get('format') or 'image'}"
        return f"{kind} ({frames} {unit}s): first {unit} used" + (f"; {mode_note}" if mode_note else "")
    return mode_note


def _colour_note(facts: dict[str, Any]) -> str:
    mode = facts["mode"]
    if mode == "RGB" and not facts["alpha"]:
        return ""
    if facts["alpha"]:
        return TRANSPARENCY_NOTE
    if mode.startswith("I;16") or mode == "I":
        return "16-bit, scaled to 8-bit RGB"
    if mode == "CMYK":
        return "CMYK, converted to RGB"
    if mode in ("L", "1", "P"):
        return {"L": "greyscale", "1": "black and white", "P": "palette"}[mode] + ", converted to RGB"
    return ""


def dataset_problems(scan: DatasetScan, stage: int, flavour: str = "") -> list[Problem]:
    """The stopping errors and the warnings (with numbers) of one scanned dataset."""
    s, where, out = scan.settings, f"[[datasets]] {scan.id!r}", []

    def warn(message: str, hint: str, key: str = "") -> None:
        out.append(Problem(message, where=where, hint=hint, severity="warning", key=key))

    if scan.bounded is not None:
        return [Problem(scan.bound_message, where=where, key="instance_data_dir",
                        hint="point instance_data_dir at the folder of training images, or scan all of it "
                             "(the Datasets step: ctrl+g)")]
    if not s.folder.is_dir():
        what = "is not a folder" if s.folder.exists() else "does not exist"
        return [Problem(f"instance_data_dir {s.folder} {what}", where=where, key="instance_data_dir",
                        hint="point instance_data_dir at the folder of training images "
                             "(a relative path is relative to the preset's folder)")]
    skipped = scan.skipped_by_reason
    name = flavour or "this stage II flavour"
    if stage == 2 and s.resolution < STAGE_II_SIZE:
        out.append(Problem(
            f"{name} is the 64->{STAGE_II_SIZE} upscaler but this dataset's resolution is {s.resolution}",
            where=where, key="resolution", hint=f"remove the dataset's resolution (the preset's applies) or set "
            f"it to {STAGE_II_SIZE}: stage II trains at its output size"))
    size = max(s.resolution, STAGE_II_SIZE) if stage == 2 else s.resolution
    short_edges = [min(r.original_size) for r in scan.records if r.original_size]
    if stage == 2 and short_edges and max(short_edges) < size:
        # Stage II learns the detail a 64px image lacks: it needs originals at its output size.
        out.append(Problem(
            f"{name} trains the 64->{size} upscaler on {size}px images, but all {len(short_edges)} images in "
            f"{s.folder} are under {size}px on the short side (the largest is {max(short_edges)}px)",
            where=where, key="instance_data_dir",
            hint=f"point instance_data_dir at images at least {size}px on their short side (floydtui never "
                 "upsamples); images this small suit a stage I flavour such as i-medium-400m"))
    elif not scan.usable:
        if not scan.records:
            hint = f"put images ({' '.join(IMAGE_EXTENSIONS)}) in {s.folder} (subfolders count)"
            others = scan.not_images_by_extension
            if others:
                hint = (f"its {sum(others.values())} files are not images ("
                        + ", ".join(f"{n} {ext}" for ext, n in others.most_common(4)) + "): " + hint)
        elif skipped.most_common(1)[0][0] == SMALLER_THAN_MINIMUM:
            largest = max(min(r.original_size) for r in scan.records if r.original_size)
            hint = (f"lower minimum_image_size (the largest image's short edge is {largest}) and resolution "
                    f"to match, or add larger images; floydtui never upsamples")
        else:
            hint = "`floydtui scan PRESET` lists each file and why it was skipped"
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.most_common())
        out.append(Problem(f"no usable image in {s.folder}" + (f" ({reasons})" if reasons else ""),
                           where=where, hint=hint, key="instance_data_dir"))
    elif skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.most_common())
        hint = "`floydtui scan PRESET` lists each file and its reason"
        small = skipped.get(SMALLER_THAN_MINIMUM, 0) + skipped.get(SMALLER_THAN_RESOLUTION, 0)
        if stage == 2 and small:
            hint = (f"the {small} small images are below stage II's {s.resolution}px output: only a stage I "
                    "preset could use them; " + hint)
        warn(f"{sum(skipped.values())} of {len(scan.records)} files skipped: {reasons}", hint)
    fallbacks = [r for r in scan.usable if "caption file" in r.note]
    if fallbacks:
        warn(f"{len(fallbacks)} images have no usable caption file (missing, empty or not UTF-8): "
             "their filename is the caption", "add a UTF-8 .txt beside each image with its caption, "
             "or set caption_strategy = \"filename\"", key="caption_strategy")
    if s.crop and scan.coverage is not None and scan.coverage < LOW_COVERAGE:
        warn(f"crops keep {scan.coverage:.0%} of the scene on average ({s.resolution}px crops of larger images)",
             f"a target_downsample_size nearer {s.resolution} keeps more of each scene, "
             "or crop = false trains on the whole image resized", key="target_downsample_size")
    t, m = s.target_downsample_size, s.maximum_image_size
    if t and t > m:
        warn(f"target_downsample_size {t} is larger than maximum_image_size {m}: images between {m} and {t} "
             "are not downsampled at all", f"set target_downsample_size below maximum_image_size "
             f"(the guide: {m} -> {m // 2})", key="target_downsample_size")
    if t and t < s.resolution:
        warn(f"target_downsample_size {t} is below resolution {s.resolution}: downsampled images are too small "
             "to train on and are skipped", f"set target_downsample_size to at least {s.resolution} "
             f"(the guide: {2 * s.resolution})", key="target_downsample_size")
    if s.minimum_image_size < s.resolution:
        warn(f"minimum_image_size {s.minimum_image_size} is below resolution {s.resolution}: images in between "
             "are skipped, since floydtui never upsamples", f"set minimum_image_size = {s.resolution}",
             key="minimum_image_size")
    if s.resolution % 8:
        warn(f"resolution {s.resolution} is not a multiple of 8", f"use {max(8, round(s.resolution / 8) * 8)}",
             key="resolution")
    if stage == 1 and s.resolution >= STAGE_II_SIZE and scan.usable:
        warn(f"{len(scan.usable)} images train at {s.resolution}px, a size only a stage II preset uses "
             "(stage I is a 64px model)", "set this dataset's resolution to 64, or train it with a "
             "stage II flavour", key="resolution")
    for item in scan.unlisted:
        warn(f"cannot list {item}", "check the folder's permissions")
    for item in scan.loops:
        warn(f"{item} leads back to a folder already scanned (a symlink loop or a second link): walked once",
             "nothing to do, unless you meant the link to point elsewhere")
    return out


def add_bucket_problems(scans: list[DatasetScan], batch_size: int) -> None:
    """A bucket with fewer images than train_batch_size never fills a batch: a stopping error.

    Buckets pool images of the same size across datasets, as batches do.
    """
    members: dict[tuple[int, int], list[FileRecord]] = {}
    for scan in scans:
        for r in scan.usable:
            members.setdefault(r.plan.bucket, []).append(r)
    for (w, h), recs in sorted(members.items()):
        if len(recs) >= batch_size:
            continue
        ids = sorted({r.dataset for r in recs})
        owner = next(s for s in scans if s.id == ids[0])
        fixes = [f"lower train_batch_size to {len(recs)}", f"add images that fall in the {w}x{h} bucket"]
        if owner.settings.crop and owner.settings.crop_aspect == "preserve":
            fixes.append("use crop_aspect = \"square\" (one bucket for every image)")
        elif not owner.settings.crop:
            fixes.append("use crop = true with crop_aspect = \"square\"")
        owner.problems.append(Problem(
            f"bucket {w}x{h} has {len(recs)} image{'s' if len(recs) != 1 else ''}, fewer than train_batch_size "
            f"{batch_size}: a batch never fills, so they would never be trained",
            where=", ".join(f"[[datasets]] {i!r}" for i in ids), key="train_batch_size",
            hint=", or ".join(fixes)))
