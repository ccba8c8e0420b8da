"""floydtui's exports judged by SimpleTuner 4.10.1 itself (issue 14). Opt-in.

Runs when FLOYDTUI_SIMPLETUNER_PY names a Python 3.12 with simpletuner==4.10.1 installed
(`bash scripts/simpletuner-venv.sh` builds one in .st-venv), e.g.

    FLOYDTUI_SIMPLETUNER_PY=.st-venv/bin/python .venv/bin/python -m pytest tests/test_simpletuner_real.py

tests/simpletuner_judge.py runs in that interpreter and reports what SimpleTuner's own
load_config, parse_validation_resolutions, DeepFloyd check_user_config, data-backend
FactoryRegistry.load_configuration and each backend's validate() said.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from floydtui.config import load_preset
from floydtui.config.preset import preset_from_dict
from floydtui.config.simpletuner import export_simpletuner, import_simpletuner
from floydtui.config.simpletuner_4_10_1 import DEFAULTS, REQUIRED
from floydtui.errors import FloydError

ST_PY = os.environ.get("FLOYDTUI_SIMPLETUNER_PY")
pytestmark = [
    pytest.mark.skipif(not ST_PY, reason="FLOYDTUI_SIMPLETUNER_PY is not set: build SimpleTuner's venv with "
                       "scripts/simpletuner-venv.sh and point it at .st-venv/bin/python"),
    pytest.mark.slow,
]
JUDGE = Path(__file__).with_name("simpletuner_judge.py")
REPO = Path(__file__).parents[1]
PRESETS = sorted(p.stem for p in (REPO / "presets").glob("*.toml"))
PIXEL_RULE = "must be at least 512 pixels"


def judge(*pairs: tuple[Path, Path]) -> list[dict]:
    """SimpleTuner's reports on (config.json, working directory) pairs, from one process."""
    argv = [str(x) for pair in pairs for x in pair]
    proc = subprocess.run([ST_PY, str(JUDGE), *argv], capture_output=True, text=True, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert proc.returncode == 0 and lines, f"the judge failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1])


def _without_pixel_sizes(exp: Path) -> None:
    """The fix the 512-pixel warning names: leave maximum_image_size / target_downsample_size out."""
    path = exp / "multidatabackend.json"
    datasets = json.loads(path.read_text())
    for ds in datasets:
        ds.pop("maximum_image_size", None)
        ds.pop("target_downsample_size", None)
    path.write_text(json.dumps(datasets))


@pytest.fixture(scope="module")
def preset_reports(tmp_path_factory):
    """Every shipped preset exported as written, and again with the 512-pixel warning's fix."""
    pairs, warned = [], {}
    for name in PRESETS:
        preset = load_preset(REPO / "presets" / f"{name}.toml")
        for variant in ("as-exported", "fixed"):
            exp = tmp_path_factory.mktemp(f"{name}-{variant}")
            _, warnings = export_simpletuner(preset, exp)
            if variant == "fixed":
                _without_pixel_sizes(exp)
            else:
                warned[name] = [w for w in warnings if w.key == "maximum_image_size"]
            pairs.append((exp / "config.json", preset.base_dir))
    reports = judge(*pairs)
    return {name: (reports[2 * i], reports[2 * i + 1], warned[name]) for i, name in enumerate(PRESETS)}


@pytest.mark.parametrize("name", PRESETS)
def test_simpletuner_accepts_every_shipped_presets_export(preset_reports, name):
    exported, fixed, pixel_warnings = preset_reports[name]
    assert exported["errors"] == [], exported["errors"]
    assert exported["validation_resolutions"], "parse_validation_resolutions gave nothing"
    assert exported["args"]["model_family"] == "deepfloyd" and exported["args"]["model_type"] == "lora"
    # The only dataset error is SimpleTuner's 512-pixel check, which export warned about by name.
    for dataset_id, error in exported["dataset_errors"].items():
        assert PIXEL_RULE in error, error
        assert any(repr(dataset_id) in w.message for w in pixel_warnings), dataset_id
    assert fixed["errors"] == [] and fixed["dataset_errors"] == {}, (fixed["errors"], fixed["dataset_errors"])


@pytest.fixture(scope="module")
def simpletuner_example() -> Path:
    out = subprocess.run([ST_PY, "-c", "import os, simpletuner; print(os.path.dirname(simpletuner.__file__))"],
                         capture_output=True, text=True, timeout=600, check=True)
    return Path(out.stdout.strip()) / "examples/deepfloyd-if-i-medium.peft-lora"


def test_simpletuners_deepfloyd_example_means_the_same_after_import_and_export(simpletuner_example, tmp_path):
    (tmp_path / "datasets/ideogram-subject").mkdir(parents=True)  # SimpleTuner checks that the folder exists
    data, _ = import_simpletuner([simpletuner_example / "config.json", simpletuner_example / "multidatabackend.json"])
    preset = preset_from_dict(data, source=tmp_path / "example.toml")
    exp = tmp_path / "exp"
    export_simpletuner(preset, exp)
    before, after = judge((simpletuner_example / "config.json", tmp_path), (exp / "config.json", tmp_path))
    assert before["errors"] == [] and after["errors"] == [], (before["errors"], after["errors"])
    differ = {k: (before["args"].get(k), after["args"].get(k)) for k in set(before["args"]) | set(after["args"])
              if k != "data_backend_config" and before["args"].get(k) != after["args"].get(k)}
    assert differ == {}, differ
    assert before["backend_configs"] == after["backend_configs"]
    assert before["dataset_errors"] == after["dataset_errors"] == {}


def test_the_mapping_modules_defaults_are_simpletuners():
    proc = subprocess.run([ST_PY, str(JUDGE), "--defaults"], capture_output=True, text=True, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    theirs = json.loads(lines[-1])
    assert {k: v for k, v in DEFAULTS.items() if theirs.get(k, "missing") != v} == {}
    assert set(REQUIRED) <= set(theirs)


# ---- timestep bias (issue 19) ----------------------------------------------------------------
def _bias(strategy: str, multiplier: float = 1.0, portion: float = 0.25, begin: int = 0, end: int = 1000) -> dict:
    return {"timestep_bias_strategy": strategy, "timestep_bias_multiplier": multiplier,
            "timestep_bias_portion": portion, "timestep_bias_begin": begin, "timestep_bias_end": end}


BIASES = [_bias("later", 5), _bias("later", 3, 0.1), _bias("later", 0.5), _bias("earlier", 5), _bias("earlier", 2, 0.6),
          _bias("range", 3, begin=200, end=500), _bias("range", 10, begin=0, end=1000), _bias("range", 2, begin=999),
          _bias("later", 4, 0.0004),  # under one timestep: SimpleTuner's slice(-0, None) biases every index
          _bias("none", 5)]


def judge_timestep_bias(cases: list[dict]) -> list[dict]:
    proc = subprocess.run([ST_PY, str(JUDGE), "--timestep-bias", json.dumps(cases)], capture_output=True, text=True,
                          timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert proc.returncode == 0 and lines, f"the judge failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1])


def test_floydtuis_timestep_weights_are_simpletuners_own():
    import torch

    from floydtui.train.inputs import timestep_bias_weights

    theirs = judge_timestep_bias([{"args": b, "num_timesteps": 1000} for b in BIASES])
    for bias, said in zip(BIASES, theirs):
        ours = timestep_bias_weights(bias, 1000)
        if ours is None:  # "none": SimpleTuner's weights are all equal, floydtui draws uniformly
            assert len(set(said["weights"])) == 1, bias
        else:
            assert torch.equal(ours, torch.tensor(said["weights"], dtype=torch.float32)), bias


def test_simpletuners_segmented_draw_undoes_the_bias_that_floydtui_and_its_unsegmented_draw_keep():
    """Why export turns segmented sampling off: SimpleTuner's default, at batch 4, draws one timestep per
    quarter of the schedule, so "later" with portion 0.25 leaves a quarter at >= 750 instead of 5/8."""
    import torch

    from floydtui.train.inputs import draw_timesteps, timestep_bias_weights

    bias = _bias("later", 5)
    segmented, unsegmented = judge_timestep_bias([
        {"args": bias, "num_timesteps": 1000, "batch": 4, "draws": 2500},
        {"args": bias | {"disable_segmented_timestep_sampling": True}, "num_timesteps": 1000, "batch": 4,
         "draws": 2500}])
    ours = draw_timesteps(10_000, 1000, torch.Generator().manual_seed(0), timestep_bias_weights(bias, 1000))

    def late(draws) -> float:
        return sum(int(t) >= 750 for t in draws) / len(draws)

    assert abs(late(segmented["draws"]) - 1 / 4) < 0.04
    assert abs(late(unsegmented["draws"]) - 5 / 8) < 0.04 and abs(late(ours) - 5 / 8) < 0.04


@pytest.mark.parametrize("bias", [_bias("later", 3), _bias("range", 2, begin=600, end=900), _bias("earlier", 4, 0.4)],
                         ids=["later", "range", "earlier"])
def test_an_exported_bias_loads_in_simpletuner_and_comes_back(repo, tmp_path, bias):
    preset = load_preset(repo / "presets" / "i-medium-400m.toml").with_overrides(bias)
    exp = tmp_path / "exp"
    export_simpletuner(preset, exp)
    _without_pixel_sizes(exp)
    (report,) = judge((exp / "config.json", preset.base_dir))
    assert report["errors"] == [], report["errors"]
    assert {k: report["args"][k] for k in bias} == bias
    assert report["args"]["disable_segmented_timestep_sampling"] is True  # SimpleTuner draws as floydtui does
    (exp / "floydtui.json").unlink()  # what SimpleTuner read, alone, gives the preset's bias back
    data, _ = import_simpletuner([exp / "config.json"])
    assert {k: data["training"][k] for k in bias} == bias
    again = tmp_path / "again"
    export_simpletuner(preset_from_dict(data, source=tmp_path / "imported.toml"), again)

    def timestep_keys(folder: Path) -> dict:
        return {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if "timestep" in k}

    assert timestep_keys(again) == timestep_keys(exp)


def test_simpletuner_refuses_the_portion_that_floydtui_refuses(repo, tmp_path):
    exp = tmp_path / "exp"
    export_simpletuner(load_preset(repo / "presets" / "i-medium-400m.toml").with_overrides(_bias("later", 2)), exp)
    config = json.loads((exp / "config.json").read_text())
    (exp / "config.json").write_text(json.dumps(config | {"timestep_bias_portion": 1.5}))
    (report,) = judge((exp / "config.json", tmp_path))
    assert "Timestep bias portion must be between 0.0 and 1.0" in report["errors"][0]["message"]
    with pytest.raises(FloydError, match="timestep_bias_portion = 1.5 is out of range"):
        load_preset(repo / "presets" / "i-medium-400m.toml", {"timestep_bias_portion": 1.5})
