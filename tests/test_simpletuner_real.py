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
