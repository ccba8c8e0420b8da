"""One home for what a model id is, its stage's name and the text encoder's facts (config/flavours.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from floydtui.config.flavours import (
    T5_XXL_DIM,
    TEXT_MAX_LENGTH,
    TINY_TEXT_DIM,
    classify_model,
    embed_bytes,
    stage_name,
    stage_numeral,
    text_dim,
)


@pytest.mark.parametrize("model_id, kind, stage", [
    ("builtin:tiny-if-i", "builtin", 1),
    ("builtin:shapes-if-ii", "builtin", 2),
    ("builtin:nope", "builtin", None),  # unknown: a built-in id all the same (the preset says which exist)
    ("DeepFloyd/IF-I-M-v1.0", "hub", 1),
    ("deepfloyd/if-ii-l-v1.0", "hub", 2),  # the hub's ids are case-insensitive
    ("someone/my-if-finetune", "hub", None),
    ("/nowhere/at/all", "local", None),  # written as a path: a folder, missing or not
    ("./model", "local", None),
    ("~/models/if", "local", None),
])
def test_classify_model_names_the_kind_and_the_stage(model_id, kind, stage):
    found = classify_model(model_id)
    assert (found.kind, found.stage) == (kind, stage)
    assert found.stage_name == (f"stage {'I' * stage}" if stage else "")


def test_an_existing_folder_is_local_relative_to_the_base_dir(tmp_path: Path):
    (tmp_path / "org" / "model").mkdir(parents=True)
    assert classify_model("org/model").kind == "hub"  # not in the working directory
    found = classify_model("org/model", tmp_path)
    assert found.kind == "local" and found.path == tmp_path / "org" / "model"


def test_the_preset_reads_model_ids_through_classify_model(tmp_path: Path):
    from floydtui.config.preset import preset_from_dict

    (tmp_path / "org" / "model").mkdir(parents=True)
    data = {"model": {"model_flavour": "i-medium-400m", "pretrained_model_name_or_path": "org/model"},
            "datasets": [{"id": "d", "instance_data_dir": "d"}]}
    preset = preset_from_dict(data, source=tmp_path / "p.toml")
    assert preset.base_model == str(tmp_path / "org" / "model")
    data["model"]["pretrained_model_name_or_path"] = "DeepFloyd/IF-II-M-v1.0"
    from floydtui.errors import FloydError

    with pytest.raises(FloydError) as e:
        preset_from_dict(data, source=tmp_path / "p.toml")
    assert any("is stage I but DeepFloyd/IF-II-M-v1.0 is a stage II model" in p.message for p in e.value.problems)


def test_stage_names_and_text_encoder_facts():
    assert [stage_numeral(1), stage_numeral(2)] == ["I", "II"]
    assert [stage_name(1), stage_name(2)] == ["stage I", "stage II"]
    assert text_dim("builtin:shapes-if-i") == TINY_TEXT_DIM and text_dim("DeepFloyd/IF-I-M-v1.0") == T5_XXL_DIM
    assert embed_bytes(T5_XXL_DIM, 2) == TEXT_MAX_LENGTH * 4096 * 2 == 630_784


def test_the_wizard_reads_the_embed_size_from_config():
    from floydtui.tui.state import WizardState

    state = WizardState()
    state.set("model", "pretrained_model_name_or_path", "builtin:tiny-if-i")
    state.set("training", "mixed_precision", "no")
    tiny = state.embed_estimate(10, on_gpu=False)
    assert tiny.bytes_each == embed_bytes(TINY_TEXT_DIM, 4)
    state.set("model", "pretrained_model_name_or_path", "DeepFloyd/IF-I-M-v1.0")
    assert state.embed_estimate(10, on_gpu=False).bytes_each == embed_bytes(T5_XXL_DIM, 4)


def test_an_unknown_layer_freeze_strategy_imports_with_a_warning():
    """A SimpleTuner layer_freeze_strategy floydtui lacks is kept in [extra] (it crashed before)."""
    from floydtui.config.simpletuner_4_10_1 import from_simpletuner

    _, extra, notes = from_simpletuner({"model_family": "deepfloyd", "layer_freeze_strategy": "some_other"})
    assert extra["layer_freeze_strategy"] == "some_other"
    assert any("has no floydtui equivalent" in n.message and not n.is_error for n in notes)
