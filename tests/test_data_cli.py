"""`floydtui scan`, the dataset section of `floydtui check`, the demo data and the import rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_image

from floydtui.cli import main
from floydtui.config.preset import load_preset
from floydtui.data.report import check_datasets

REPO = Path(__file__).resolve().parent.parent

PRESET = """
[model]
model_flavour = "i-medium-400m"
[training]
train_batch_size = 2
[[datasets]]
id = "shapes"
instance_data_dir = "imgs"
caption_strategy = "filename"
"""


@pytest.fixture
def preset_file(tmp_path) -> Path:
    for name, (w, h) in {"a_red_circle.png": (200, 150), "big.png": (4000, 3000), "ok.png": (64, 64),
                         "tiny.png": (50, 80)}.items():
        write_image(tmp_path / "imgs" / name, w, h)
    (tmp_path / "imgs" / "fake.jpg").write_text("hello")
    path = tmp_path / "preset.toml"
    path.write_text(PRESET)
    return path


def test_scan_json_lines_follow_the_design(preset_file, capsys):
    assert main(["scan", str(preset_file), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {Path(r["path"]).name: r for r in lines}
    assert len(lines) == 5
    for r in lines:
        assert {"path", "status", "reason", "original_size", "intermediate_size", "bucket", "caption"} <= set(r)
    assert by_name["big.png"]["status"] == "ok"
    assert by_name["big.png"]["original_size"] == [4000, 3000]
    assert by_name["big.png"]["intermediate_size"] == [171, 128] and by_name["big.png"]["bucket"] == [64, 64]
    assert by_name["a_red_circle.png"]["caption"] == "a red circle"
    assert by_name["tiny.png"]["status"] == "skipped"
    assert by_name["tiny.png"]["reason"] == "smaller than minimum_image_size"
    assert by_name["tiny.png"]["intermediate_size"] is None and by_name["tiny.png"]["original_size"] == [50, 80]
    assert by_name["fake.jpg"]["reason"] == "not an image" and by_name["fake.jpg"]["original_size"] is None


def test_scan_human_summary(preset_file, capsys):
    assert main(["scan", str(preset_file)]) == 0
    out = capsys.readouterr()
    assert "5 files: 3 usable, 2 skipped, 1 downsampled" in out.out
    assert "skipped: 1 not an image, 1 smaller than minimum_image_size" in out.out
    assert "buckets: 64x64: 3" in out.out and "crops keep" in out.out
    assert "skipped tiny.png: smaller than minimum_image_size (50x80 is below 64)" in out.out
    assert "2 of 5 files skipped" in out.err
    preset_file.write_text(PRESET.replace('"filename"', '"textfile"'))
    assert main(["scan", str(preset_file)]) == 0
    out = capsys.readouterr().out
    assert "caption ok.png: caption file ok.txt is missing: used the filename caption 'ok'" in out


def test_scan_exit_codes(tmp_path, preset_file, capsys):
    assert main(["scan", str(tmp_path / "nope.toml")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text(PRESET.replace("caption_strategy", "caption_strat"))
    assert main(["scan", str(bad)]) == 2
    assert "caption_strat" in capsys.readouterr().err
    # a missing dataset folder is a finding of the scan, not a broken preset
    missing = tmp_path / "missing.toml"
    missing.write_text(PRESET.replace('"imgs"', '"nowhere"'))
    assert main(["scan", str(missing)]) == 0
    assert "does not exist" in capsys.readouterr().err


def test_check_fails_on_dataset_errors(tmp_path, preset_file, capsys):
    assert main(["check", str(preset_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (section,) = [s for s in report["sections"] if s["title"] == "datasets"]
    assert section["data"]["datasets"][0]["usable"] == 3
    assert section["data"]["datasets"][0]["skipped"] == {"not an image": 1, "smaller than minimum_image_size": 1}
    assert main(["check", str(preset_file), "--set", "train_batch_size=4"]) == 1
    out = capsys.readouterr().out
    assert "bucket 64x64 has 3 images, fewer than train_batch_size 4" in out and "lower train_batch_size to 3" in out


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "presets").glob("*.toml")))
def test_every_preset_trains_on_the_demo_data(name):
    preset = load_preset(REPO / "presets" / name)
    assert preset.path(preset.image_datasets[0]["instance_data_dir"]) == (REPO / "examples/demo-data").resolve()
    section = check_datasets(preset)
    assert section.ok, [p.format() for p in section.problems]
    (scan,) = section.data["datasets"]
    smallest_bucket = min(scan["buckets"].values())
    assert smallest_bucket >= preset.training["train_batch_size"]
    if preset.stage == 2:
        assert scan["buckets"] == {"256x256": scan["usable"]} and scan["usable"] >= 8
    else:
        assert scan["usable"] == 24 and scan["downsampled"] >= 1


def test_demo_data_is_what_the_generator_makes(tmp_path):
    subprocess.run([sys.executable, str(REPO / "examples/make_demo_data.py"), str(tmp_path)], check=True,
                   capture_output=True)
    committed = REPO / "examples/demo-data"
    names = sorted(p.name for p in committed.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir()) and len(names) == 48
    for name in names:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
    assert sum(p.stat().st_size for p in committed.iterdir()) < 300_000


def test_scan_of_a_file_name_that_is_not_utf8(tmp_path, preset_file):
    """A name the file system holds as raw bytes prints (escaped) and captions as text, never a crash."""
    name = os.fsdecode(b"caf\xe9_cat.png")
    write_image(tmp_path / "imgs" / name, 64, 64)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8",
           "FLOYDTUI_CACHE": str(tmp_path / "cache")}
    outs = {}
    for args in (["scan", str(preset_file), "--json"], ["scan", str(preset_file)]):
        out = subprocess.run([sys.executable, "-m", "floydtui", *args], capture_output=True, text=True, env=env,
                             errors="replace")
        assert out.returncode == 0 and "internal error" not in out.stderr, out.stderr
        outs[args[-1]] = out.stdout
    records = [json.loads(line) for line in outs["--json"].splitlines()]
    (record,) = [r for r in records if r["path"].endswith("_cat.png")]
    assert record["path"] == str(tmp_path / "imgs" / name) and record["caption"] == "caf\ufffd cat"
