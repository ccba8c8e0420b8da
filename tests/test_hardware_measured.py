"""The estimator against what was measured: the committed benchmark results and the packaged configs."""

import json
from pathlib import Path

import pytest

from floydtui.config.flavours import FLAVOURS
from floydtui.hardware import archdata
from floydtui.hardware.calibration import (
    MEASURED_TOLERANCE,
    fit_activation_constants,
    fit_bf16_factor,
    measured_rows,
)
from floydtui.hardware.estimate import (
    ACTIVATION_BYTES_PER_ELEMENT,
    BF16_ACTIVATION_FACTOR,
    DEFAULT_TARGETS,
    Settings,
    allocated_bytes,
    estimate_settings,
    lora_params,
)

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
GPU_ROWS = measured_rows(RESULTS / "memory_gpu.json")  # torch.cuda.max_memory_allocated (bench_gpu.py)
CPU_ROWS = measured_rows(RESULTS / "memory.json")  # the CPU's profiler (bench_memory.py)
FIT = [m for m in GPU_ROWS if m.row["set"] == "fit"]
GPU_TOLERANCE = 0.10  # each GPU step, fitted or held out


def test_the_gpu_benchmark_measured_every_flavour_both_ways_and_held_settings_out():
    assert {m.row["flavour"] for m in FIT} == set(FLAVOURS)
    assert {m.row["gradient_checkpointing"] for m in FIT} == {True, False}
    assert {m.row["precision"] for m in FIT} == {"fp32", "bf16"}
    held = [m for m in GPU_ROWS if m.row["set"] != "fit"]
    fitted = {(m.row["flavour"], m.row["precision"], m.row["lora_rank"], m.row["batch"], m.row["resolution"],
               m.row["gradient_checkpointing"]) for m in FIT}
    assert len(held) >= 8
    assert all((m.row["flavour"], m.row["precision"], m.row["lora_rank"], m.row["batch"], m.row["resolution"],
                m.row["gradient_checkpointing"]) not in fitted for m in held)


def assert_counted_parts_match(m):
    """The categories the benchmark counts from the live tensors match the estimator's counts."""
    parts = allocated_bytes(m.settings)
    assert parts["params"] == pytest.approx(m.row["params_bytes"], rel=0.001)
    assert parts["gradients"] == m.row["gradient_bytes"]
    assert parts["optimizer"] == m.row["optimizer_bytes"]


@pytest.mark.parametrize("m", GPU_ROWS, ids=lambda m: f"{m.row['set']}: {m.label}")
def test_estimate_within_10_percent_of_each_gpu_step(m):
    est, peak = m.estimated_bytes(), m.row["peak_bytes"]
    assert abs(est - peak) <= GPU_TOLERANCE * peak, \
        f"{m.label}: measured {peak / 2**30:.2f} GiB, estimated {est / 2**30:.2f} GiB ({m.error():+.1%})"
    assert_counted_parts_match(m)


@pytest.mark.parametrize("m", CPU_ROWS, ids=lambda m: m.label)
def test_the_cpu_measurement_counts_the_same_tensors_and_fp32_steps_stay_within_20_percent(m):
    assert_counted_parts_match(m)
    if m.row["precision"] == "fp32":  # CPU autocast keeps less than CUDA's: its bf16 rows are not the judge
        assert abs(m.error()) <= MEASURED_TOLERANCE, f"{m.label}: {m.error():+.1%}"


def test_the_constants_are_the_fit_of_the_committed_gpu_results():
    fitted = fit_activation_constants(FIT)
    assert set(fitted) == set(ACTIVATION_BYTES_PER_ELEMENT)
    for key, value in fitted.items():
        assert ACTIVATION_BYTES_PER_ELEMENT[key] == pytest.approx(value, rel=0.02), key
    factors = fit_bf16_factor(FIT)
    assert set(factors) == {False, True}
    for ckpt, value in factors.items():
        assert BF16_ACTIVATION_FACTOR[ckpt] == pytest.approx(value, rel=0.02), ckpt


def test_t5_is_counted_in_bf16_on_a_gpu_whatever_mixed_precision_says():
    # measured: mixed_precision = "no" on an H200, the embed phase held 10270 MiB (bf16 T5), not 20 GiB
    fp32 = estimate_settings(Settings(flavour="i-medium-400m", weight_dtype="fp32")).phases["embed_cache"]
    bf16 = estimate_settings(Settings(flavour="i-medium-400m", weight_dtype="bf16")).phases["embed_cache"]
    assert fp32 == bf16
    assert 9 * 1024 < fp32 < 11 * 1024


