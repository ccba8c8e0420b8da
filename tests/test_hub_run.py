"""End to end: a preset naming a DeepFloyd hub id trains offline through the normal hub code path,
and no file the run writes (nor an export of its preset) holds the hub token."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import WAIT_S, folder_files, lay_out

REPO = Path(__file__).resolve().parent.parent
REPO_ID = "DeepFloyd/IF-I-M-v1.0"
MARKER = "hf_floydtuiRunMarkerToken0123456789abcdef"


def _trainer_ready() -> bool:
    try:
        return (importlib.util.find_spec("floydtui.train.trainer") is not None
                and importlib.util.find_spec("floydtui.commands.run") is not None
                and hasattr(importlib.import_module("floydtui.commands.run"), "run"))
    except ImportError:
        return False


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _trainer_ready(),
                                                   reason="needs the trainer: floydtui.train.trainer and `floydtui run`")]


def test_hub_id_trains_offline_from_the_cache_and_no_token_is_written(tmp_path):
    from floydtui.train.tiny import ensure_builtin

    cache = tmp_path / "hf" / "hub"
    storage = lay_out(cache, REPO_ID, folder_files(ensure_builtin("builtin:tiny-if-i")))
    preset = tmp_path / "preset.toml"
    preset.write_text(f"""
[model]
model_flavour = "i-medium-400m"
pretrained_model_name_or_path = "{REPO_ID}"

[training]
lora_rank = 4
learning_rate = 1e-3
lr_end = 1e-4
train_batch_size = 4
max_train_steps = 2
checkpointing_steps = 2
mixed_precision = "no"
optimizer = "adamw"

[validation]
validation_resolution = "64"
validation_steps = 0
validation_num_inference_steps = 2

[output]
output_dir = "{tmp_path / 'out'}"

[[datasets]]
id = "demo"
instance_data_dir = "{REPO / 'examples' / 'demo-data'}"
caption_strategy = "textfile"

[[datasets]]
id = "text-embeds"
dataset_type = "text_embeds"
default = true
cache_dir = "{tmp_path / 'embeds'}"
""")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_TOKEN": MARKER}
    run = subprocess.run([sys.executable, "-m", "floydtui", "run", str(preset), "--json"], capture_output=True,
                         text=True, env=env, timeout=WAIT_S, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    (start,) = [e for e in events if e["type"] == "run_start"]
    assert start["base_model"] == REPO_ID
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed"
    # the hub cache was read, not written: offline, everything came from the snapshot
    assert {p.name for p in (storage / "snapshots").iterdir()} == {"0123456789abcdef0123456789abcdef01234567"}

    export = subprocess.run([sys.executable, "-m", "floydtui", "export", str(preset), "-o", str(tmp_path / "export")],
                            capture_output=True, text=True, env=env, timeout=WAIT_S)
    assert export.returncode == 0, export.stderr
    written = [p for d in (tmp_path / "out", tmp_path / "export", tmp_path / "embeds") for p in d.rglob("*")
               if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in written) and any(p.name == "config.json" for p in written)
    leaks = [p for p in written if MARKER.encode() in p.read_bytes()]
    assert leaks == []
    assert MARKER not in run.stdout + run.stderr + export.stdout + export.stderr
