"""Count, on the meta device, what the estimator needs from each architecture; writes
floydtui/hardware/arch_counts.json (package data, so doctor and check never build a model).

For each of the five flavours (from floydtui/config/if_configs/) and the built-in tiny models:
- the UNet's parameters;
- the LoRA parameters per unit of rank of every nn.Linear and nn.Conv2d, by full module name:
  peft adds r x (in + out) to a Linear it wraps (lora_A is r x in, lora_B is out x r); the
  estimator sums the modules a preset's targets match, each once, as peft matches
  `target_modules` (the name or a dotted suffix), so any target, dotted or not, is counted;
  checked against peft itself (tests/test_hardware_measured.py);
- the FLOPs of one training step per sample at the flavour's native resolution, counted by
  torch.utils.flop_counter.FlopCounterMode around floydtui's LoRA step (forward, loss,
  backward) on the meta device, with and without gradient checkpointing. FLOPs grow with
  the pixels (every conv and projection runs per pixel); the attention's quadratic part is
  small at IF's attention sizes (checked on i-medium-400m: the count at 1.5x the resolution
  over 2.25x the pixels is reported).
- T5-XXL's encoder FLOPs per 77-token prompt, counted the same way.

Run: .venv/bin/python bench/count_arch.py [--lora-only]   (minutes: FlopCounterMode's Python
per op; meta tensors hold no memory. --lora-only recounts the LoRA sizes alone, in seconds)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import cpu_name  # noqa: F401  (puts the repository on sys.path)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "floydtui" / "hardware" / "arch_counts.json"

def lora_modules(unet) -> dict[str, int]:
    """Parameters per unit of rank of every module peft can adapt, by its full name: in + out for
    a Linear (lora_A r x in, lora_B out x r), in x kernel + out for a Conv2d (lora_A a conv to r
    channels with the layer's kernel, lora_B a 1x1 conv back). The estimator sums the modules a
    preset's targets match, by peft's rule (floydtui.config.schema.matches_target)."""
    import torch

    out: dict[str, int] = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear):
            out[name] = module.in_features + module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            out[name] = module.in_channels * module.kernel_size[0] * module.kernel_size[1] + module.out_channels
    return out


def step_flops(unet_config: dict, stage: int, resolution: int, checkpointing: bool, *, text_dim: int,
               train: bool = True) -> tuple[int, dict]:
    """FLOPs of one sample's LoRA training step (or forward) through floydtui's functions, on meta."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from floydtui.config.schema import TRAINING_FIELDS
    from floydtui.train.inputs import StageInputs
    from floydtui.train.lora import setup_trainable
    from floydtui.train.trainer import diffusion_loss

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        unet.requires_grad_(False)
        training = {f.key: f.default for f in TRAINING_FIELDS}
        training["lora_alpha"] = training["lora_rank"]  # the schema default "auto" is resolved by the preset
        params = setup_trainable(unet, training)
        if checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train(train)
        channels = 3 if stage == 1 else 6
        sample = torch.randn(1, channels, resolution, resolution)
        timesteps = torch.zeros(1, dtype=torch.long)
        cond = torch.randn(1, 77, text_dim)
        labels = timesteps if stage == 2 else None
        counter = FlopCounterMode(display=False)
        with counter:
            if train:
                pred = unet(sample, timesteps, encoder_hidden_states=cond, class_labels=labels).sample
                inputs = StageInputs(sample, timesteps, torch.randn(1, 3, resolution, resolution))
                loss = diffusion_loss(pred, inputs, torch.ones(1000), 0.0)
                loss.backward()
            else:
                with torch.no_grad():
                    unet(sample, timesteps, encoder_hidden_states=cond, class_labels=labels)
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    del params
    return int(counter.get_total_flops()), by_op


def t5_flops(config: dict, tokens: int = 77) -> int:
    """Forward FLOPs of the T5 encoder for one prompt of `tokens` tokens, on meta."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        encoder = T5EncoderModel(T5Config(**{k: v for k, v in config.items() if not k.startswith("_")})).eval()
        ids = torch.zeros(1, tokens, dtype=torch.long)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            encoder(input_ids=ids)
    return int(counter.get_total_flops())


def count(unet_config: dict, stage: int, resolution: int, text_dim: int, check_pixels: bool = False) -> dict:
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
    entry = {"stage": stage, "resolution": resolution, "unet_params": sum(p.numel() for p in unet.parameters()),
             "lora_modules": lora_modules(unet)}
    train_off, ops = step_flops(unet_config, stage, resolution, False, text_dim=text_dim)
    train_on, _ = step_flops(unet_config, stage, resolution, True, text_dim=text_dim)
    entry |= {"train_flops_per_sample": train_off, "train_flops_per_sample_checkpointing": train_on,
              "counted_ops": sorted(ops)}
    if check_pixels:
        larger, _ = step_flops(unet_config, stage, resolution * 3 // 2, False, text_dim=text_dim)
        entry["train_flops_at_1_5x_resolution_over_pixels"] = round(larger / train_off / 2.25, 4)
    return entry


def lora_only() -> None:
    """Recount only the LoRA sizes into the existing arch_counts.json (seconds; no FLOPs)."""
    import torch
    from diffusers import UNet2DConditionModel

    from floydtui.fsutil import atomic_write_text
    from floydtui.hardware.archdata import unet_config

    data = json.loads(OUT.read_text())
    for table in ("flavours", "builtin"):
        for name, entry in data[table].items():
            with torch.device("meta"):
                unet = UNet2DConditionModel.from_config(entry.get("unet_config") or unet_config(name))
            entry["lora_modules"] = lora_modules(unet)
    atomic_write_text(OUT, json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")


def main() -> None:
    import sys

    import torch  # noqa: F401

    if "--lora-only" in sys.argv:
        lora_only()
        return

    from floydtui.config.flavours import BUILTIN_MODELS, FLAVOURS
    from floydtui.config.schema import TRAINING_FIELDS
    from floydtui.hardware.archdata import config_dir, unet_config
    from floydtui.train.tiny import ensure_builtin

    default_targets = next(f.default for f in TRAINING_FIELDS if f.key == "lora_target_modules")
    started = time.perf_counter()
    out: dict = {"generated_by": "bench/count_arch.py", "torch": torch.__version__,
                 "default_targets": list(default_targets), "flavours": {}, "builtin": {}}
    if "--builtin-only" in sys.argv:  # keep the (slow) flavour counts, recount the built-in models
        out |= {k: v for k, v in json.loads(OUT.read_text()).items() if k not in ("builtin", "count_s")}
    for name, flavour in FLAVOURS.items() if "--builtin-only" not in sys.argv else ():
        out["flavours"][name] = count(unet_config(name), flavour.stage, flavour.native_resolution, 4096,
                                         check_pixels=name == "i-medium-400m")
        print(name, out["flavours"][name]["unet_params"], out["flavours"][name]["train_flops_per_sample"] / 1e9,
              "GFLOP", flush=True)
    for model_id, stage in BUILTIN_MODELS.items():
        folder = ensure_builtin(model_id)
        cfg = {k: v for k, v in json.loads((folder / "unet" / "config.json").read_text()).items()
               if not k.startswith("_")}
        text_dim = json.loads((folder / "text_encoder" / "config.json").read_text())["d_model"]
        out["builtin"][model_id] = count(cfg, stage, 64 if stage == 1 else 256, text_dim) | {
            "unet_config": cfg, "text_dim": text_dim}
    t5 = json.loads((config_dir("i-xlarge-4.3b") / "text_encoder" / "config.json").read_text())
    out["t5_xxl_flops_per_prompt"] = t5_flops(t5)
    out["count_s"] = round(time.perf_counter() - started, 1)
    from floydtui.fsutil import atomic_write_text

    atomic_write_text(OUT, json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
