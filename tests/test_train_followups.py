"""Engine follow-ups of issue 5: prefetching batch threads, the tiny model's version, the LoRA header."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest
from helpers import REPO, data_of, finish, floydtui_cmd, snapshot, spawn, wait_for

from floydtui.events import EventWriter, read_events


def test_prefetch_threads_give_the_same_batches_in_the_same_order(mixed):
    data = data_of(mixed, seed=3, crop_style="random")
    for start in (0, 2):
        plain = snapshot(data.batches(1, 4, start=start))
        threaded = snapshot(data.batches(1, 4, start=start, workers=3))
        assert threaded == plain and len(plain) > 3


def test_batch_stream_positions_follow_what_is_trained_not_what_is_prefetched(mixed):
    from floydtui.train.checkpoint import Position
    from floydtui.train.trainer import batch_stream

    data = data_of(mixed, seed=3)
    per_epoch = data.steps_per_epoch(4)
    stream = batch_stream(data, Position(epoch=0, batch_index=per_epoch - 1), 4, 0, 1, workers=2)
    last, first_of_next = next(stream), next(stream)
    assert (last.epoch, last.index) == (0, per_epoch - 1)
    assert (first_of_next.epoch, first_of_next.index) == (1, 0)
    assert snapshot([first_of_next]) == snapshot([next(iter(data.batches(1, 4)))])


def test_a_file_broken_mid_run_is_reported_from_the_consumers_thread(mixed):
    events = EventWriter(mixed / "events.jsonl")
    threads = []
    events.listeners.append(lambda e: threads.append((e["type"], threading.current_thread().name)))
    data = data_of(mixed, seed=3)
    data.events = events
    victim = data.records[0]
    victim.cache_entry.unlink()
    (mixed / "imgs" / victim.rel).write_bytes(b"not a png")
    batches = list(data.batches(0, 4, workers=2))
    events.close()
    assert all(victim.path not in b.paths for b in batches)
    warnings = [e for e in read_events(mixed / "events.jsonl") if e["type"] == "warning"]
    assert len(warnings) == 1 and victim.path in warnings[0]["message"]
    assert [name for kind, name in threads if kind == "warning"] == [threading.current_thread().name]


@pytest.mark.slow
def test_the_tiny_models_are_built_as_version_2():
    from floydtui.train.tiny import TINY_VERSION, builtin_model_dir, ensure_builtin

    assert TINY_VERSION == "v2"
    folder = ensure_builtin("builtin:tiny-if-ii")
    assert folder == builtin_model_dir("builtin:tiny-if-ii") and folder.name == "tiny-if-ii-v2"
    info = json.loads((folder / "floydtui-builtin.json").read_text())
    assert info["version"] == "v2" and info["stage"] == 2
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert unet["in_channels"] == 6 and unet["class_embed_type"] == "timestep"
    assert (folder / "image_noising_scheduler" / "scheduler_config.json").is_file()


def test_partial_checkpoint_folders_are_removed(tmp_path):
    """A run killed while writing a checkpoint leaves a hidden temp folder; the next run deletes it."""
    from floydtui.fsutil import atomic_dir
    from floydtui.train.checkpoint import list_checkpoints, remove_partial

    root = tmp_path / "checkpoints"
    with atomic_dir(root / "checkpoint-000002") as tmp:
        (tmp / "state.json").write_text("{}")
    partial = root / ".checkpoint-000004.abc.tmp"
    partial.mkdir()
    (partial / "state.json").write_text("{")  # half-written: never read, since it lacks the final name
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-000002"]
    assert remove_partial(tmp_path) == [partial]
    assert not partial.exists() and (root / "checkpoint-000002").is_dir()


@pytest.mark.slow
def test_sigterm_during_start_up_still_ends_with_run_end(tmp_path):
    """A scheduler's SIGTERM in the first seconds (torch still importing) stops at once, with run_end."""
    out = tmp_path / "run"
    proc = spawn(floydtui_cmd("run", str(REPO / "presets" / "demo.toml"), "--output-dir", str(out), "--json"),
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    events = out / "events.jsonl"
    wait_for(lambda: events.exists() or proc.poll() is not None, interval=0.01,
             what="the run to create events.jsonl (its writer exists: signal it)", seen=lambda: proc.poll())
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 130, err
    events = read_events(events)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    assert not (out / "pytorch_lora_weights.safetensors").exists()
    assert os.path.isdir(out)
