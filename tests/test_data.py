"""The pixel pipeline (DESIGN.md section 5), captions and the scan: issue 3's worked examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import guide, make_preset, write_image

from floydtui.data.dataset import TrainingData
from floydtui.data.pipeline import (
    SMALLER_THAN_MINIMUM,
    SMALLER_THAN_RESOLUTION,
    DatasetSettings,
    downsample_steps,
    plan_image,
)
from floydtui.data.scan import scan_preset


def settings_of(tmp_path: Path, **changes) -> DatasetSettings:
    preset = make_preset(tmp_path, [guide(**changes)])
    return DatasetSettings.from_preset(preset, preset.image_datasets[0])


# ---- the worked examples (the guide's values: 64 / 64 / 256 / 128) ----------
def test_worked_examples(tmp_path):
    s = settings_of(tmp_path)
    small = plan_image(50, 80, s)
    assert not small.usable and small.skip_reason == SMALLER_THAN_MINIMUM

    kept = plan_image(200, 150, s)
    assert kept.usable and not kept.downsampled
    assert kept.intermediate == (200, 150) and kept.bucket == (64, 64)

    two_steps = plan_image(300, 200, s)
    assert two_steps.steps == ((225, 150), (192, 128))
    assert two_steps.intermediate == (192, 128) and two_steps.bucket == (64, 64)

    photo = plan_image(4000, 3000, s)
    assert photo.intermediate == (171, 128) and photo.bucket == (64, 64)
    shorts = [3000] + [min(size) for size in photo.steps]
    assert all(b >= 0.75 * a - 1 for a, b in zip(shorts, shorts[1:])), "no step shrinks by more than 25% (+ rounding)"
    assert shorts[-2] * 0.75 < 128 < shorts[-2], "steps of 25% until the next would pass 128"


@pytest.mark.parametrize("size, intermediate, steps", [
    ((64, 64), (64, 64), 0),        # exactly the minimum: kept, not upsampled
    ((256, 256), (256, 256), 0),    # at maximum_image_size, not over it: untouched
    ((257, 200), (164, 128), 2),    # just over: 193x150 then 164x128
    ((150, 300), (128, 256), 1),    # portrait: short edge 150 -> 128 in one step
    ((1000, 100), (1000, 100), 0),  # over the maximum but its short edge is already under 128
    ((512, 384), (171, 128), 4),
])
def test_guide_config_size_by_size(tmp_path, size, intermediate, steps):
    plan = plan_image(*size, settings_of(tmp_path))
    assert plan.usable and plan.intermediate == intermediate and len(plan.steps) == steps
    assert plan.bucket == (64, 64)


def test_guide_config_end_to_end(tmp_path):
    """The guide's dataloader example on real files: what is kept, the cached sizes, 64px batches."""
    sizes = [(50, 80), (64, 64), (200, 150), (300, 200), (4000, 3000), (150, 300), (1000, 100)]
    for i, (w, h) in enumerate(sizes):
        write_image(tmp_path / "imgs" / f"{w}x{h}.png", w, h, seed=i)
    preset = make_preset(tmp_path)
    data = TrainingData(preset)
    kept = {Path(r.path).name: r for r in data.records}
    assert "50x80.png" not in kept and len(kept) == len(sizes) - 1
    assert kept["4000x3000.png"].intermediate_size == (171, 128)
    assert kept["300x200.png"].intermediate_size == (192, 128)
    assert kept["200x150.png"].intermediate_size == (200, 150)
    assert {r.caption for r in data.records} == {"Your Subject Trigger Phrase or Word"}
    assert any("smaller than minimum_image_size" in w.message for w in data.warnings)
    # repeats = 1: every image twice per epoch; 12 samples -> 3 batches of 4
    assert data.steps_per_epoch(4) == 3
    batches = list(data.batches(0, 4))
    assert len(batches) == 3
    assert all(b.pixels.shape == (4, 64, 64, 3) and b.pixels.dtype == np.uint8 for b in batches)


def test_crop_aspect_preserve_and_resize(tmp_path):
    preserve = settings_of(tmp_path, crop_aspect="preserve")
    plan = plan_image(200, 150, preserve)
    assert plan.bucket == (88, 64)  # 64 * 4/3 = 85.3 -> multiple of 8
    assert round(plan.coverage, 2) == 0.19  # the "crops keep 19% of the scene"
    assert plan_image(150, 200, preserve).bucket == (64, 88)
    resize = settings_of(tmp_path, crop=False)
    plan = plan_image(300, 200, resize)
    assert plan.intermediate == (192, 128) and plan.bucket == (96, 64) and plan.coverage == 1.0


def test_never_upsampled_below_resolution(tmp_path):
    s = settings_of(tmp_path, minimum_image_size=32)
    plan = plan_image(48, 48, s)
    assert plan.skip_reason == SMALLER_THAN_RESOLUTION and "48x48" in plan.detail
    low_target = settings_of(tmp_path, target_downsample_size=48)
    plan = plan_image(400, 300, low_target)
    assert plan.skip_reason == SMALLER_THAN_RESOLUTION and "after downsampling" in plan.detail


