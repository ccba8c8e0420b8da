"""Stage II's size checks and eval-image settings: every message names the flavour and the value.

`floydtui check` finds them (exit 1) and `floydtui run` stops on them (exit 2) before any
model loads; the messages say what, where and how to fix it.
"""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image
from helpers import BIG, DEMO, write_stage2_preset

from floydtui.cli import main
from floydtui.config.preset import load_preset
from floydtui.events import read_events

SMALL = sorted(p for p in DEMO.glob("*.png") if max(Image.open(p).size) < 256)


def check_json(preset, capsys) -> tuple[int, list[dict]]:
    code = main(["check", str(preset), "--json"])
    return code, json.loads(capsys.readouterr().out)["problems"]


def run_errors(preset, capsys) -> tuple[int, list[dict]]:
    code = main(["run", str(preset), "--json"])
    capsys.readouterr()
    events = read_events(preset.parent / "out" / "events.jsonl")
    assert not [e for e in events if e["type"] == "step"], "nothing trains"
    return code, [e for e in events if e["type"] == "error"]


@pytest.mark.parametrize("edits, message, hint", [
    ({"checkpointing_steps = 2": "resolution = 128"},
     "ii-medium-450m is the 64->256 upscaler but resolution is 128", "set resolution = 256"),
    ({'validation_resolution = "256,320x256"': 'validation_resolution = "64,256,128x256"'},
     "ii-medium-450m validation sizes are output sizes, but 64x64, 128x256 is below 256", "4x the 64px input"),
])
def test_stage_two_sizes_below_256_are_errors_for_check_and_run(tmp_path, capsys, edits, message, hint):
    preset = write_stage2_preset(tmp_path, edits=edits)
    code, problems = check_json(preset, capsys)
    assert code == 1
    (problem,) = [p for p in problems if message in p["message"]]
    assert hint in problem["hint"] and problem["severity"] == "error"
    assert main(["run", str(preset)]) == 2
    assert message in capsys.readouterr().err


def test_stage_one_above_128_is_a_warning_that_explains_the_64px_design(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[model]\nmodel_flavour = "i-large-900m"\n[training]\nresolution = 192\n'
                    '[[datasets]]\nid = "d"\ninstance_data_dir = "d"\n')
    warnings = [w for w in load_preset(path).warnings if w.key == "resolution"]
    (w,) = warnings
    assert "i-large-900m is a 64px model but resolution is 192" in w.message and not w.is_error
    assert "64px" in w.hint and "stage II" in w.hint


def test_datasets_whose_images_are_all_under_256_stop_check_and_run(tmp_path, capsys):
    preset = write_stage2_preset(tmp_path, images=SMALL[-6:],
                                 edits={"minimum_image_size = 256": "minimum_image_size = 64"})
    message = "ii-medium-450m trains the 64->256 upscaler on 256px images, but all 6 images in"
    code, problems = check_json(preset, capsys)
    assert code == 1
    (problem,) = [p for p in problems if message in p["message"]]
    largest = max(min(Image.open(p).size) for p in SMALL[-6:])
    assert f"under 256px on the short side (the largest is {largest}px)" in problem["message"]
    assert "at least 256px" in problem["hint"] and "stage I flavour" in problem["hint"]
    assert "'big-shapes'" in problem["where"]
    code, errors = run_errors(preset, capsys)
    assert code == 2 and any(message in e["message"] for e in errors)


def test_some_small_images_are_only_a_warning(tmp_path, capsys):
    preset = write_stage2_preset(tmp_path, images=[*BIG, *SMALL[:3]])
    code, problems = check_json(preset, capsys)
    assert code == 0
    (w,) = [p for p in problems if "3 of 13 files skipped" in p["message"]]
    assert w["severity"] == "warning" and "below stage II's 256px output" in w["hint"]


def test_a_dataset_resolution_from_the_stage_one_guide_is_an_error(tmp_path, capsys):
    preset = write_stage2_preset(tmp_path, dataset="resolution = 64")
    code, problems = check_json(preset, capsys)
    assert code == 1
    (problem,) = [p for p in problems if p["key"] == "resolution"]
    assert "ii-medium-450m is the 64->256 upscaler but this dataset's resolution is 64" in problem["message"]
    assert "set it to 256" in problem["hint"]


def test_eval_images_per_dataset_override_and_none_at_all_is_an_error(tmp_path, capsys):
    from floydtui.data.dataset import eval_image_counts

    second = tmp_path / "more"
    second.mkdir()
    for png in BIG[:4]:
        shutil.copy(png, second / png.name)
    more = ('\n[[datasets]]\nid = "more"\ninstance_data_dir = "more"\nminimum_image_size = 256\n'
            'maximum_image_size = 1024\ncaption_strategy = "filename"\n')
    preset = write_stage2_preset(tmp_path, edits={"num_eval_images = 1": "num_eval_images = 0"},
                                 dataset="num_eval_images = 3" + more)
    assert eval_image_counts(load_preset(preset)) == {"big-shapes": 3, "more": 0}
    code, problems = check_json(preset, capsys)
    assert code == 0 and not [p for p in problems if p["key"] == "num_eval_images"]

    preset.write_text(preset.read_text().replace("num_eval_images = 3\n", ""))
    code, problems = check_json(preset, capsys)
    assert code == 1
    (problem,) = [p for p in problems if p["key"] == "num_eval_images"]
    assert "ii-medium-450m validates by upscaling eval images" in problem["message"]
    assert "num_eval_images = 4" in problem["hint"]
    code, errors = run_errors(preset, capsys)
    assert code == 2 and any("num_eval_images is 0 for every dataset" in e["message"] for e in errors)


def test_eval_images_are_the_same_every_time_and_a_new_seed_picks_others(tmp_path):
    from floydtui.data.dataset import TrainingData, eval_image_counts

    preset = load_preset(write_stage2_preset(tmp_path, edits={"num_eval_images = 1": "num_eval_images = 3"}))
    first = TrainingData(preset).eval_images(eval_image_counts(preset), seed=0)
    again = TrainingData(preset).eval_images(eval_image_counts(preset), seed=0)
    assert len(first) == 3 and [e.path for e in first] == [e.path for e in again]
    assert all((a.pixels == b.pixels).all() and a.pixels.shape == (256, 256, 3) for a, b in zip(first, again))
    other = TrainingData(preset).eval_images(eval_image_counts(preset), seed=1)
    assert [e.path for e in other] != [e.path for e in first]
