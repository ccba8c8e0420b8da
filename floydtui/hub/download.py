"""Fetching a model into the hub cache: only the files the run needs, with progress.

Downloads go through huggingface_hub's `hf_hub_download` into its standard cache, so other
tools share them and a rerun fetches only what is missing: finished files stay in the cache
(and hf_xet reuses the chunks of an interrupted file it already has). Progress is a rich bar
on a terminal and `progress` events (phase "download", in bytes) for the monitor.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from floydtui.config.flavours import FLAVOURS
from floydtui.errors import FloydError
from floydtui.events import EventWriter
from floydtui.hub.access import access_error
from floydtui.hub.cache import cached_commit, snapshot_dir, write_ref
from floydtui.hub import disk
from floydtui.hub.disk import format_size, mount_point
from floydtui.hub.files import wanted_variant, weight_kind
from floydtui.hub.repo import RepoPlan, plan_repo

EMIT_EVERY_S = 0.5  # progress events per second the monitor needs, no more


def fetch_model(repo_id: str, *, stage: int, revision: str = "main", variant: str | None = None,
                events: EventWriter | None = None, text_encoder: bool = True,
                safety_checker: bool = False) -> Path:
    """A local snapshot folder with what IFPipeline / IFSuperResolutionPipeline needs from `repo_id`.

    `variant`: "auto" or None (fp16 where the repo has it), "fp16", or "none" (full precision).
    Stage I fetches T5 too unless `text_encoder=False`; stage II repos hold none (see
    `text_encoder_source`). The safety checker and watermarker only with `safety_checker=True`.
    Load the folder with `floydtui.train.models.load_pipeline`. Raises FloydError for access,
    network, offline and disk-space problems, before downloading anything.
    """
    plan = plan_repo(repo_id, stage=stage, revision=revision, variant=variant, role="model",
                     text_encoder=text_encoder and stage == 1, safety=safety_checker)
    return download(plan, events)


def text_encoder_source(repo_id: str, stage: int) -> str:
    """The repo whose text_encoder/ and tokenizer/ a run of `repo_id` uses.

    Stage I repos hold T5 themselves. Stage II repos hold none: every DeepFloyd stage I repo
    holds the same T5, so a stage I repo already in the cache is used, else DeepFloyd/IF-I-M-v1.0.
    """
    if stage == 1:
        return repo_id
    candidates = [f.hub_id for f in FLAVOURS.values() if f.stage == 1]
    for candidate in candidates:
        commit = cached_commit(candidate, "main")
        if commit and (snapshot_dir(candidate, commit) / "text_encoder" / "config.json").is_file():
            return candidate
    return candidates[0]


def fetch_text_encoder(repo_id: str, *, revision: str = "main", variant: str | None = None,
                       events: EventWriter | None = None) -> Path:
    """A snapshot folder holding `repo_id`'s text_encoder/ and tokenizer/ (T5 for a stage II run).

    Load with `T5EncoderModel.from_pretrained(folder, subfolder="text_encoder",
    variant=weights_variant(folder / "text_encoder", variant))`.
    """
    return download(plan_repo(repo_id, stage=1, revision=revision, variant=variant, role="text encoder"), events)


def download(plan: RepoPlan, events: EventWriter | None = None) -> Path:
    """Fetch what `plan` lacks into the hub cache and return the snapshot folder."""
    errors = [p for p in plan.problems if p.is_error]
    if errors:
        raise FloydError(errors)
    snapshot = plan.snapshot
    if snapshot is None:
        raise FloydError.one(f"{plan.repo_id} @ {plan.revision}: no commit to download", where=f"model {plan.repo_id}",
                             hint="check revision, or rerun with network")
    todo = sorted((f for f in plan.files if not (snapshot / f.filename).exists()), key=lambda f: f.size or 0)
    if todo:
        left = sum(f.size or 0 for f in todo if not f.cached)
        _ensure_room(plan, left)
        _fetch_files(plan, todo, left, events)
    write_ref(plan.repo_id, plan.revision, plan.commit, plan.cache_dir)
    return snapshot


def _ensure_room(plan: RepoPlan, left: int) -> None:
    free = disk.free_bytes(plan.cache_dir)
    if free < left:
        mount = mount_point(plan.cache_dir)
        raise FloydError.one(
            f"not enough room on {mount} to download {plan.repo_id}: {format_size(left)} to fetch, "
            f"{format_size(free)} free", where=f"hub cache {plan.cache_dir}", key="pretrained_model_name_or_path",
            hint=f"free {format_size(left - free)} on {mount}, or point HF_HUB_CACHE at a disk with room")


def _fetch_files(plan: RepoPlan, todo: list, left: int, events: EventWriter | None) -> None:
    from huggingface_hub import hf_hub_download

    if events is not None:
        events.emit("phase", name="download")
    # our own bar only where nobody else renders the events (a JSON echo, `floydtui run`'s console view)
    bar = sys.stderr.isatty() and (events is None or not (events.echo_json or events.listeners))
    progress = _Progress(left, events, f"{plan.repo_id}", bar)
    try:
        for f in todo:
            progress.describe(f.filename)
            try:
                hf_hub_download(plan.repo_id, f.filename, revision=plan.commit, cache_dir=str(plan.cache_dir),
                                tqdm_class=progress.tqdm_class)
            except Exception as exc:
                error = access_error(exc, plan.repo_id, f.filename)
                if error is None:
                    raise
                raise error from None
    finally:
        progress.close()


class _Progress:
    """Sums the bytes huggingface_hub reports across files into one bar and `progress` events."""

    def __init__(self, total: int, events: EventWriter | None, label: str, bar: bool) -> None:
        self.total, self.done, self.events, self.label = total, 0, events, label
        self.start = self._last = time.monotonic()
        self.lock = threading.Lock()  # hf_xet reports from its own threads
        self.tqdm_class = type("_ByteSink", (_ByteSink,), {"progress": self})
        self.rich = None
        if bar:
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self.rich = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
            self.task = self.rich.add_task(label, total=total)
            self.rich.start()
        self._emit()

    def describe(self, filename: str) -> None:
        if self.rich:
            self.rich.update(self.task, description=f"{self.label} {filename}")

    def add(self, n: int) -> None:
        with self.lock:
            self.done = max(0, self.done + n)
            if self.rich:
                self.rich.update(self.task, completed=self.done)
            if time.monotonic() - self._last >= EMIT_EVERY_S:
                self._emit()

    def _emit(self) -> None:
        self._last = now = time.monotonic()
        if self.events is not None:
            rate = self.done / (now - self.start) if now > self.start else 0.0
            self.events.emit("progress", phase="download", done=self.done, total=self.total,
                             rate=round(rate, 1), unit="bytes")

    def close(self) -> None:
        with self.lock:
            self._emit()
        if self.rich:
            self.rich.stop()


class _ByteSink:
    """A tqdm stand-in for huggingface_hub's `tqdm_class`: forwards byte counts, draws nothing."""

    progress: _Progress

    def __init__(self, *args, total=None, initial=0, **kwargs) -> None:
        self.total, self.n = total, initial or 0
        if self.n:
            self.progress.add(self.n)

    def update(self, n: int | float = 1) -> None:
        if n:
            self.n += int(n)
            self.progress.add(int(n))

    def update_transfer(self, n: int = 1) -> None:
        """Network bytes (compressed, deduplicated) of an hf_xet download: `update` counts file bytes."""

    def set_postfix_str(self, *args, **kwargs) -> None:
        """The rate is computed once for all files, in `_Progress`."""

    set_transfer_postfix_str = set_postfix_str

    def refresh(self) -> None:
        """Nothing to redraw."""

    def close(self) -> None:
        """The shared bar outlives each file."""

    @property
    def format_dict(self) -> dict:
        return {"rate": None, "n": self.n, "total": self.total}

    def __enter__(self) -> "_ByteSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def weights_variant(folder: str | Path, variant: str | None = None) -> str | None:
    """The variant diffusers/transformers must be told to load the weights in `folder`: "fp16" or None."""
    want = wanted_variant(variant)
    kinds = {weight_kind(p.name) for p in Path(folder).glob("*")} - {None}
    return want if want and any(k.variant == want for k in kinds) else None
