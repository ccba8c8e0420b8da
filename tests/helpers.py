"""Helpers shared by test modules (pytest puts tests/ on sys.path): condition waits, processes
that are always ended, and files the tests lay out. Fixtures live in conftest.py."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import psutil
from PIL import Image

from floydtui.config.preset import preset_from_dict

REPO = Path(__file__).resolve().parent.parent

# A ceiling, not a budget: far beyond what any wait takes on a loaded machine, only there so that
# a test that can never succeed ends with a message instead of hanging the suite.
WAIT_S = 1800.0


# ---- waiting for a condition ------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], *, what: str, seen: Callable[[], Any] | None = None,
             timeout: float = WAIT_S, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy, and return that.

    After `timeout` seconds it fails naming `what` it waited for and what it saw (`seen()`,
    else the predicate's last value).
    """
    deadline = time.monotonic() + timeout
    while not (value := _poll(predicate, deadline, timeout, what, seen)):
        time.sleep(interval)
    return value


async def until(pilot, predicate: Callable[[], Any], *, what: str, seen: Callable[[], Any] | None = None,
                timeout: float = WAIT_S) -> Any:
    """`wait_for` inside a running Textual app: the app's messages and workers go on between polls."""
    deadline = time.monotonic() + timeout
    while not (value := _poll(predicate, deadline, timeout, what, seen)):
        await pilot.pause(0.05)
    return value


def _poll(predicate: Callable[[], Any], deadline: float, timeout: float, what: str,
          seen: Callable[[], Any] | None) -> Any:
    """One look for `wait_for` and `until`: the predicate's value, or a failure naming what was seen once past
    the deadline."""
    value = predicate()
    if not value and time.monotonic() > deadline:
        raise AssertionError(f"waited {timeout:.0f} s for {what}; saw: {seen() if seen else value!r}")
    return value


async def handled(pump, timeout: float = WAIT_S) -> None:
    """Return once `pump` (a screen, a widget) has handled every message posted to it before this call."""
    done = asyncio.get_running_loop().create_future()
    pump.call_later(done.set_result, None)  # queued behind what is already posted: runs after it
    await asyncio.wait_for(done, timeout)


# ---- processes a test starts ----------------------------------------------------------------
_started: list[subprocess.Popen] = []


def spawn(args: list[str], **kwargs) -> subprocess.Popen:
    """Popen, ended after the test (conftest) whatever the test's outcome.

    In a session of its own unless start_new_session=False: its process group then ends with it,
    children included.
    """
    kwargs.setdefault("start_new_session", True)
    proc = subprocess.Popen(args, **kwargs)
    proc.own_group = kwargs["start_new_session"]
    _started.append(proc)
    return proc


def floydtui_cmd(*args: str) -> list[str]:
    """The command line of `floydtui ARGS` in a fresh interpreter of this venv."""
    return [sys.executable, "-m", "floydtui", *args]


def finish(proc: subprocess.Popen, timeout: float = WAIT_S) -> tuple[int, str, str]:
    """Wait for a started process to exit: its exit code, stdout and stderr (a ceiling, not a budget)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_process(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"waited {timeout:.0f} s for {proc.args!r} to exit; it had written:\n{out}\n{err}")
    return proc.returncode, out, err


def end_process(pid: int) -> None:
    """SIGKILL a process and, where it leads one, its process group."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def end_started() -> None:
    """End and reap every process `spawn` began (its group too: a leader that exited may leave workers)."""
    while _started:
        proc = _started.pop()
        try:
            if proc.own_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.communicate()  # reaps it and closes its pipes
        except (ValueError, OSError):
            proc.wait()


# Children Python itself keeps for the interpreter's lifetime, ended when pytest exits.
_INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def leftover_children() -> dict[psutil.Process, list[str]]:
    """This process's live descendants (zombies and Python's own helpers aside), with their command lines."""
    left = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if not any(h in " ".join(cmd) for h in _INTERPRETER_HELPERS):
            left[child] = cmd
    return left


