"""SimpleTuner 4.10.1's names and defaults both ways, env expansion, partial imports (issue 14).

These run without SimpleTuner; tests/test_simpletuner_real.py runs the same files through
SimpleTuner itself when FLOYDTUI_SIMPLETUNER_PY names its interpreter.
"""

import json

import pytest

from floydtui.cli import main
from floydtui.config import load_preset
from floydtui.config.preset import preset_from_dict
from floydtui.config.simpletuner import export_simpletuner, import_simpletuner
from floydtui.config.simpletuner_4_10_1 import DEFAULTS, TEXT_EMBEDS_KEYS

# The values of SimpleTuner 4.10.1's own examples/deepfloyd-if-i-medium.peft-lora/config.json.
ST_EXAMPLE = {
    "base_model_precision": "no_change", "caption_dropout_probability": 0.1, "checkpoint_step_interval": 50,
    "checkpoints_total_limit": 5, "disable_bucket_pruning": True, "gradient_checkpointing": True,
    "hub_model_id": "simpletuner-example-deepfloyd-if-i-medium-peft-lora", "learning_rate": 1e-5, "lora_rank": 16,
    "lora_type": "standard", "lr_scheduler": "constant", "max_train_steps": 100, "mixed_precision": "bf16",
    "model_family": "deepfloyd", "model_flavour": "i-medium-400m", "pretrained_model_name_or_path":
    "DeepFloyd/IF-I-M-v1.0", "model_type": "lora", "num_train_epochs": 0, "optimizer": "adamw_bf16",
    "output_dir": "output/examples/deepfloyd-if-i-medium.peft-lora", "push_checkpoints_to_hub": False,
    "push_to_hub": False, "report_to": "none", "resolution": 512, "resolution_type": "pixel", "seed": 42,
    "train_batch_size": 1, "use_ema": False, "validation_guidance": 7.0, "validation_num_inference_steps": 20,
    "validation_prompt": "domokun holding a sign", "validation_prompt_library": False,
    "validation_resolution": "512x512", "validation_seed": 42, "validation_steps": 50,
}
ST_EXAMPLE_DATASETS = [
    {"id": "deepfloyd-local-512", "type": "local", "instance_data_dir": "datasets/ideogram-subject", "crop": True,
     "crop_style": "random", "crop_aspect": "square", "minimum_image_size": 128, "maximum_image_size": 512,
     "target_downsample_size": 512, "resolution": 512, "resolution_type": "pixel", "metadata_backend": "discovery",
     "caption_strategy": "filename", "repeats": 2},
    {"id": "deepfloyd-text-cache", "dataset_type": "text_embeds", "default": True, "type": "local",
     "cache_dir": "cache/text/deepfloyd"},
]


def _flat(data: dict) -> dict:
    return {k: v for t in ("model", "training", "validation", "output") for k, v in data.get(t, {}).items()}


def _export(preset, tmp_path):
    written, warnings = export_simpletuner(preset, tmp_path / "exp")
    config = json.loads((tmp_path / "exp/config.json").read_text())
    return config, json.loads((tmp_path / "exp/multidatabackend.json").read_text()), warnings


def _reads(config: dict, key: str):
    """What SimpleTuner reads for `key`: the file's value, else its default."""
    return config.get(key, DEFAULTS.get(key))