@settings(max_examples=300, deadline=None)
@given(w=st.integers(1, 20000), h=st.integers(1, 20000), res=st.sampled_from([64, 96, 256]),
       minimum=st.integers(0, 300), maximum=st.integers(8, 2048), target=st.integers(8, 1024),
       crop=st.booleans(), aspect=st.sampled_from(["square", "preserve"]))
def test_plan_invariants(w, h, res, minimum, maximum, target, crop, aspect):
    s = DatasetSettings("d", Path("."), res, crop, aspect, "random", minimum, maximum, target,
                        "filename", "", False, 0)
    plan = plan_image(w, h, s)
    if w < minimum or h < minimum:
        assert plan.skip_reason == SMALLER_THAN_MINIMUM
        return
    if plan.downsampled:
        assert min(plan.intermediate) == target and min(w, h) > target
        chain = [(w, h), *plan.steps]
        for a, b in zip((min(c) for c in chain), (min(c) for c in chain[1:])):
            assert b < a and b >= 0.75 * a - 1, "each step shrinks, by at most 25%"
        assert abs(max(plan.intermediate) / target - max(w, h) / min(w, h)) < 1 / target + 1e-9
    else:
        assert plan.intermediate in (None, (w, h))
    if plan.usable:
        iw, ih = plan.intermediate
        bw, bh = plan.bucket
        assert min(bw, bh) == res and min(iw, ih) >= res, "never upsampled"
        if crop:
            assert bw <= iw and bh <= ih, "a crop fits inside the image"
        if not (crop and aspect == "square"):
            assert max(bw, bh) % 8 == 0 or max(bw, bh) == res
            assert (bw >= bh) == (iw >= ih) or bw == bh


def test_downsample_steps_land_on_target():
    assert downsample_steps(128, 128, 128) == []
    assert downsample_steps(170, 200, 128)[-1] == (128, 151)
    assert downsample_steps(171, 171, 128) == [(128, 128)]


# ---- captions --------------------------------------------------------------
def test_caption_strategies(tmp_path):
    folder = tmp_path / "imgs"
    write_image(folder / "a_red_circle.png", 64, 64)
    write_image(folder / "sub" / "blue  square.png", 64, 64)
    write_image(folder / "with_txt.png", 64, 64)
    (folder / "with_txt.txt").write_text("a green\ntriangle  \n", encoding="utf-8")
    write_image(folder / "latin1.png", 64, 64)
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    write_image(folder / "empty.png", 64, 64)
    (folder / "empty.txt").write_text("  \n")
    write_image(folder / "bom.png", 64, 64)
    (folder / "bom.txt").write_text("\ufeffwith a bom", encoding="utf-8")

    def captions(**fields):
        (scan,) = scan_preset(make_preset(tmp_path, [guide(**fields)], train_batch_size=1))
        return {r.rel: (r.caption, r.note) for r in scan.records}, scan

    by_name, _ = captions(caption_strategy="filename")
    assert by_name["a_red_circle.png"][0] == "a red circle"
    assert by_name["sub/blue  square.png"][0] == "blue square"

    text, scan = captions(caption_strategy="textfile")
    assert text["with_txt.png"] == ("a green triangle", "")
    assert text["bom.png"][0] == "with a bom"
    assert text["a_red_circle.png"][0] == "a red circle"
    assert "a_red_circle.txt is missing: used the filename caption 'a red circle'" in text["a_red_circle.png"][1]
    assert text["latin1.png"][0] == "latin1" and "not UTF-8" in text["latin1.png"][1]
    assert "is empty" in text["empty.png"][1]
    (warning,) = [p for p in scan.problems if "caption file" in p.message]
    assert warning.message.startswith("4 images") and not warning.is_error

    prepended, _ = captions(caption_strategy="textfile", prepend_instance_prompt=True, instance_prompt="sks")
    assert prepended["with_txt.png"][0] == "sks a green triangle"
    instance, _ = captions(caption_strategy="instanceprompt", prepend_instance_prompt=True, instance_prompt="sks")
    assert {c for c, _ in instance.values()} == {"sks"}


def test_several_datasets_each_with_its_own_fields(tmp_path):
    write_image(tmp_path / "a" / "x.png", 200, 150)
    write_image(tmp_path / "b" / "y.png", 200, 150)
    preset = make_preset(tmp_path, [guide("a", id="a"), guide("b", id="b", resolution=None, crop=False,
                                                               caption_strategy="filename")],
                         resolution=96, train_batch_size=1)
    a, b = scan_preset(preset)
    assert a.records[0].plan.bucket == (64, 64)
    # b has no resolution of its own: it falls back to the preset's 96
    assert b.settings.resolution == 96 and b.records[0].plan.bucket == (128, 96)
    assert b.records[0].caption == "y"