# ---- files --------------------------------------------------------------------------------
def copy_captioned(pngs: Iterable[Path], dest: Path) -> Path:
    """Copy demo images with their sidecar .txt captions into `dest` (created once; reused if present)."""
    if dest.exists():
        return dest
    dest.mkdir(parents=True)
    for png in pngs:
        shutil.copy(png, dest / png.name)
        shutil.copy(png.with_suffix(".txt"), dest / png.with_suffix(".txt").name)
    return dest


# ---- presets and images for the datasets tests ---------------------------------------------
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


def data_of(root: Path, seed: int | None = None, train_batch_size: int = 4, **fields):
    """TrainingData over the guide's dataset in `root`/imgs, with fields changed (no repeats)."""
    from floydtui.data.dataset import TrainingData

    fields.setdefault("repeats", 0)
    return TrainingData(make_preset(root, [guide(**fields)], train_batch_size=train_batch_size), seed=seed)


def snapshot(batches) -> list:
    """Batches as comparable values: index, bucket, paths and pixels."""
    return [(b.index, b.bucket, tuple(b.paths), b.pixels.tobytes()) for b in batches]


# ---- stage II -----------------------------------------------------------------------------
DEMO = REPO / "examples" / "demo-data"
BIG = sorted(p for p in DEMO.glob("*.png") if min(Image.open(p).size) >= 256)  # the ten stage II images


def write_stage2_preset(tmp_path: Path, *, steps: int = 4, training: str = "", validation: str = "",
                        dataset: str = "", images: list[Path] | None = None, name: str = "preset.toml",
                        edits: dict[str, str] | None = None) -> Path:
    """A tiny stage II preset: the 256px demo images, batch 2, output and caches inside tmp_path.

    `training`, `validation` and `dataset` add lines to their table; `edits` replaces lines.
    """
    copy_captioned(BIG if images is None else images, tmp_path / "data")
    path = tmp_path / name
    path.write_text(f"""
[model]
model_flavour = "ii-medium-450m"
pretrained_model_name_or_path = "builtin:tiny-if-ii"

[training]
lora_rank = 4
lora_alpha = 8
lora_target_modules = ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj", "conv1", "conv2"]
learning_rate = 1e-2
lr_end = 1e-3
lr_scheduler = "cosine"
train_batch_size = 2
max_train_steps = {steps}
mixed_precision = "no"
optimizer = "adamw"
checkpointing_steps = 2
dataloader_workers = 2
seed = 3
{training}

[validation]
validation_resolution = "256,320x256"
validation_steps = 2
validation_num_inference_steps = 2
validation_guidance = 4.0
num_eval_images = 1
{validation}

[output]
output_dir = "out"

[[datasets]]
id = "big-shapes"
instance_data_dir = "data"
minimum_image_size = 256
maximum_image_size = 1024
target_downsample_size = 512
caption_strategy = "textfile"
{dataset}

[[datasets]]
id = "text-embeds"
dataset_type = "text_embeds"
default = true
cache_dir = "cache"
""")
    for old, new in (edits or {}).items():
        assert old in path.read_text(), old
        path.write_text(path.read_text().replace(old, new))
    return path


# ---- a hub cache ---------------------------------------------------------------------------
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lay_out(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT, ref: str = "main") -> Path:
    """Write `files` into `cache` as huggingface_hub does: blobs by etag, snapshot links, refs."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    for rel, data in files.items():
        # LFS files are stored under their sha256, small git files under their git blob id
        blob = hashlib.sha256(data).hexdigest() if len(data) > 10_000 else git_blob_id(data)
        blob_path = storage / "blobs" / blob
        blob_path.parent.mkdir(parents=True, exist_ok=True)
        blob_path.write_bytes(data)
        link = storage / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob_path, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    return storage


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
