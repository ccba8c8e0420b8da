"""SimpleTuner interop: import, export, round trip, legacy MODEL_TYPE, [extra] (issue 2)."""

import json
import shutil

import pytest

from floydtui.cli import main
from floydtui.config import load_preset
from floydtui.config.simpletuner import LEGACY_MODEL_TYPES, export_simpletuner, import_simpletuner

GUIDE_DATASET = {
    "id": "primary-dataset", "type": "local", "instance_data_dir": "/training/data/primary-dataset",
    "crop": True, "crop_aspect": "square", "crop_style": "random", "resolution": 64, "resolution_type": "pixel",
    "minimum_image_size": 64, "maximum_image_size": 256, "target_downsample_size": 128,
    "prepend_instance_prompt": False, "instance_prompt": "Your Subject Trigger Phrase or Word",
    "caption_strategy": "instanceprompt", "repeats": 1,
}


@pytest.fixture
def st(tmp_path, repo):
    d = tmp_path / "st"
    shutil.copytree(repo / "tests/fixtures/simpletuner", d)
    return d


def test_guide_config_and_dataloader_import_as_written(st, tmp_path, capsys):
    out = tmp_path / "imported.toml"
    rc = main(["import", str(st / "config.json"), str(st / "multidatabackend.json"), "-o", str(out)])
    assert rc == 0
    p = load_preset(out)
    assert p.model["model_flavour"] == "i-medium-400m"
    assert p.training["learning_rate"] == 4e-5 and p.training["lr_end"] == 4e-6
    assert p.training["train_batch_size"] == 4 and p.training["lora_rank"] == 32  # `--` prefixes stripped
    assert p.validation["validation_resolution"] == "64,96,64x96,96x64"
    ds = p.datasets[0]
    for key, value in GUIDE_DATASET.items():
        assert ds[key] == value, key
    embeds = p.text_embeds_dataset
    assert embeds["id"] == "an example backend for text embeds." and embeds["default"] is True
    assert embeds["cache_dir"] == "/training/cache/deepfloyd/text/dreambooth"
    # unused keys are kept, with a note
    assert p.extra == {"push_to_hub": False}
    assert p.output["report_to"] == "none"  # a reporting key floydtui uses (issue 16)
    assert "kept in [extra]" in capsys.readouterr().err


def test_export_writes_the_guide_values_back(st, tmp_path):
    out = tmp_path / "p.toml"
    main(["import", str(st / "config.json"), str(st / "multidatabackend.json"), "-o", str(out)])
    assert main(["export", str(out), "-o", str(tmp_path / "exp")]) == 0
    config = json.loads((tmp_path / "exp/config.json").read_text())
    backend = json.loads((tmp_path / "exp/multidatabackend.json").read_text())
    assert config["data_backend_config"] == str((tmp_path / "exp/multidatabackend.json").resolve())
    original = json.loads((st / "config.json").read_text())
    for key, value in original.items():
        assert config[key.lstrip("-")] == value, key
    assert {k: backend[0][k] for k in GUIDE_DATASET} == GUIDE_DATASET
    assert backend[1]["cache_dir"] == "/training/cache/deepfloyd/text/dreambooth"


def _comparable(p):
    """Every resolved value, as written (paths are kept as written both ways)."""
    return {"model": p.model, "training": p.training, "validation": p.validation, "output": p.output,
            "datasets": p.datasets, "extra": p.extra}


@pytest.mark.parametrize("name", ["demo", "i-medium-400m", "ii-large-1.2b"])
def test_import_of_export_gives_back_the_preset(repo, tmp_path, name):
    p = load_preset(repo / "presets" / f"{name}.toml")
    export_simpletuner(p, tmp_path / "exp")
    data, _ = import_simpletuner([tmp_path / "exp/config.json"])  # data_backend_config is followed
    from floydtui.config.preset import preset_from_dict

    again = preset_from_dict(data, source=tmp_path / "again.toml")
    assert _comparable(again) == _comparable(p)


def test_floydtui_only_keys_travel_in_a_sidecar(repo, tmp_path):
    p = load_preset(repo / "presets/demo.toml").with_overrides({"stage2_conditioning": "timesteps",
                                                                "embed_batch_size": 3})
    written = export_simpletuner(p, tmp_path / "exp")
    assert (tmp_path / "exp/floydtui.json") in written
    config = json.loads((tmp_path / "exp/config.json").read_text())
    assert "stage2_conditioning" not in config  # SimpleTuner would reject an unknown argument
    data, _ = import_simpletuner([tmp_path / "exp/config.json"])
    assert data["training"]["stage2_conditioning"] == "timesteps" and data["training"]["embed_batch_size"] == 3


