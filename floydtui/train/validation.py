"""Validation images during training, and the load check at the end.

Validation runs the pipeline the LoRA will be used in (IFPipeline, DDPM with
variance_type="fixed_small") on the UNet being trained, with prompt embeds from the
text-embed cache, so T5 is never loaded again. The load check loads the saved LoRA into a
fresh pipeline with diffusers' own `load_lora_weights` and compares with the base model
for the same seed: equal images mean the file has no effect.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from floydtui.fsutil import atomic_path

NO_EFFECT_ATOL = 1e-6  # images closer than this to the base model's count as "no effect"


def image_name(prompt: str, width: int, height: int, index: int) -> str:
    """A file name from a prompt and size: `00-a-red-circle-64x64.png`."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "empty"
    return f"{index:02d}-{slug}-{width}x{height}.png"


def generate(pipe, embeds, negative, *, width: int, height: int, steps: int, guidance: float, seed: int):
    """One image as a float tensor [3, H, W] in [0, 1], from cached embeds, a fixed seed."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    dtype = pipe.unet.dtype
    out = pipe(prompt_embeds=embeds[None].to(pipe.device, dtype), negative_prompt_embeds=negative[None].to(
        pipe.device, dtype), height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
        generator=generator, output_type="pt")
    # output_type="pt" skips IF's post-processing: the samples are still in [-1, 1]
    return (out.images[0].float().cpu() / 2 + 0.5).clamp(0, 1)


def save_png(image, path: Path) -> Path:
    """Write a [3, H, W] [0, 1] tensor as a PNG, atomically."""
    from PIL import Image

    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path


def run_validation(pipe, cache, *, prompts: list[str], negative_prompt: str, sizes: list[tuple[int, int]],
                   validation: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Every prompt at every size into `folder`; returns the `validation` event's image list."""
    import torch

    images = []
    negative = cache.get(negative_prompt)
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            for width, height in sizes:
                image = generate(pipe, cache.get(prompt), negative, width=width, height=height,
                                 steps=validation["validation_num_inference_steps"],
                                 guidance=validation["validation_guidance"], seed=validation["validation_seed"])
                path = save_png(image, folder / image_name(prompt, width, height, i))
                images.append({"path": str(path), "prompt": prompt, "width": width, "height": height})
    return images


def load_check(model_dir: Path, stage: int, lora_dir: Path, cache, *, prompt: str, negative_prompt: str,
               size: tuple[int, int], validation: dict[str, Any], device="cpu", dtype=None) -> tuple[float, int, int]:
    """Load the saved LoRA into a fresh pipeline the way users will, and measure its effect.

    Returns (largest pixel difference from the base model for the same seed, adapter
    tensors that landed in the UNet, adapter tensors in the file): a difference of 0 or a
    short count is the "my LoRA has no effect" trap.
    """
    import torch
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    from floydtui.train.lora import LORA_FILE
    from floydtui.train.models import load_lora, load_pipeline

    pipe = load_pipeline(model_dir, stage, dtype=dtype).to(device)
    kwargs = dict(width=size[0], height=size[1], steps=min(4, validation["validation_num_inference_steps"]),
                  guidance=validation["validation_guidance"], seed=validation["validation_seed"])
    embeds, negative = cache.get(prompt), cache.get(negative_prompt)
    with torch.no_grad():
        base = generate(pipe, embeds, negative, **kwargs)
        load_lora(pipe, lora_dir)
        tuned = generate(pipe, embeds, negative, **kwargs)
    adapters = getattr(pipe.unet, "peft_config", {})
    landed = sum(len(get_peft_model_state_dict(pipe.unet, adapter_name=name)) for name in adapters)
    with safe_open(str(lora_dir / LORA_FILE), framework="pt") as f:
        saved = len(list(f.keys()))
    return float((base - tuned).abs().max()), landed, saved