# floydtui key = value  <->  SimpleTuner key = value (the table of issue 14)
TABLE = [
    ({"snr_gamma": 5.0}, "snr_gamma", 5),
    ({"snr_gamma": 0.0}, "snr_gamma", None),
    ({"attention_mechanism": "sdpa"}, "attention_mechanism", "diffusers"),
    ({"attention_mechanism": "xformers"}, "attention_mechanism", "xformers"),
    ({"use_bitfit": True}, "layer_freeze_strategy", "bitfit"),
    ({"use_bitfit": False}, "layer_freeze_strategy", None),
    ({"optimizer": "adamw"}, "optimizer", "torch-adamw"),
    ({"optimizer": "adamw_bf16", "mixed_precision": "bf16"}, "optimizer", "adamw_bf16"),
    ({"variant": "none"}, "variant", None),
    ({"variant": "fp16"}, "variant", "fp16"),
    ({"max_grad_norm": 1.0, "grad_clip_method": "norm"}, "grad_clip_method", "norm"),
    ({"max_grad_norm": 3.0}, "max_grad_norm", 3.0),
    ({"lora_target_modules": ["to_q", "add_k_proj"]}, "peft_lora_target_modules", '["to_q", "add_k_proj"]'),
    ({"validation_resolution": "96 x 64, 64×96"}, "validation_resolution", "96x64,64x96"),
    ({"validation_seed": 7}, "validation_seed", 7),
    ({"checkpointing_steps": 250}, "checkpoint_step_interval", 250),
    ({"validation_steps": 30}, "validation_step_interval", 30),
    ({"adam_epsilon": 1e-6, "optimizer": "adamw_bf16"}, "optimizer_config", None),
    ({"adam_epsilon": 1e-7, "adam_weight_decay": 0.0, "optimizer": "adamw"}, "optimizer_config",
     "weight_decay=0.0,eps=1e-07"),
    ({"adam_beta2": 0.99}, "optimizer_beta2", 0.99),
    ({"lr_end": 4e-7}, "lr_end", 4e-7),
    ({"max_train_steps": 100}, "num_train_epochs", 0),
]


@pytest.mark.parametrize("overrides,st_key,st_value", TABLE, ids=[f"{r[1]}={r[2]}" for r in TABLE])
def test_the_mapping_both_ways(repo, tmp_path, overrides, st_key, st_value):
    preset = load_preset(repo / "presets/i-medium-400m.toml").with_overrides(overrides)
    config, _, _ = _export(preset, tmp_path)
    assert _reads(config, st_key) == st_value
    assert not {"use_bitfit", "checkpointing_steps", "validation_steps", "lora_target_modules"} & set(config)
    (tmp_path / "exp/floydtui.json").unlink()  # SimpleTuner's file alone must carry the meaning back
    data, _ = import_simpletuner([tmp_path / "exp/config.json"])
    back = _flat(data)
    for key, value in overrides.items():
        if key == "validation_resolution":
            value = "96x64,64x96"
        assert back[key] == value, key


def test_a_variant_of_auto_means_fp16_for_a_hub_model(repo, tmp_path):
    config, _, _ = _export(load_preset(repo / "presets/i-medium-400m.toml"), tmp_path)
    assert config["variant"] == "fp16"  # never "auto": SimpleTuner passes it to from_pretrained as written


def test_what_simpletuner_cannot_say_is_a_named_warning(repo, tmp_path):
    base = load_preset(repo / "presets/i-medium-400m.toml")
    _, _, warnings = _export(base.with_overrides({"seed": 0}), tmp_path)
    assert "seed" in {w.key for w in warnings}  # SimpleTuner reads seed 0 as "a new seed from the clock"
    preset = base.with_overrides({"snr_gamma": 2.5, "validation_seed": 0})
    config, _, warnings = _export(preset, tmp_path)
    keys = {w.key for w in warnings}
    assert {"snr_gamma", "validation_seed", "maximum_image_size"} <= keys
    assert config["snr_gamma"] == 2 and isinstance(config["snr_gamma"], int)
    pixel = next(w for w in warnings if w.key == "maximum_image_size")
    assert "_validate_image_size_settings" in pixel.message and "512" in pixel.hint
    side = json.loads((tmp_path / "exp/floydtui.json").read_text())
    assert side["simpletuner_version"] == "4.10.1" and side["snr_gamma"] == 2.5 and side["validation_seed"] == 0
    data, _ = import_simpletuner([tmp_path / "exp/config.json"])  # the sidecar gives the exact values back
    assert _flat(data)["snr_gamma"] == 2.5 and _flat(data)["validation_seed"] == 0


