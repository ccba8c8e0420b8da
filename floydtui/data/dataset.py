"""The training data of a preset: usable images, captions, aspect buckets, batches.

`TrainingData(preset)` scans every image dataset (headers, through the metadata cache),
stops with a `FloydError` on the errors DESIGN.md section 5 and `floydtui check` name, then
fills the pixel cache, so that an epoch costs crops of small cached arrays rather than
decodes of full-size photos. Batches hold one bucket each; their order and random crops
follow from (seed, epoch) alone, so a resumed run sees the batches it would have seen.

No torch here: the trainer turns `Batch.pixels` into tensors.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from floydtui.data import metadata as md
from floydtui.data.pixel_cache import build_entry, entry_is_complete, entry_path, read_entry
from floydtui.data.pipeline import DatasetSettings, as_trained, crop_origin, crop_rng, record_key
from floydtui.data.scan import DatasetScan, FileRecord, add_bucket_problems, dataset_problems, scan_dataset
from floydtui.errors import FloydError, Problem
from floydtui.events import EventWriter

_PROGRESS_EVERY_S = 0.25  # progress events at most this often, so a big scan does not flood the stream


@dataclass(frozen=True)
class ImageRecord:
    """One usable image: where it is, its final caption, its sizes and its bucket."""

    path: str
    rel: str
    caption: str
    dataset: str
    original_size: tuple[int, int]
    intermediate_size: tuple[int, int]
    bucket: tuple[int, int]  # (width, height)
    repeats: int
    settings: DatasetSettings = field(repr=False, compare=False)
    steps: tuple[tuple[int, int], ...] = field(repr=False, default=())
    file_size: int = field(repr=False, default=0)
    mtime_ns: int = field(repr=False, default=0)

    @property
    def cache_entry(self) -> Path:
        return entry_path(Path(self.path), self.file_size, self.mtime_ns, self.intermediate_size)


@dataclass
class Batch:
    """Images of one bucket, ready to become a tensor."""

    pixels: np.ndarray  # uint8 [B, H, W, 3], RGB, at the bucket size
    captions: list[str]  # final: instance prompt prepended etc.
    paths: list[str]
    bucket: tuple[int, int]  # (width, height)
    epoch: int
    index: int  # position of this batch within this rank's epoch: resume with start=index + 1


@dataclass
class EvalImage:
    """A stage II eval image: training pixels (center crop) of a fixed random pick."""

    pixels: np.ndarray  # uint8 HxWx3
    caption: str
    path: str
    dataset: str


class TrainingData:
    """The usable images of a preset's image datasets, with captions, buckets and a pixel cache."""

    def __init__(self, preset: Any, *, seed: int | None = None, events: EventWriter | None = None,
                 resolution: int | None = None) -> None:
        self.preset = preset
        self.seed = preset.training["seed"] if seed is None else seed
        self.events = events
        self.batch_size = preset.training["train_batch_size"]
        self._emit("phase", name="scan")
        self.scans: list[DatasetScan] = [
            scan_dataset(DatasetSettings.from_preset(preset, ds, resolution), preset.stage,
                         progress=self._progress_reporter(), flavour=preset.flavour.name)
            for ds in preset.image_datasets]
        self._recheck()
        self._fill_pixel_cache()
        self.records: list[ImageRecord] = [_image_record(r, s.settings) for s in self.scans for r in s.usable]
        self.warnings: list[Problem] = [p for s in self.scans for p in s.problems if not p.is_error]
        self._by_bucket: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(self.records):
            self._by_bucket.setdefault(r.bucket, []).append(i)
        self._keys = [record_key(r.dataset, r.rel) for r in self.records]
        self._broken: set[int] = set()
        self._unreported: deque[Problem] = deque()  # found in worker threads, emitted by the consumer

    # ---- scan and cache ------------------------------------------------
    def _recheck(self) -> None:
        """Recompute the problems (after files failed to decode) and stop on errors."""
        for scan in self.scans:
            scan.problems = dataset_problems(scan, self.preset.stage, self.preset.flavour.name)
        add_bucket_problems(self.scans, self.batch_size)
        errors = [p for s in self.scans for p in s.problems if p.is_error]
        if errors:
            raise FloydError(errors)

    def _fill_pixel_cache(self) -> None:
        """Decode and downsample every image the cache lacks; a file that fails is skipped, not fatal."""
        todo = [(scan, r) for scan in self.scans for r in scan.usable
                if not entry_is_complete(_entry(r), r.plan.intermediate)]
        if not todo:
            return
        report = self._progress_reporter()
        failed: dict[str, list[FileRecord]] = {}
        workers = max(1, min(8, (os.cpu_count() or 2)))
        with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while it decodes and resizes
            futures = {pool.submit(_store, r): (scan, r) for scan, r in todo}
            for done, future in enumerate(as_completed(futures), 1):
                scan, r = futures[future]
                try:
                    future.result()
                except Exception as e:  # any decode failure of a user's file is a skip reason
                    r.status = "skipped"
                    r.reason, r.detail = md.decode_failure(e)
                    failed.setdefault(scan.id, []).append(r)
                report(done, len(todo))
        for scan in self.scans:
            if scan.id in failed:
                cache = md.MetadataCache(scan.settings.folder)
                for r in failed[scan.id]:
                    cache.mark_skipped(r.rel, r.reason, r.detail)
                cache.save()
        if failed:
            self._recheck()

    def _progress_reporter(self):
        started, last = time.perf_counter(), [0.0]

        def report(done: int, total: int) -> None:
            now = time.perf_counter()
            if done < total and now - last[0] < _PROGRESS_EVERY_S:
                return
            last[0] = now
            rate = done / (now - started) if now > started else 0.0
            self._emit("progress", phase="scan", done=done, total=total, rate=round(rate, 1))
        return report

    def _flush_warnings(self) -> None:
        """Emit the warnings found while cutting batches (the event stream is written from one thread)."""
        while self._unreported:
            problem = self._unreported.popleft()
            self._emit("warning", message=problem.message, hint=problem.hint)

    def _emit(self, type_: str, **fields: Any) -> None:
        if self.events:
            self.events.emit(type_, **fields)

    # ---- what the trainer asks ----------------------------------------
    def captions(self) -> list[str]:
        """The unique captions of all usable images, in record order (for the embed cache)."""
        return list(dict.fromkeys(r.caption for r in self.records))

    def steps_per_epoch(self, batch_size: int, world_size: int = 1) -> int:
        """Batches each rank gets per epoch (incomplete bucket tails dropped)."""
        total = sum(self._samples(idx) // batch_size for idx in self._by_bucket.values())
        return total // world_size

    def rank_feed_problems(self, batch_size: int, world_size: int) -> list[Problem]:
        """Buckets too small to give each of `world_size` processes a full batch: stopping errors.

        SimpleTuner's rule for several processes: every bucket holds at least train_batch_size x
        processes samples (repeats counted), or some processes would idle on it while others train.
        """
        problems = []
        for (w, h), indices in sorted(self._by_bucket.items()):
            have, need = self._samples(indices), batch_size * world_size
            if world_size < 2 or have >= need:
                continue
            fixes = [f"add images that fall in the {w}x{h} bucket (or raise the dataset's repeats)"]
            if have // world_size >= 1:
                fixes.insert(0, f"lower train_batch_size to {have // world_size}")
            if have // batch_size >= 1:
                fixes.insert(1, f"run on {have // batch_size} process(es)")
            ids = sorted({self.records[i].dataset for i in indices})
            problems.append(Problem(
                f"bucket {w}x{h} has {have} sample(s), fewer than train_batch_size {batch_size} x {world_size} "
                f"processes = {need}: it cannot feed every process a full batch",
                where=", ".join(f"[[datasets]] {i!r}" for i in ids), key="train_batch_size",
                hint=", or ".join(fixes)))
        return problems

    def _samples(self, indices: list[int]) -> int:
        return sum(1 + self.records[i].repeats for i in indices)

    def _epoch_plan(self, epoch: int, batch_size: int, rank: int, world_size: int) -> list[list[tuple[int, int]]]:
        """This rank's batches of an epoch, as lists of (record index, pass number)."""
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"batch_size {batch_size}, rank {rank}, world_size {world_size}")
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for bucket in sorted(self._by_bucket):
            samples = [(i, p) for i in self._by_bucket[bucket] for p in range(1 + self.records[i].repeats)]
            order = rng.permutation(len(samples))
            for k in range(len(samples) // batch_size):
                batches.append([samples[j] for j in order[k * batch_size:(k + 1) * batch_size]])
        batches = [batches[j] for j in rng.permutation(len(batches))]
        # Every rank gets the same number of batches, or the others would wait at the last step.
        return batches[rank::world_size][:len(batches) // world_size]

    def batches(self, epoch: int, batch_size: int, *, start: int = 0, rank: int = 0,
                world_size: int = 1, workers: int = 0) -> Iterator[Batch]:
        """The batches of one epoch for this rank, from batch `start` on (resume skips without reading).

        With `workers` > 0, that many threads cut the next batches ahead of the consumer; the
        order and the pixels are the same as without them.
        """
        plan = self._epoch_plan(epoch, batch_size, rank, world_size)
        if not workers:
            for index in range(start, len(plan)):
                batch = self._batch(plan, epoch, index)
                self._flush_warnings()
                yield batch
            return
        pool = ThreadPoolExecutor(workers, thread_name_prefix="floydtui-batches")
        ahead: deque = deque()
        upcoming = iter(range(start, len(plan)))
        try:
            while True:
                # Keep two batches per worker in flight: enough to hide a slow read, little memory.
                while len(ahead) < 2 * workers and (index := next(upcoming, None)) is not None:
                    ahead.append(pool.submit(self._batch, plan, epoch, index))
                if not ahead:
                    return
                batch = ahead.popleft().result()
                self._flush_warnings()
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _batch(self, plan: list[list[tuple[int, int]]], epoch: int, index: int) -> Batch:
        """Batch `index` of an epoch's plan: each sample's crop at its bucket size."""
        crops, captions, paths = [], [], []
        bucket = self.records[plan[index][0][0]].bucket
        for i, pass_no in plan[index]:
            i, pixels = self._load(i)
            r = self.records[i]
            rng = crop_rng(self.seed, epoch, self._keys[i], pass_no) if r.settings.crop_style == "random" else None
            crops.append(as_trained(pixels, r.bucket, r.settings,
                                    crop_origin(r.settings.crop_style, r.intermediate_size, r.bucket, rng)))
            captions.append(r.caption)
            paths.append(r.path)
        return Batch(np.stack(crops), captions, paths, bucket, epoch, index)

    def eval_images(self, per_dataset: int | dict[str, int], seed: int) -> list[EvalImage]:
        """Images from each dataset, picked at random with `seed` (the same every run).

        `per_dataset` is one count for every dataset, or a count per dataset id (missing ids: none).
        """
        out = []
        for scan in self.scans:
            count = per_dataset.get(scan.id, 0) if isinstance(per_dataset, dict) else per_dataset
            indices = [i for i, r in enumerate(self.records) if r.dataset == scan.id]
            rng = np.random.default_rng([seed, record_key(scan.id, "")])
            picks = sorted(rng.choice(len(indices), size=min(count, len(indices)), replace=False))
            for j in picks:
                i, pixels = self._load(indices[j])
                r = self.records[i]
                origin = crop_origin("center", r.intermediate_size, r.bucket, None)
                pixels = np.ascontiguousarray(as_trained(pixels, r.bucket, r.settings, origin))
                out.append(EvalImage(pixels, r.caption, r.path, r.dataset))
        self._flush_warnings()
        return out

    # ---- pixels ----------------------------------------------------------
    def _pixels(self, i: int) -> np.ndarray:
        """An image's cached pixels; a damaged entry is rebuilt from the source file."""
        r = self.records[i]
        pixels = read_entry(r.cache_entry, r.intermediate_size)
        if pixels is None:
            pixels = build_entry(Path(r.path), r.steps, r.intermediate_size, r.cache_entry)
        return pixels

    def _load(self, i: int) -> tuple[int, np.ndarray]:
        """(index, pixels) of image `i`, or of another image of its bucket if `i`'s file broke.

        A run does not stop for one bad file: the substitute keeps the batch full and a
        warning says which file was dropped.
        """
        bucket = self.records[i].bucket
        for j in [i, *(j for j in self._by_bucket[bucket] if j != i)]:
            if j in self._broken:
                continue
            try:
                return j, self._pixels(j)
            except Exception as e:  # the file changed or vanished after the scan
                self._broken.add(j)
                r = self.records[j]
                reason, detail = md.decode_failure(e)
                problem = Problem(f"{r.path} became unusable during the run ({reason}: {detail}): "
                                  "another image of its bucket takes its place",
                                  where=f"[[datasets]] {r.dataset!r}", hint="restore or remove the file",
                                  severity="warning")
                self.warnings.append(problem)
                self._unreported.append(problem)
        raise FloydError([Problem(f"every image of bucket {bucket[0]}x{bucket[1]} became unreadable during the run",
                                  hint="check the disk holding the dataset and the pixel cache")])


def eval_image_counts(preset: Any) -> dict[str, int]:
    """Stage II eval images per image dataset: its own num_eval_images, else the [validation] one."""
    default = preset.validation["num_eval_images"]
    return {ds["id"]: default if ds["num_eval_images"] is None else ds["num_eval_images"]
            for ds in preset.image_datasets}


def eval_image_problem(preset: Any) -> Problem | None:
    """A stage II preset whose datasets give no eval image has nothing to validate or load-check with."""
    if preset.stage != 2 or any(eval_image_counts(preset).values()):
        return None
    return Problem(f"{preset.flavour.name} validates by upscaling eval images from the datasets, but "
                   "num_eval_images is 0 for every dataset", where="[validation]", key="num_eval_images",
                   hint="set num_eval_images = 4 in [validation] (or on a [[datasets]] entry)")


def _store(r: FileRecord) -> None:
    """Fill one cache entry; the pixels are not kept (a big dataset would not fit in memory)."""
    build_entry(Path(r.path), r.plan.steps, r.plan.intermediate, _entry(r))


def _entry(r: FileRecord) -> Path:
    return entry_path(Path(r.path), r.file_size, r.mtime_ns, r.plan.intermediate)


def _image_record(r: FileRecord, s: DatasetSettings) -> ImageRecord:
    return ImageRecord(path=r.path, rel=r.rel, caption=r.caption or "", dataset=r.dataset,
                       original_size=r.original_size, intermediate_size=r.plan.intermediate,
                       bucket=r.plan.bucket, repeats=s.repeats, settings=s, steps=r.plan.steps,
                       file_size=r.file_size, mtime_ns=r.mtime_ns)
