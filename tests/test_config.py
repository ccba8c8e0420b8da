"""The preset schema, its error messages and the flavour registry (issue 2)."""

from pathlib import Path

import pytest

from floydtui.config import FLAVOURS, describe_sizes, load_preset, parse_validation_resolution
from floydtui.config.preset import preset_from_dict
from floydtui.errors import FloydError

MINIMAL = """
[model]
model_flavour = "i-medium-400m"

[[datasets]]
id = "d"
instance_data_dir = "imgs"
"""


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def problems_of(tmp_path, text):
    with pytest.raises(FloydError) as e:
        load_preset(write(tmp_path, text))
    return e.value.problems


def test_minimal_preset_gets_stage_one_defaults(tmp_path):
    p = load_preset(write(tmp_path, MINIMAL))
    assert p.resolution == 64
    assert p.training["resolution_type"] == "pixel"
    assert p.training["learning_rate"] == 4e-5 and p.training["lr_end"] == 4e-6
    assert p.training["lora_rank"] == 32 and p.training["train_batch_size"] == 4
    assert p.base_model == "DeepFloyd/IF-I-M-v1.0"
    assert p.validation_sizes == [(64, 64)]
    assert p.training["lora_alpha"] == 32
    # relative paths resolve against the preset's folder, not the working directory
    assert p.path(p.image_datasets[0]["instance_data_dir"]) == (tmp_path / "imgs").resolve()
    # a text_embeds dataset is created by default, and the preset says where
    assert p.text_embeds_cache_dir == (tmp_path / "cache/text/deepfloyd").resolve()
    assert any("text_embeds" in w.message and "cache/text/deepfloyd" in w.message for w in p.warnings)


def test_stage_two_defaults_follow_the_flavour(tmp_path):
    p = load_preset(write(tmp_path, MINIMAL.replace("i-medium-400m", "ii-medium-450m")))
    assert p.stage == 2 and p.resolution == 256 and p.validation_sizes == [(256, 256)]
    assert p.base_model == "DeepFloyd/IF-II-M-v1.0"


def test_unknown_key_names_key_table_and_closest(tmp_path):
    probs = problems_of(tmp_path, MINIMAL + "\n[training]\nlearning_rat = 1e-4\n")
    (p,) = probs
    assert "learning_rat" in p.message and "[training]" in p.message
    assert "did you mean learning_rate?" in p.hint


def test_key_in_the_wrong_table_says_where_it_belongs(tmp_path):
    probs = problems_of(tmp_path, MINIMAL + "\n[validation]\nlora_rank = 8\n")
    assert "lora_rank belongs in [training]" in probs[0].hint


def test_unknown_table_and_dataset_key(tmp_path):
    probs = problems_of(tmp_path, MINIMAL.replace('id = "d"', 'id = "d"\ncrop_stlye = "center"') + "\n[trainig]\n")
    messages = " | ".join(p.message + " " + p.hint for p in probs)
    assert "unknown table [trainig]" in messages and "did you mean training?" in messages
    assert "crop_stlye" in messages and "did you mean crop_style?" in messages


@pytest.mark.parametrize("line,needle", [
    ("lora_rank = \"big\"", "lora_rank must be an integer"),
    ("lora_rank = 0", "lora_rank = 0 is out of range: must be an integer >= 1"),
    ("learning_rate = -1.0", "learning_rate = -1.0 is out of range"),
    ("lr_scheduler = \"cosin\"", "lr_scheduler = 'cosin' is not allowed: one of 'constant'"),
    ("use_dora = \"yes\"", "use_dora must be true/false"),
    ("train_batch_size = 2.5", "train_batch_size must be an integer"),
    ("mixed_precision = \"fp32\"", "mixed_precision = 'fp32' is not allowed"),
])
def test_wrong_type_or_range_names_key_and_allowed(tmp_path, line, needle):
    probs = problems_of(tmp_path, MINIMAL + f"\n[training]\n{line}\n")
    assert any(needle in p.message for p in probs), [p.message for p in probs]
    assert all(p.key for p in probs)


