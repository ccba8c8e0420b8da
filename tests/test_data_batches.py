"""TrainingData: buckets, deterministic batches and crops, resume, sharding, eval images, errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from helpers import data_of, guide, make_preset, snapshot, write_image

from floydtui.data.dataset import TrainingData
from floydtui.data.preview import preview_pair
from floydtui.errors import FloydError
from floydtui.events import EventWriter, read_events


def test_batches_hold_one_bucket_each(mixed):
    data = data_of(mixed, crop_aspect="preserve", train_batch_size=4)
    assert Counter(r.bucket for r in data.records) == {(88, 64): 12, (64, 88): 8, (64, 64): 5}
    batches = list(data.batches(0, 4))
    assert len(batches) == data.steps_per_epoch(4) == 3 + 2 + 1  # tails of 1 square image dropped
    for b in batches:
        w, h = b.bucket
        assert b.pixels.shape == (4, h, w, 3)
        assert {data.records[[r.path for r in data.records].index(p)].bucket for p in b.paths} == {b.bucket}
    assert [b.index for b in batches] == list(range(len(batches)))


def test_order_and_crops_are_reproducible_and_change_per_epoch(mixed):
    data = data_of(mixed)
    same = data_of(mixed)
    assert snapshot(data.batches(0, 4)) == snapshot(same.batches(0, 4))
    e0, e1 = snapshot(data.batches(0, 4)), snapshot(data.batches(1, 4))
    assert [b[2] for b in e0] != [b[2] for b in e1], "the order changes between epochs"
    other_seed = data_of(mixed, seed=7)
    assert snapshot(other_seed.batches(0, 4)) != e0

    def crops(epoch):
        return {p: px.tobytes() for b in data.batches(epoch, 5) for p, px in zip(b.paths, b.pixels)}
    c0, c1 = crops(0), crops(1)
    changed = sum(c0[p] != c1[p] for p in c0)
    assert changed >= len(c0) - 2, "random crops move between epochs"


def test_center_and_corner_crops_do_not_move(mixed):
    for style in ("center", "corner"):
        data = data_of(mixed, crop_style=style)
        crops = [{p: px.tobytes() for b in data.batches(e, 5) for p, px in zip(b.paths, b.pixels)}
                 for e in (0, 1)]
        assert crops[0] == crops[1]
    corner = data_of(mixed, crop_style="corner")
    i = next(i for i, r in enumerate(corner.records) if r.path.endswith("land00.png"))
    batch = next(b for b in corner.batches(0, 5) if corner.records[i].path in b.paths)
    k = batch.paths.index(corner.records[i].path)
    assert (batch.pixels[k] == corner._pixels(i)[:64, :64]).all()


def test_resume_start_skips_exactly(mixed):
    data = data_of(mixed)
    full = snapshot(data.batches(3, 4))
    assert snapshot(data.batches(3, 4, start=2)) == full[2:]
    assert list(data.batches(3, 4, start=len(full))) == []


def test_sharding_gives_disjoint_equal_shares(mixed):
    data = data_of(mixed, repeats=1)  # 50 samples: 12 batches of 4
    assert data.steps_per_epoch(4) == 12
    shares = [snapshot(data.batches(0, 4, rank=r, world_size=5)) for r in range(5)]
    assert {len(s) for s in shares} == {data.steps_per_epoch(4, world_size=5)} == {2}
    keys = [(paths, px) for s in shares for _, _, paths, px in s]
    assert len(set(keys)) == len(keys)
    whole = {(paths, px) for _, _, paths, px in snapshot(data.batches(0, 4))}
    assert set(keys) <= whole


def test_repeats_are_extra_passes(mixed):
    data = data_of(mixed, repeats=2)
    seen = Counter(p for b in data.batches(0, 5) for p in b.paths)
    assert set(seen.values()) == {3} and len(seen) == 25


def test_captions_are_unique_and_final(mixed):
    data = data_of(mixed, caption_strategy="filename", prepend_instance_prompt=True, instance_prompt="sks")
    caps = data.captions()
    assert len(caps) == len(set(caps)) == 25 and "sks land00" in caps
    batch = next(data.batches(0, 4))
    assert all(c.startswith("sks ") for c in batch.captions)


def test_eval_images_fixed_per_seed(mixed):
    data = data_of(mixed, resolution=None, minimum_image_size=128, train_batch_size=4)
    picks = data.eval_images(3, seed=0)
    again = data_of(mixed, resolution=None, minimum_image_size=128, train_batch_size=4).eval_images(3, seed=0)
    assert [e.path for e in picks] == [e.path for e in again] and len(picks) == 3
    assert all(e.pixels.shape == (64, 64, 3) and e.pixels.dtype == np.uint8 for e in picks)
    assert all((a.pixels == b.pixels).all() for a, b in zip(picks, again))
    assert [e.path for e in data.eval_images(3, seed=1)] != [e.path for e in picks]
    assert len(data.eval_images(100, seed=0)) == 25


def test_stage_two_resolution_override(mixed):
    for i in range(4):
        write_image(mixed / "big" / f"b{i}.png", 512, 384, seed=i)
    preset = make_preset(mixed, [guide("big", minimum_image_size=256, maximum_image_size=1024,
                                       target_downsample_size=512, repeats=0)], flavour="ii-medium-450m")
    data = TrainingData(preset, resolution=256)
    (batch,) = data.batches(0, 4)
    assert batch.pixels.shape == (4, 256, 256, 3)
    (e,) = data.eval_images(1, seed=0)
    assert e.pixels.shape == (256, 256, 3)


def test_scan_events(mixed):
    events = EventWriter(mixed / "events.jsonl")
    TrainingData(make_preset(mixed, [guide()]), events=events)
    events.close()
    evs = read_events(mixed / "events.jsonl")
    assert evs[0]["type"] == "phase" and evs[0]["name"] == "scan"
    progress = [e for e in evs if e["type"] == "progress"]
    assert progress and all(e["phase"] == "scan" and e["done"] <= e["total"] and "rate" in e for e in progress)
    assert progress[-1]["done"] == progress[-1]["total"] == 25


@pytest.mark.parametrize("setup, message, hint", [
    ("missing", "does not exist", "instance_data_dir"),
    ("empty", "no usable image", "put images"),
    ("small", "no usable image", "lower minimum_image_size"),
    ("bucket", "bucket 64x88 has 3 images, fewer than train_batch_size 4", "lower train_batch_size to 3"),
])
def test_stopping_errors_say_what_where_and_how_to_fix(tmp_path, setup, message, hint):
    folder = tmp_path / "imgs"
    fields = {}
    if setup != "missing":
        folder.mkdir()
    if setup == "small":
        write_image(folder / "tiny.png", 32, 32)
    if setup == "bucket":
        for i in range(5):
            write_image(folder / f"l{i}.png", 200, 150, seed=i)
        for i in range(3):
            write_image(folder / f"p{i}.png", 150, 200, seed=i)
        fields = {"crop_aspect": "preserve"}
    with pytest.raises(FloydError) as e:
        TrainingData(make_preset(tmp_path, [guide(**fields)]))
    (problem,) = e.value.problems
    assert message in problem.message and hint in problem.hint
    assert "primary-dataset" in problem.where and problem.is_error


def test_preview_pair(mixed):
    preset = make_preset(mixed, [guide(repeats=0)])  # one pass, so the epoch holds one crop of each
    original, trained = preview_pair(preset, "primary-dataset", "land03.png")
    assert original.size == (200, 150) and trained.size == (64, 64)
    data = TrainingData(preset)
    i = next(i for i, r in enumerate(data.records) if r.path.endswith("land03.png"))
    batch = next(b for b in data.batches(0, 5) if data.records[i].path in b.paths)
    k = batch.paths.index(data.records[i].path)
    assert np.array_equal(np.asarray(trained), batch.pixels[k]), "the preview is the crop epoch 0 trains on"
    write_image(mixed / "imgs" / "tiny.png", 20, 20)
    with pytest.raises(FloydError, match="smaller than minimum_image_size"):
        preview_pair(preset, "primary-dataset", mixed / "imgs" / "tiny.png")
    with pytest.raises(FloydError, match="no image dataset"):
        preview_pair(preset, "nope", "land03.png")