@pytest.mark.parametrize("legacy", sorted(LEGACY_MODEL_TYPES))
def test_legacy_model_types(tmp_path, legacy):
    env = tmp_path / "config.env"
    env.write_text(f'export MODEL_TYPE="{legacy}"\nexport LEARNING_RATE=4e-5\n')
    data, notes = import_simpletuner([env])
    model_type, stage = LEGACY_MODEL_TYPES[legacy]
    assert data["training"]["model_type"] == model_type
    assert data["model"]["model_flavour"].startswith("ii-" if stage == 2 else "i-")
    assert data["training"]["learning_rate"] == 4e-5
    (note,) = [n for n in notes if n.key == "model_type"]
    assert legacy in note.message and note.severity == "warning"


def test_config_env_with_extra_args(st, tmp_path):
    data, notes = import_simpletuner([st / "config.env", st / "multidatabackend.json"])
    assert data["training"]["model_type"] == "lora" and data["model"]["model_flavour"] == "ii-medium-450m"
    assert data["model"]["pretrained_model_name_or_path"] == "DeepFloyd/IF-II-M-v1.0"
    assert data["training"]["max_train_steps"] == 2000 and data["training"]["lr_end"] == 4e-6
    assert data["training"]["use_bitfit"] is True and data["validation"]["num_eval_images"] == 2
    assert data["extra"] == {"some_unknown_flag": "3"}


def test_config_toml_with_dashes(tmp_path):
    src = tmp_path / "config.toml"
    src.write_text('"--model_family" = "deepfloyd"\n"--model_flavour" = "i-large-900m"\n"--lora_rank" = 16\n')
    data, _ = import_simpletuner([src])
    assert data["model"]["model_flavour"] == "i-large-900m" and data["training"]["lora_rank"] == 16


def test_import_errors_are_clear(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text('{"learning_rate": 4e-5,}')
    assert main(["import", str(bad), "-o", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert "JSON syntax error" in err and "config.json:1:" in err
    bad.write_text('{"data_backend_config": "nowhere.json"}')
    assert main(["import", str(bad), "-o", str(tmp_path / "x.toml")]) == 2
    assert "nowhere.json" in capsys.readouterr().err
    assert not (tmp_path / "x.toml").exists()  # nothing half-written


def test_import_refuses_to_overwrite(tmp_path, st, capsys):
    out = tmp_path / "p.toml"
    out.write_text("keep me")
    assert main(["import", str(st / "config.json"), str(st / "multidatabackend.json"), "-o", str(out)]) == 2
    assert out.read_text() == "keep me" and "--force" in capsys.readouterr().err


def test_import_of_a_file_that_is_not_utf8_is_a_message(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_bytes(b"\xff\xfe{}")
    assert main(["import", str(bad), "-o", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "internal error" not in err


def test_import_treats_null_as_unset(st, tmp_path):
    src = tmp_path / "config.json"
    src.write_text(json.dumps({"--model_family": "deepfloyd", "--lora_alpha": None, "--validation_resolution": None,
                               "--learning_rate": 1e-4}))
    backend = tmp_path / "multidatabackend.json"
    backend.write_text(json.dumps([GUIDE_DATASET | {"num_eval_images": None}]))
    out = tmp_path / "p.toml"
    assert main(["import", str(src), str(backend), "-o", str(out)]) == 0
    p = load_preset(out)
    assert p.training["lora_alpha"] == p.training["lora_rank"] and p.training["learning_rate"] == 1e-4


def test_import_errors_name_the_simpletuner_files(tmp_path, capsys):
    src = tmp_path / "config.json"
    src.write_text(json.dumps({"--lora_rank": "many"}))
    backend = tmp_path / "multidatabackend.json"
    backend.write_text(json.dumps([GUIDE_DATASET]))
    out = tmp_path / "p.toml"
    assert main(["import", str(src), str(backend), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{src} + {backend} [training]: lora_rank" in err and f"nothing was written to {out}" in err
    assert not out.exists()


def test_export_and_import_to_a_place_that_cannot_be_written_are_messages(repo, tmp_path, st, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["export", str(repo / "presets/demo.toml"), "-o", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    blocked = a_file / "sub"  # a folder under a file: mkdir fails
    assert main(["export", str(repo / "presets/demo.toml"), "-o", str(blocked)]) == 2
    assert main(["import", str(st / "config.json"), str(st / "multidatabackend.json"), "-o",
                 str(blocked / "p.toml")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "internal error" not in err


def test_import_keeps_a_list_with_a_null_in_extra(tmp_path, st):
    src = tmp_path / "config.json"
    src.write_text(json.dumps({"--model_family": "deepfloyd", "--some_list": [1, None, 2]}))
    out = tmp_path / "p.toml"
    assert main(["import", str(src), str(st / "multidatabackend.json"), "-o", str(out)]) == 0
    assert load_preset(out).extra["some_list"] == [1, 2]