def test_choice_typo_suggests_the_choice(tmp_path):
    probs = problems_of(tmp_path, MINIMAL + "\n[training]\nlr_scheduler = \"cosin\"\n")
    assert "did you mean cosine?" in probs[0].hint


def test_every_error_is_reported_not_just_the_first(tmp_path):
    probs = problems_of(tmp_path, MINIMAL + "\n[training]\nlora_rank = 0\nseed = -3\nfoo = 1\n")
    assert {p.key for p in probs} >= {"lora_rank", "seed", "foo"}


def test_toml_syntax_error_gives_line_and_column(tmp_path):
    path = write(tmp_path, "[model]\nmodel_flavour = i-medium\n")
    with pytest.raises(FloydError) as e:
        load_preset(path)
    (p,) = e.value.problems
    assert p.where == f"{path}:2:17" and "TOML syntax error" in p.message
    assert "model_flavour = i-medium" in p.message


def test_missing_preset_file(tmp_path):
    with pytest.raises(FloydError) as e:
        load_preset(tmp_path / "nope.toml")
    assert "no such preset file" in e.value.problems[0].message


@pytest.mark.parametrize("value,expected", [
    ("64,96,64x96,96x64", [(64, 64), (96, 96), (64, 96), (96, 64)]),
    (" 64 , 96 x 64 ", [(64, 64), (96, 64)]),
    ("256", [(256, 256)]),
    (64, [(64, 64)]),
])
def test_validation_resolution_parses(value, expected):
    assert parse_validation_resolution(value) == expected


def test_describe_sizes_is_the_wizard_live_parse():
    assert describe_sizes(parse_validation_resolution("64,96,64x96,96x64")) == \
        "4 images: 64x64, 96x96, 64x96, 96x64"
    assert describe_sizes(parse_validation_resolution("64,64x96"), seeds=3) == \
        "6 images a prompt: 64x64, 64x96, 3 seeds each"


@pytest.mark.parametrize("value,bad", [
    ("64,abc", "'abc'"), ("64,,96", "item 2"), ("64x", "'64x'"), ("1.0", "'1.0'"), ("65", "not a multiple of 8"),
    ("64,0.25", "'0.25'"),
])
def test_bad_validation_resolution_item_is_named(value, bad):
    with pytest.raises(FloydError) as e:
        parse_validation_resolution(value)
    assert any(bad in p.message for p in e.value.problems)


def test_bad_validation_resolution_in_a_preset(tmp_path):
    probs = problems_of(tmp_path, MINIMAL + '\n[validation]\nvalidation_resolution = "64,1.0"\n')
    assert probs[0].key == "validation_resolution" and "'1.0'" in probs[0].message


def test_stage_two_size_checks_name_flavour_and_value(tmp_path):
    text = MINIMAL.replace("i-medium-400m", "ii-large-1.2b") + \
        '\n[training]\nresolution = 64\n[validation]\nvalidation_resolution = "64,256"\n'
    probs = problems_of(tmp_path, text)
    msgs = [p.message for p in probs]
    assert any("ii-large-1.2b" in m and "resolution is 64" in m for m in msgs)
    assert any("ii-large-1.2b" in m and "64x64 is below 256" in m for m in msgs)


def test_stage_one_high_resolution_is_a_warning(tmp_path):
    p = load_preset(write(tmp_path, MINIMAL + "\n[training]\nresolution = 256\n"))
    assert any(w.key == "resolution" and "i-medium-400m" in w.message and "256" in w.message for w in p.warnings)


def test_wrong_stage_builtin_model(tmp_path):
    probs = problems_of(tmp_path, MINIMAL.replace(
        'model_flavour = "i-medium-400m"', 'model_flavour = "i-medium-400m"\n'
        'pretrained_model_name_or_path = "builtin:tiny-if-ii"'))
    assert "stage I" in probs[0].message and "stage II model" in probs[0].message