def test_the_512_pixel_rule_keeps_the_guides_values(repo, tmp_path):
    _, backend, _ = _export(load_preset(repo / "presets/i-medium-400m.toml"), tmp_path)
    assert backend[0]["maximum_image_size"] == 256 and backend[0]["target_downsample_size"] == 128


def test_a_text_embeds_dataset_goes_out_with_its_own_keys(repo, tmp_path):
    _, backend, _ = _export(load_preset(repo / "presets/i-medium-400m.toml"), tmp_path)
    embeds = next(d for d in backend if d["dataset_type"] == "text_embeds")
    assert set(embeds) <= set(TEXT_EMBEDS_KEYS) and embeds["cache_dir"] == "../cache/text/deepfloyd"


def test_import_fills_what_a_file_leaves_out_with_simpletuners_defaults(tmp_path):
    src = tmp_path / "config.json"
    src.write_text(json.dumps({"model_family": "deepfloyd", "model_flavour": "i-medium-400m", "model_type": "lora",
                               "learning_rate": 1e-5}))
    data, _ = import_simpletuner([src])
    flat = _flat(data)
    assert flat["lora_dropout"] == 0.1 and flat["lr_end"] == 4e-7 and flat["lora_rank"] == 16
    assert flat["max_grad_norm"] == 2.0 and flat["grad_clip_method"] == "value"
    assert flat["validation_negative_prompt"] == "blurry, cropped, ugly" and flat["variant"] == "none"
    assert flat["gradient_checkpointing"] is True and flat["lr_scheduler"] == "constant_with_warmup"
    assert flat["checkpoints_total_limit"] == 5 and flat["validation_guidance"] == 7.5
    assert flat["lora_target_modules"] == ["to_k", "to_q", "to_v", "to_out.0"]  # DeepFloyd's default targets
    assert flat["adam_epsilon"] == 1e-6  # adamw_bf16's own eps in SimpleTuner, not AdamW's 1e-8


def test_simpletuners_example_imports_with_its_meaning_and_exports_the_same(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(ST_EXAMPLE | {"data_backend_config": "multidatabackend.json"}))
    (tmp_path / "multidatabackend.json").write_text(json.dumps(ST_EXAMPLE_DATASETS))
    data, notes = import_simpletuner([tmp_path / "config.json"])
    flat = _flat(data)
    assert flat["checkpointing_steps"] == 50 and flat["validation_steps"] == 50  # not left in [extra]
    assert flat["lora_dropout"] == 0.1 and flat["lr_end"] == 4e-7 and flat["max_grad_norm"] == 2.0
    assert flat["variant"] == "none" and flat["validation_negative_prompt"] == "blurry, cropped, ugly"
    assert "checkpoint_step_interval" not in data["extra"] and "hub_model_id" in data["extra"]
    unimplemented = next(n for n in notes if n.key == "extra")
    assert "hub_model_id" in unimplemented.message and unimplemented.severity == "warning"
    preset = preset_from_dict(data, source=tmp_path / "p.toml")
    config, backend, _ = _export(preset, tmp_path)
    for key, value in ST_EXAMPLE.items():
        key = {"validation_steps": "validation_step_interval"}.get(key, key)
        assert _reads(config, key) == value, key
    assert backend[0]["metadata_backend"] == "discovery" and backend[0]["repeats"] == 2


