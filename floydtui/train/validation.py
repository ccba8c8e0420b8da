"""Validation images during training, and the load check at the end.

Validation samples with `floydtui.train.sampling`, the code `floydtui generate` uses, on the
pipeline the LoRA will be used in (IFPipeline, or for stage II IFSuperResolutionPipeline;
DDPM with variance_type="fixed_small") with the UNet being trained and prompt embeds from the
text-embed cache, so T5 is never loaded again. Stage II upscales eval images taken from the
datasets: each is cut to the validation size's aspect, downsampled to a quarter of it,
upscaled, and saved as input | output | original. The load check loads the saved LoRA into
a fresh pipeline with diffusers' own `load_lora_weights` and compares with the base model
for the same seed: equal images mean the file has no effect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from floydtui.fsutil import atomic_path
from floydtui.train import sampling

NO_EFFECT_ATOL = 1e-6  # images ([0, 1]) closer than this to the base model's count as "no effect"
PANELS = ("input", "output", "original")  # a stage II validation PNG, left to right


def image_name(prompt: str, width: int, height: int, index: int, seed: int | None = None) -> str:
    """A file name from a prompt and size: `00-a-red-circle-64x64.png`, with the seed when a run makes
    several images of each (num_validation_images): `00-a-red-circle-seed1-64x64.png`."""
    seeded = "" if seed is None else f"-seed{seed}"
    return f"{index:02d}-{sampling.slug(prompt)}{seeded}-{width}x{height}.png"


def validation_seeds(validation: dict[str, Any]) -> list[int]:
    """The seeds of each prompt's (or eval image's) validation images: validation_seed, + 1, ... (as
    `floydtui generate --seed S --num-images N` numbers them)."""
    first = validation["validation_seed"]
    return [first + i for i in range(validation.get("num_validation_images", 1))]


def eval_views(pixels, width: int, height: int):
    """(64px input, original) of an eval image for one output size, both [1, 3, h, w] in [-1, 1].

    The image is center-cropped to the size's aspect; the input is that crop downsampled to
    a quarter of the size (the trainer's filter) and put on the 8-bit grid, as an image file
    holds it, so `floydtui generate --image` can be given the very same input; the original
    is that crop resized to the size.
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
    return sampling.quantize(small.clamp(-1, 1)), original


def side_by_side(small, output, original):
    """input | output | original as one [1, 3, H, 3W] image in [-1, 1]; the input enlarged with nearest pixels."""
    import torch
    import torch.nn.functional as F

    height, width = output.shape[-2:]
    shown = F.interpolate(small, (height, width), mode="nearest")
    return torch.cat([shown, output, original], dim=3)


def save_png(image, path: Path) -> Path:
    """Write a [1, 3, H, W] image in [-1, 1] as a PNG (sampling.to_pil's pixels), atomically."""
    with atomic_path(path) as tmp:
        sampling.to_pil(image).save(tmp, format="PNG")
    return path


def run_validation(pipe, cache, *, prompts: list[str], negative_prompt: str, sizes: list[tuple[int, int]],
                   validation: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Every prompt at every size, num_validation_images seeds each, into `folder`; returns the `validation`
    event's image list."""
    images = []
    negative = cache.get(negative_prompt)
    seeds = validation_seeds(validation)
    for i, prompt in enumerate(prompts):
        for width, height in sizes:
            for seed in seeds:
                image = sampling.sample_stage1(pipe, cache.get(prompt), negative, width=width, height=height,
                                               steps=validation["validation_num_inference_steps"],
                                               guidance=validation["validation_guidance"], seed=seed)
                name = image_name(prompt, width, height, i, seed if len(seeds) > 1 else None)
                path = save_png(image, folder / name)
                images.append({"path": str(path), "prompt": prompt, "width": width, "height": height, "seed": seed})
    return images


def run_stage2_validation(pipe, cache, *, eval_images: list, negative_prompt: str, sizes: list[tuple[int, int]],
                          validation: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Every eval image upscaled at every output size (num_validation_images seeds each) into `folder` as
    input | output | original PNGs.

    Each image is prompted with its own training caption; returns the `validation` event's image list.
    """
    images = []
    negative = cache.get(negative_prompt)
    seeds = validation_seeds(validation)
    for i, ev in enumerate(eval_images):
        for width, height in sizes:
            small, original = eval_views(ev.pixels, width, height)
            for seed in seeds:
                output = sampling.upscale(pipe, small, cache.get(ev.caption), negative,
                                          steps=validation["validation_num_inference_steps"],
                                          guidance=validation["validation_guidance"], seed=seed)
                name = image_name(Path(ev.path).stem, width, height, i, seed if len(seeds) > 1 else None)
                path = save_png(side_by_side(small, output, original), folder / name)
                images.append({"path": str(path), "prompt": ev.caption, "width": width, "height": height,
                               "seed": seed, "source": ev.path, "panels": list(PANELS)})
    return images


def load_check(model_dir: Path, stage: int, lora_dir: Path, cache, *, prompt: str, negative_prompt: str,
               size: tuple[int, int], validation: dict[str, Any], device="cpu", dtype=None,
               eval_image=None) -> tuple[float, sampling.LoadedLora]:
    """Load the saved LoRA into a fresh pipeline the way users will, and measure its effect.

    Stage II upscales `eval_image` (an EvalImage; `prompt` is then its caption). Returns the
    largest pixel difference ([0, 1]) from the base model for the same seed, and what
    sampling.load_lora counted: a difference of 0 or a short count is the "my LoRA has no
    effect" trap.
    """
    from floydtui.train.models import load_pipeline

    pipe = load_pipeline(model_dir, stage, dtype=dtype).to(device)
    embeds, negative = cache.get(prompt), cache.get(negative_prompt)
    steps = min(4, validation["validation_num_inference_steps"])
    guidance, seed = validation["validation_guidance"], validation["validation_seed"]

    def sample():
        if stage == 1:
            return sampling.sample_stage1(pipe, embeds, negative, width=size[0], height=size[1], steps=steps,
                                          guidance=guidance, seed=seed)
        small = eval_views(eval_image.pixels, *size)[0]
        return sampling.upscale(pipe, small, embeds, negative, steps=steps, guidance=guidance, seed=seed)

    base = sample()
    loaded = sampling.load_lora(pipe, lora_dir)
    tuned = sample()
    return float((base - tuned).abs().max()) / 2, loaded
