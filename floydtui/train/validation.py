"""Validation images during training, and the load check at the end.

Validation runs the pipeline the LoRA will be used in (IFPipeline, or for stage II
IFSuperResolutionPipeline; DDPM with variance_type="fixed_small") on the UNet being
trained, with prompt embeds from the text-embed cache, so T5 is never loaded again. Stage
II upscales eval images taken from the datasets: each is cut to the validation size's
aspect, downsampled to a quarter of it, upscaled, and saved as input | output | original.
The load check loads the saved LoRA into a fresh pipeline with diffusers' own
`load_lora_weights` and compares with the base model for the same seed: equal images mean
the file has no effect.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from floydtui.fsutil import atomic_path

NO_EFFECT_ATOL = 1e-6  # images closer than this to the base model's count as "no effect"
STAGE2_NOISE_LEVEL = 250  # IFSuperResolutionPipeline's default noise_level, what users upscale with
PANELS = ("input", "output", "original")  # a stage II validation PNG, left to right


def image_name(prompt: str, width: int, height: int, index: int) -> str:
    """A file name from a prompt and size: `00-a-red-circle-64x64.png`."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "empty"
    return f"{index:02d}-{slug}-{width}x{height}.png"


def generate(pipe, embeds, negative, *, width: int, height: int, steps: int, guidance: float, seed: int,
             image=None):
    """One image as a float tensor [3, H, W] in [0, 1], from cached embeds, a fixed seed.

    With `image` (a [1, 3, h, w] tensor in [-1, 1]) the pipeline is stage II's and upscales it.
    """
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    dtype = pipe.unet.dtype
    extra = {} if image is None else {"image": image.to(pipe.device, dtype), "noise_level": STAGE2_NOISE_LEVEL}
    out = pipe(prompt_embeds=embeds[None].to(pipe.device, dtype), negative_prompt_embeds=negative[None].to(
        pipe.device, dtype), height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
        generator=generator, output_type="pt", **extra)
    # output_type="pt" skips IF's post-processing: the samples are still in [-1, 1]
    return (out.images[0].float().cpu() / 2 + 0.5).clamp(0, 1)


def eval_views(pixels, width: int, height: int):
    """(64px input, original) of an eval image for one output size, both [1, 3, h, w] in [-1, 1].

    The image is center-cropped to the size's aspect; the input is that crop downsampled to
    a quarter of the size (the trainer's filter), the original that crop resized to the size.
    """
    import torch
    import torch.nn.functional as F

    from floydtui.train.inputs import LOW_RES_FACTOR, low_res

    x = torch.tensor(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # a copy: cached pixels are read-only
    h, w = x.shape[-2:]
    if w * height > h * width:  # wider than the output: trim the sides
        cw = max(1, round(h * width / height))
        x = x[..., :, (w - cw) // 2:(w - cw) // 2 + cw]
    else:
        ch = max(1, round(w * height / width))
        x = x[..., (h - ch) // 2:(h - ch) // 2 + ch, :]
    small = low_res(x, (max(1, round(height / LOW_RES_FACTOR)), max(1, round(width / LOW_RES_FACTOR))))
    original = F.interpolate(x, (height, width), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
    return small, original


def side_by_side(small, output, original):
    """input | output | original as one [3, H, 3W] tensor in [0, 1]; the input enlarged with nearest pixels."""
    import torch
    import torch.nn.functional as F

    height, width = output.shape[-2:]
    shown = F.interpolate(small, (height, width), mode="nearest")[0]
    return torch.cat([(shown / 2 + 0.5).clamp(0, 1), output, (original[0] / 2 + 0.5).clamp(0, 1)], dim=2)


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


def run_stage2_validation(pipe, cache, *, eval_images: list, negative_prompt: str, sizes: list[tuple[int, int]],
                          validation: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Every eval image upscaled at every output size into `folder` as input | output | original PNGs.

    Each image is prompted with its own training caption; returns the `validation` event's image list.
    """
    import torch

    images = []
    negative = cache.get(negative_prompt)
    with torch.no_grad():
        for i, ev in enumerate(eval_images):
            for width, height in sizes:
                small, original = eval_views(ev.pixels, width, height)
                output = generate(pipe, cache.get(ev.caption), negative, width=width, height=height,
                                  steps=validation["validation_num_inference_steps"],
                                  guidance=validation["validation_guidance"], seed=validation["validation_seed"],
                                  image=small)
                path = save_png(side_by_side(small, output, original),
                                folder / image_name(Path(ev.path).stem, width, height, i))
                images.append({"path": str(path), "prompt": ev.caption, "width": width, "height": height,
                               "source": ev.path, "panels": list(PANELS)})
    return images


def load_check(model_dir: Path, stage: int, lora_dir: Path, cache, *, prompt: str, negative_prompt: str,
               size: tuple[int, int], validation: dict[str, Any], device="cpu", dtype=None,
               eval_image=None) -> tuple[float, int, int]:
    """Load the saved LoRA into a fresh pipeline the way users will, and measure its effect.

    Stage II upscales `eval_image` (an EvalImage; `prompt` is then its caption). Returns
    (largest pixel difference from the base model for the same seed, adapter tensors that
    landed in the UNet, adapter tensors in the file): a difference of 0 or a short count is
    the "my LoRA has no effect" trap.
    """
    import torch
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    from floydtui.train.lora import LORA_FILE
    from floydtui.train.models import load_lora, load_pipeline

    pipe = load_pipeline(model_dir, stage, dtype=dtype).to(device)
    image = None if stage == 1 else eval_views(eval_image.pixels, *size)[0]
    kwargs = dict(width=size[0], height=size[1], steps=min(4, validation["validation_num_inference_steps"]),
                  guidance=validation["validation_guidance"], seed=validation["validation_seed"], image=image)
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