def test_a_dataset_without_sizes_never_downsamples_both_ways(repo, tmp_path):
    backend = tmp_path / "multidatabackend.json"
    backend.write_text(json.dumps([{"id": "plain", "type": "local", "instance_data_dir": "imgs"}]))
    data, _ = import_simpletuner([backend])
    (ds,) = data["datasets"]
    assert ds["maximum_image_size"] == 0 and ds["target_downsample_size"] == 0  # SimpleTuner's unset: never
    assert ds["crop"] is False and ds["minimum_image_size"] == 0 and ds["caption_strategy"] == "filename"
    preset = load_preset(repo / "presets/i-medium-400m.toml")
    preset.datasets[0].update(maximum_image_size=0, target_downsample_size=0)
    _, out, warnings = _export(preset, tmp_path)
    assert "maximum_image_size" not in out[0] and "target_downsample_size" not in out[0]
    assert not [w for w in warnings if w.key == "maximum_image_size"]  # nothing for the 512-pixel rule to reject


def test_env_files_expand_variables_and_strip_comments(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOYDTUI_TEST_ROOT", "/data")
    env = tmp_path / "config.env"
    env.write_text(
        "export BASE_DIR=/training\n"
        "export INSTANCE_DIR=\"${BASE_DIR}/images\"\n"
        "export OUTPUT_DIR=${BASE_DIR}/models/deepfloyd   # where the LoRA goes\n"
        "export MODEL_TYPE=deepfloyd-lora\n"
        "export LEARNING_RATE=4e-5 # the guide's\n"
        "export LEARNING_RATE_END=4e-6\n"
        "export USE_XFORMERS=true\n"
        "export PURE_BF16=true\n"
        "export VALIDATION_PROMPT='${BASE_DIR} stays'\n"
        "export DATALOADER_CONFIG=$FLOYDTUI_TEST_ROOT/multidatabackend.json\n"
        "export HUB_MODEL_NAME=${NOT_SET_ANYWHERE}x\n")
    data, notes = import_simpletuner([env])
    flat = _flat(data)
    assert flat["output_dir"] == "/training/models/deepfloyd"
    assert flat["learning_rate"] == 4e-5 and flat["lr_end"] == 4e-6
    assert flat["attention_mechanism"] == "xformers" and flat["optimizer"] == "adamw_bf16"
    assert flat["validation_prompt"] == "${BASE_DIR} stays"  # single quotes: no expansion, as in the shell
    assert not {"base_dir", "instance_dir", "learning_rate_end", "use_xformers", "pure_bf16"} & set(data.get("extra", {}))
    expanded = [n for n in notes if n.severity == "note"]
    assert any("${BASE_DIR} (line 1)" in n.message for n in expanded)
    assert any("FLOYDTUI_TEST_ROOT" in n.message and "environment" in n.message for n in expanded)
    assert any("NOT_SET_ANYWHERE" in n.message and n.severity == "warning" for n in notes)
    assert any("/data/multidatabackend.json, which does not exist" in n.message for n in notes)


def test_a_partial_config_env_is_written_with_its_problems_listed(tmp_path, capsys):
    env = tmp_path / "config.env"
    env.write_text("export MODEL_TYPE=deepfloyd-lora\nexport LEARNING_RATE=1e-7\n")
    out = tmp_path / "p.toml"
    assert main(["import", str(env), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "below SimpleTuner's default lr_end" in captured.err and "no multidatabackend.json" in captured.err
    assert "cannot train yet" in captured.out
    written = out.read_text()
    assert "lr_end = 1e-08" in written and "learning_rate = 1e-07" in written
    assert main(["check", str(out)]) == 1
    assert "no image dataset" in capsys.readouterr().err


def test_check_says_simpletuner_would_not_read_the_spacing(repo):
    preset = load_preset(repo / "presets/i-medium-400m.toml").with_overrides(
        {"validation_resolution": "96 x 64, 64×96,64"})
    (w,) = [w for w in preset.warnings if w.key == "validation_resolution"]
    assert "'96 x 64', '64×96'" in w.message and "'96x64,64x96,64'" in w.hint
    clean = load_preset(repo / "presets/i-medium-400m.toml").with_overrides({"validation_resolution": "96x64, 64X96"})
    assert not [w for w in clean.warnings if w.key == "validation_resolution"]  # SimpleTuner strips and lower-cases
