"""The TUI's plain-Python parts: the wizard state, the loss series, the run state, images as text."""

import json
import random
from pathlib import Path

import pytest

from floydtui.config.preset import load_preset
from floydtui.tui.lossdata import LossSeries
from floydtui.tui.runstate import RunState, format_duration
from floydtui.tui.state import WizardState, rebase_paths, value_from_text
from floydtui.tui.widgets.fields import complete_folder

DATA = Path(__file__).parent / "data"


def test_new_state_has_guide_values_and_asks_for_a_dataset():
    s = WizardState()
    assert s.resolved("training", "lora_rank") == 32
    assert s.resolved("training", "learning_rate") == 4e-5
    assert [p.key for p in s.errors] == ["datasets"]


def test_typed_text_is_checked_by_the_config_layer():
    s = WizardState()
    s.add_dataset("somewhere")
    problems = s.set_text("training", "lora_rank", "abc")
    assert problems and "lora_rank must be an integer" in problems[0].message
    assert s.set_text("training", "lora_rank", "16") == []
    assert s.data["training"]["lora_rank"] == 16
    problems = s.set_text("training", "lr_end", "1e-3")
    assert "above learning_rate" in problems[0].message
    s.set_text("training", "lr_end", "")  # empty: the default (4e-6) applies
    assert "lr_end" not in s.data["training"] and s.preset is not None


def test_value_from_text_keeps_wrong_types_as_text():
    from floydtui.config.schema import FIELD_BY_KEY
    rank = FIELD_BY_KEY["lora_rank"][1]
    lr = FIELD_BY_KEY["learning_rate"][1]
    assert value_from_text(rank, " 8 ") == 8
    assert value_from_text(rank, "8.5") == "8.5"
    assert value_from_text(lr, "4e-5") == 4e-5
    assert value_from_text(FIELD_BY_KEY["lora_alpha"][1], "auto") == "auto"


def test_flavour_change_brings_stage_defaults():
    s = WizardState()
    s.add_dataset("imgs")
    s.set_flavour("ii-medium-450m")
    assert s.data["training"]["resolution"] == 256
    assert s.data["validation"]["validation_resolution"] == "256"
    assert s.datasets[-1]["resolution"] == 256
    assert s.data["output"]["output_dir"] == "output/ii-medium-450m-lora"
    assert s.preset is not None, [p.format() for p in s.problems]


def test_dataset_problems_stay_with_their_dataset(tmp_path):
    s = WizardState()
    a = s.add_dataset(str(tmp_path))
    b = s.add_dataset("")
    assert s.problems_for("instance_data_dir", b)
    assert not s.problems_for("instance_data_dir", a)


def test_save_rebases_relative_paths_and_check_loads_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    s = WizardState()
    s.add_dataset("imgs")
    saved = s.save(tmp_path / "presets" / "mine.toml")
    preset = load_preset(saved)
    assert preset.path(preset.image_datasets[0]["instance_data_dir"]) == (tmp_path / "imgs").resolve()
    assert preset.output_dir == (tmp_path / "output" / "i-medium-400m-lora").resolve()
    assert not s.dirty and s.source == saved


def test_save_keeps_a_preset_with_inline_webhook_urls_to_its_owner(tmp_path, monkeypatch):
    """A URL inline in webhook_config is a secret: the preset is 0600 whatever the umask; without one, the umask's."""
    import json as json_
    import os
    import stat

    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    old = os.umask(0o022)
    try:
        s = WizardState()
        s.add_dataset("imgs")
        plain = s.save(tmp_path / "plain.toml")
        assert not s.set("output", "webhook_config",
                         json_.dumps({"webhook_type": "raw", "callback_url": "https://example.invalid/hook"}))
        hooked = s.save(tmp_path / "hooked.toml")
    finally:
        os.umask(old)
    assert "example.invalid" in hooked.read_text()
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644 and stat.S_IMODE(hooked.stat().st_mode) == 0o600


def test_save_refuses_an_invalid_preset(tmp_path):
    from floydtui.errors import FloydError
    s = WizardState()
    with pytest.raises(FloydError):
        s.save(tmp_path / "x.toml")
    assert not (tmp_path / "x.toml").exists()


def test_rebase_leaves_absolute_and_builtin_alone(tmp_path):
    data = {"model": {"pretrained_model_name_or_path": "builtin:tiny-if-i"},
            "output": {"output_dir": "/abs/out"}, "datasets": [{"instance_data_dir": "a/b"}]}
    out = rebase_paths(data, tmp_path, tmp_path / "sub")
    assert out["model"]["pretrained_model_name_or_path"] == "builtin:tiny-if-i"
    assert out["output"]["output_dir"] == "/abs/out"
    assert out["datasets"][0]["instance_data_dir"] == "../a/b"


