"""What the UNet is fed in training: stage I's noisy image, stage II's noisy image plus its condition.

Stage II is trained the way IFSuperResolutionPipeline uses it (`stage2_conditioning =
"pipeline"`): the 256px image's 64px version, made by downsampling, is upscaled back exactly
as the pipeline upscales its input (bilinear, align_corners=True), noised by the model's
image_noising_scheduler at a random noise level, and concatenated after the noisy target;
`class_labels` is that noise level. `"timesteps"` reproduces the public reference trainers
instead: the noisy image concatenated with itself and `class_labels = timesteps`, an input
the pipeline never gives the UNet.

Random draws come from the step's generator in the pipeline's own order (the noise of the
sample, then the noise of the upscaled image), so for the same generator state the trainer
builds the tensors the pipeline would.

Timesteps are uniform, or drawn from SimpleTuner's timestep-bias weights (`timestep_bias_*`)
when the preset sets a strategy: each sample's timestep independently from the whole weighted
schedule, as SimpleTuner does with `disable_segmented_timestep_sampling`. Stage II's noise
level is always uniform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from floydtui.errors import FloydError

LOW_RES_FACTOR = 4  # stage II: 64 -> 256


@dataclass
class StageInputs:
    """One micro-batch as the UNet sees it, and what its first three channels should predict."""

    sample: torch.Tensor  # the UNet's input
    timesteps: torch.Tensor
    target: torch.Tensor  # the noise (epsilon)
    class_labels: torch.Tensor | None = None


def timestep_bias_weights(training: dict[str, Any], num_train_timesteps: int) -> torch.Tensor | None:
    """The probability of each timestep under the preset's timestep bias; None for "none" (uniform).

    SimpleTuner 4.10.1's generate_timestep_weights, op for op: "later" multiplies the last
    `portion` of the indices (the highest timesteps, the most noise), "earlier" the first,
    "range" [begin, end); then the weights are normalised.
    """
    strategy = training["timestep_bias_strategy"]
    if strategy == "none":
        return None
    begin, end = training["timestep_bias_begin"], training["timestep_bias_end"]
    if strategy == "range" and end > num_train_timesteps:  # the preset checks IF's 1000; a local model may differ
        raise FloydError.one(f"timestep_bias_end = {end} is past this model's schedule of {num_train_timesteps} "
                             "timesteps", key="timestep_bias_end",
                             hint=f"set timestep_bias_end to at most {num_train_timesteps}")
    weights = torch.ones(num_train_timesteps)
    count = int(training["timestep_bias_portion"] * num_train_timesteps)
    # SimpleTuner's slices, including its quirk: "later" with a portion under one timestep biases all (uniform)
    biased = {"later": slice(-count, None), "earlier": slice(0, count), "range": slice(begin, end)}[strategy]
    weights[biased] *= training["timestep_bias_multiplier"]
    weights /= weights.sum()
    return weights


def draw_timesteps(batch: int, num_train_timesteps: int, gen: torch.Generator,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """A batch of training timesteps: uniform, or independently from `weights` (a timestep bias)."""
    if weights is None:
        return torch.randint(0, num_train_timesteps, (batch,), generator=gen)
    return torch.multinomial(weights, batch, replacement=True, generator=gen)


def stage1_inputs(x0: torch.Tensor, noise_scheduler, gen: torch.Generator,
                  timestep_weights: torch.Tensor | None = None) -> StageInputs:
    """Stage I: the clean 64px image noised at a random timestep of the model's own schedule."""
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    timesteps = draw_timesteps(x0.shape[0], noise_scheduler.config.num_train_timesteps, gen, timestep_weights)
    timesteps = timesteps.to(x0.device)
    return StageInputs(noise_scheduler.add_noise(x0, noise, timesteps), timesteps, noise)


def low_res(x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The stage II input of an image batch in [-1, 1]: downsampled to `size` (h, w), default a quarter.

    Bicubic with antialiasing, the filter of Pillow's BICUBIC reduce that people make stage
    II inputs with (and of floydtui's own 25% steps); clamped, as bicubic overshoots.
    """
    h, w = size or (max(1, round(x.shape[-2] / LOW_RES_FACTOR)), max(1, round(x.shape[-1] / LOW_RES_FACTOR)))
    return F.interpolate(x.float(), (h, w), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def upscale_like_pipeline(low: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The 64px image at the output size (h, w), as IFSuperResolutionPipeline upscales it."""
    return F.interpolate(low, size, mode="bilinear", align_corners=True)


class Stage2Inputs:
    """Stage II's builder: `(x0, noise_scheduler, gen) -> StageInputs` for x0 at the output size."""

    def __init__(self, image_noising_scheduler, conditioning: str = "pipeline",
                 timestep_weights: torch.Tensor | None = None) -> None:
        self.image_noising_scheduler = image_noising_scheduler
        self.conditioning = conditioning
        self.timestep_weights = timestep_weights  # the diffusion timestep's bias; the noise level stays uniform

    def __call__(self, x0: torch.Tensor, noise_scheduler, gen: torch.Generator) -> StageInputs:
        batch, device = x0.shape[0], x0.device
        noise = torch.randn(x0.shape, generator=gen).to(device)  # the pipeline's first draw (its starting noise)
        if self.conditioning == "timesteps":
            timesteps = draw_timesteps(batch, noise_scheduler.config.num_train_timesteps, gen, self.timestep_weights)
            timesteps = timesteps.to(device)
            noisy = noise_scheduler.add_noise(x0, noise, timesteps)
            return StageInputs(torch.cat([noisy, noisy], dim=1), timesteps, noise, class_labels=timesteps)
        image_noise = torch.randn(x0.shape, generator=gen).to(device)  # its second (the upscaled image's noise)
        timesteps = draw_timesteps(batch, noise_scheduler.config.num_train_timesteps, gen, self.timestep_weights)
        # Any level the pipeline accepts ([0, num_train_timesteps)), uniformly: users pick it at inference.
        levels = torch.randint(0, self.image_noising_scheduler.config.num_train_timesteps, (batch,), generator=gen)
        timesteps, levels = timesteps.to(device), levels.to(device)
        upscaled = upscale_like_pipeline(low_res(x0), tuple(x0.shape[-2:]))
        condition = self.image_noising_scheduler.add_noise(upscaled, image_noise, timesteps=levels)
        noisy = noise_scheduler.add_noise(x0, noise, timesteps)
        return StageInputs(torch.cat([noisy, condition], dim=1), timesteps, noise, class_labels=levels)