def test_gradient_checkpointing_saves_what_was_measured_not_seventy_percent():
    off = allocated_bytes(Settings(flavour="i-medium-400m", batch_size=4, weight_dtype="fp32"))
    on = allocated_bytes(Settings(flavour="i-medium-400m", batch_size=4, weight_dtype="fp32",
                                  gradient_checkpointing=True))
    saving = 1 - sum(on.values()) / sum(off.values())
    assert 0.1 < saving < 0.5


def test_lora_size_is_what_peft_adds():
    # the saved LoRA of i-medium-400m at rank 32 (issue 20): 5,197,824 parameters
    assert lora_params("i-medium-400m", 32) == 5_197_824
    for flavour, folder in archdata.FOLDERS.items():
        assert lora_params(flavour, 32) == archdata.param_counts()[folder]["lora_r32_params"], flavour
    assert lora_params("i-medium-400m", 8) * 4 == lora_params("i-medium-400m", 32)
    assert lora_params("i-medium-400m", 32, ("to_q",)) < lora_params("i-medium-400m", 32, DEFAULT_TARGETS)


def test_parameter_counts_come_from_the_packaged_configs():
    for name, flavour in FLAVOURS.items():
        counted = archdata.arch(name)["unet_params"]
        assert counted == archdata.unet_params(name)
        assert abs(counted - flavour.unet_params) < 0.1 * flavour.unet_params  # the model zoo's label
        config = archdata.unet_config(name)
        assert config["in_channels"] == (3 if flavour.stage == 1 else 6)
    # IF-II-L's layers_per_block is a list, and the feature count follows it
    assert archdata.unet_config("ii-large-1.2b")["layers_per_block"] == [2, 2, 3, 5, 5]


def test_the_package_ships_the_configs_with_their_provenance():
    root = archdata.CONFIGS
    assert "PINNED" in (root / "SOURCES.md").read_text() and "NOT PINNED" in (root / "SOURCES.md").read_text()
    for folder in archdata.FOLDERS.values():
        for part in ("unet/config.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                     "model_index.json"):
            json.loads((root / folder / part).read_text())


def test_lora_size_matches_peft_on_the_builtin_model_with_conv_targets(repo):
    """peft itself is the judge: the demo's targets include the ResNet convolutions."""
    import torch

    from floydtui.config.preset import load_preset
    from floydtui.train.lora import setup_trainable
    from floydtui.train.models import load_unet
    from floydtui.train.tiny import ensure_builtin

    preset = load_preset(repo / "presets" / "demo.toml")
    t = dict(preset.training) | {"lora_alpha": preset.training["lora_rank"]}
    unet = load_unet(ensure_builtin("builtin:tiny-if-i"), torch.float32)
    unet.requires_grad_(False)
    trained = sum(p.numel() for p in setup_trainable(unet, t))
    assert trained == lora_params("builtin:tiny-if-i", t["lora_rank"], tuple(t["lora_target_modules"]))


def test_lora_size_matches_peft_for_dotted_and_overlapping_targets():
    """A dotted target counts the modules peft adapts for it, and a module two targets match counts once."""
    import torch

    from floydtui.config.schema import TRAINING_FIELDS
    from floydtui.hardware.estimate import unmatched_targets
    from floydtui.train.lora import setup_trainable
    from floydtui.train.models import load_unet
    from floydtui.train.tiny import ensure_builtin

    targets = ("add_embedding.pool.q_proj", "to_k", "mid_block.attentions.0.to_k", "down_blocks.1.resnets.0.conv1")
    t = {f.key: f.default for f in TRAINING_FIELDS} | {"lora_rank": 4, "lora_alpha": 4, "lora_target_modules": targets}
    unet = load_unet(ensure_builtin("builtin:tiny-if-i"), torch.float32)
    unet.requires_grad_(False)
    trained = sum(p.numel() for p in setup_trainable(unet, t))
    assert trained == lora_params("builtin:tiny-if-i", 4, targets)
    # each dotted target adds its module: none is counted as nothing, the overlapping one adds nothing
    alone = lora_params("builtin:tiny-if-i", 4, ("to_k",))
    assert lora_params("builtin:tiny-if-i", 4, targets[:1]) > 0
    assert lora_params("builtin:tiny-if-i", 4, ("to_k", "mid_block.attentions.0.to_k")) == alone
    assert unmatched_targets("builtin:tiny-if-i", (*targets, "pool.no_such_proj")) == ["pool.no_such_proj"]