def test_flavour_registry_matches_the_model_zoo():
    assert set(FLAVOURS) == {"i-medium-400m", "i-large-900m", "i-xlarge-4.3b", "ii-medium-450m", "ii-large-1.2b"}
    assert FLAVOURS["i-xlarge-4.3b"].hub_id == "DeepFloyd/IF-I-XL-v1.0"
    assert FLAVOURS["i-xlarge-4.3b"].unet_params == 4_300_000_000
    assert [f.stage for f in FLAVOURS.values()] == [1, 1, 1, 2, 2]
    assert FLAVOURS["ii-medium-450m"].native_resolution == 256


def test_overrides_and_set_values(tmp_path):
    from floydtui.config.preset import parse_set_value

    p = load_preset(write(tmp_path, MINIMAL), overrides={"learning_rate": parse_set_value("1e-4"),
                                                         "training.lora_rank": parse_set_value("8")})
    assert p.training["learning_rate"] == 1e-4 and p.training["lora_rank"] == 8
    assert parse_set_value("hello world") == "hello world"
    with pytest.raises(FloydError) as e:
        p.with_overrides({"lerning_rate": 1.0})
    assert "did you mean learning_rate?" in e.value.problems[0].hint


def test_preset_toml_round_trips(tmp_path):
    p = load_preset(write(tmp_path, MINIMAL + "\n[training]\nlora_rank = 16\n"))
    again = preset_from_dict(__import__("tomllib").loads(p.to_toml()), source=p.source)
    assert again.training == p.training and again.datasets == p.datasets


def test_every_shipped_preset_passes_check(repo, capsys):
    """`floydtui check` on each shipped preset, in this process: a fresh one per preset spent a minute importing."""
    from floydtui.cli import main

    presets = sorted((repo / "presets").glob("*.toml"))
    assert len(presets) >= 7
    for preset in presets:
        code = main(["check", str(preset)])
        out, err = capsys.readouterr()
        assert code == 0, (preset.name, out, err)
        assert f"{preset}: trainable" in out, (preset.name, out)


def test_a_bad_value_is_reported_once_not_again_as_missing_or_against_a_default(tmp_path):
    text = ('[training]\nlearning_rate = "high"\n[[datasets]]\nid = 7\ninstance_data_dir = 4\n')
    probs = problems_of(tmp_path, text)
    messages = [p.message for p in probs]
    assert [p.key for p in probs] == ["learning_rate", "id", "instance_data_dir"], messages
    # a valid lr_end above a valid learning_rate is still an error
    assert [p.key for p in problems_of(tmp_path, MINIMAL + "[training]\nlr_end = 1e-3\n")] == ["lr_end"]


def test_unknown_builtin_model_is_a_preset_error(tmp_path):
    (p,) = problems_of(tmp_path, MINIMAL.replace(
        'model_flavour = "i-medium-400m"', 'model_flavour = "i-medium-400m"\n'
        'pretrained_model_name_or_path = "builtin:tiny-if-1"'))
    assert p.key == "pretrained_model_name_or_path" and "builtin:tiny-if-1" in p.message
    assert "did you mean builtin:tiny-if-i?" in p.hint


@pytest.mark.parametrize("value,needle", [
    ("bad id with spaces", "neither a folder"),
    ("org/name/extra", "neither a folder"),
])
def test_model_that_is_neither_folder_nor_hub_id(tmp_path, value, needle):
    text = MINIMAL.replace('model_flavour = "i-medium-400m"',
                           f'model_flavour = "i-medium-400m"\npretrained_model_name_or_path = "{value}"')
    probs = problems_of(tmp_path, text)
    assert probs[0].key == "pretrained_model_name_or_path" and needle in probs[0].message


def test_existing_local_model_folder_and_hub_ids_pass(tmp_path):
    (tmp_path / "models" / "my-if").mkdir(parents=True)
    for value in ("models/my-if", "DeepFloyd/IF-I-XL-v1.0"):
        text = MINIMAL.replace('model_flavour = "i-medium-400m"',
                               f'model_flavour = "i-medium-400m"\npretrained_model_name_or_path = "{value}"')
        assert load_preset(write(tmp_path, text)).model["pretrained_model_name_or_path"] == value