def test_embed_estimate_states_its_basis():
    s = WizardState()
    s.add_dataset("x")
    est = s.embed_estimate(captions=100, on_gpu=True)
    assert est.prompts == 102  # 100 captions, the validation prompt, the empty prompt
    assert est.bytes_each == 77 * 4096 * 2  # bf16 T5-XXL embeds: 616 KiB a prompt
    assert est.seconds == pytest.approx(102 / 9.5)
    assert "A6000" in est.basis


def test_loss_downsample_keeps_extremes():
    s = LossSeries()
    for i in range(1, 100_001):
        s.add(i, 1.0)
    s.add(100_001, 1.0)
    s.raw[54_321] = 9.0  # a spike deep inside a bucket
    xs, ys = s.downsample(100)
    assert len(xs) <= 200
    assert 9.0 in ys and xs == sorted(xs)


def test_loss_series_restarts_on_resume():
    s = LossSeries()
    for i in range(1, 11):
        s.add(i, float(i))
    s.add(6, 0.5)  # resumed from the checkpoint at step 5
    assert list(s.steps) == [1, 2, 3, 4, 5, 6] and s.raw[-1] == 0.5
    s.add(7, float("nan"))
    assert len(s) == 6


def test_ema_follows_the_trend():
    s = LossSeries()
    random.seed(0)
    for i in range(1, 500):
        s.add(i, 2.0 + random.uniform(-0.5, 0.5))
    assert abs(s.ema[-1] - 2.0) < 0.2


def test_run_state_folds_recorded_events(tmp_path):
    events = [json.loads(line) for line in (DATA / "events-demo.jsonl").read_text().splitlines()]
    state = RunState(tmp_path)
    changed = state.apply(events)
    assert {"stats", "loss", "progress", "validation", "log", "end"} <= changed
    assert state.step == 60 and state.total_steps == 60 and len(state.losses) == 60
    assert state.status == "completed" and not state.running
    assert [v.step for v in state.validations] == [30, 60]
    assert state.validations[0].images[0].path == tmp_path / "validation/step-000030" / \
        "a-red-circle-on-a-blue-background-64x64.png"
    assert state.progress["embed_cache"].done == 14
    warnings = [line for line in state.logs if line.level == "warning"]
    assert warnings and warnings[0].hint


def test_run_state_survives_a_malformed_event(tmp_path):
    state = RunState(tmp_path)
    state.apply([{"type": "step", "step": "x"}, {"type": "step", "step": 1, "loss": 0.5}])
    assert state.step == 1 and any("unreadable" in line.message for line in state.logs)


def test_format_duration():
    assert format_duration(None) == "—"
    assert format_duration(42) == "42s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3720) == "1h02m"


def test_folder_completion(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "imgs-old").mkdir()
    (tmp_path / "image.png").write_bytes(b"")
    assert complete_folder("ima", tmp_path) == "images/"
    assert complete_folder(str(tmp_path) + "/imgs", tmp_path) == str(tmp_path) + "/imgs-old/"
    assert complete_folder("nope", tmp_path) is None


def test_several_seeds_per_prompt_are_told_apart_in_the_monitor_and_the_comparison_grid(tmp_path):
    """num_validation_images > 1: each seed is its own row of the grid and says its seed in the tile's caption;
    a run of one seed per prompt shows no seed anywhere."""
    from PIL import Image

    from floydtui.tui.screens.compare import cell, grid_rows
    from floydtui.tui.widgets.validation_view import render_tile

    def validation(step: int, seeds: list[int]) -> dict:
        images = []
        for prompt in ("a red circle", "a sks star"):
            for seed in seeds:
                path = tmp_path / f"{step}-{prompt}-{seed}.png"
                Image.new("RGB", (64, 64), (seed * 40, step, 0)).save(path)
                images.append({"path": str(path), "prompt": prompt, "width": 64, "height": 64, "seed": seed})
        return {"t": float(step), "type": "validation", "step": step, "images": images}

    state = RunState(tmp_path)
    state.apply([validation(10, [3, 4]), validation(20, [3, 4])])
    rows = grid_rows(state.validations)
    assert rows == [("a red circle", 64, 64, 3), ("a red circle", 64, 64, 4), ("a sks star", 64, 64, 3),
                    ("a sks star", 64, 64, 4)]
    assert cell(state.validations, rows[1], 20).path == tmp_path / "20-a red circle-4.png"
    assert str(render_tile(cell(state.validations, rows[3], 10), 20, 4, colour=False)).startswith("64x64 seed 4 a sks")

    one = RunState(tmp_path)
    one.apply([validation(10, [3])])
    assert grid_rows(one.validations) == [("a red circle", 64, 64, None), ("a sks star", 64, 64, None)]
    assert str(render_tile(one.validations[0].images[0], 20, 4, colour=False)).startswith("64x64 a red circle")
