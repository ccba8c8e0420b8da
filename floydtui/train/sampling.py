"""One way to sample DeepFloyd IF: validation, the load check and `floydtui generate` all come here.

The path a prompt takes is the one diffusers' IF pipelines give it, step for step:

1. `preprocess`: IFPipeline's own `_text_preprocessing` (lower case and strip, or with
   `clean_caption` its caption cleaner, twice); diffusers' function is called, never copied.
2. `encode_prompts`: T5 as `IFPipeline.encode_prompt` runs it (77 tokens, attention mask,
   every padded row kept). The text-embed cache stores exactly this; `encode_with_t5` runs it
   live for prompts no cache holds.
3. `sample_stage1`: IFPipeline (DDPM with fixed_small variance) from prompt embeds, a CPU
   generator seeded per image, one image per call so an image never depends on its batch.
4. `upscale`: IFSuperResolutionPipeline on a [-1, 1] image, with `STAGE2_GUIDANCE` and
   `STAGE2_NOISE_LEVEL` unless told otherwise.
5. `to_pil`: the pipelines' own "pil" conversion of their [-1, 1] output.

`slug` names files, and `load_lora` loads a LoRA (+ BitFit biases) and counts the tensors that
landed in the UNet. Everything takes pipelines and tensors, not presets, so a new caller
(a sampler for another scheduler, a comparison grid) reuses it as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floydtui.config.flavours import GUIDANCE, TEXT_MAX_LENGTH
from floydtui.errors import FloydError

PIPELINE_STEPS = 50  # IFPipeline's and IFSuperResolutionPipeline's default num_inference_steps
STAGE2_GUIDANCE = GUIDANCE[2]  # IFSuperResolutionPipeline's own default guidance, as in the IF model card
STAGE2_NOISE_LEVEL = 250  # IFSuperResolutionPipeline's default noise_level, what users upscale with
UPSCALE = 4  # IF stage II: 64 -> 256
SLUG_MAX = 60


# ---- 1. the prompt's text --------------------------------------------------------------

def caption_cleaner_missing() -> list[str]:
    """The packages IF's caption cleaner needs that are not installed (diffusers would skip it silently)."""
    from floydtui.lazyimports import ready

    ready()
    from diffusers.utils import is_bs4_available, is_ftfy_available

    return [name for name, ok in (("beautifulsoup4", is_bs4_available()), ("ftfy", is_ftfy_available())) if not ok]


def preprocess(prompts: list[str], clean_caption: bool) -> list[str]:
    """The text T5 sees for each prompt: diffusers' IFPipeline._text_preprocessing, the pipeline's own code.

    Raises FloydError when clean_caption is asked for and its packages are missing, where
    diffusers would log a line and quietly encode the uncleaned text.
    """
    from floydtui.lazyimports import ready

    ready()
    from diffusers import IFPipeline

    missing = caption_cleaner_missing() if clean_caption else []
    if missing:
        raise FloydError.one(f"clean_caption = true needs {' and '.join(missing)}, which are not installed",
                             key="clean_caption", hint=f"pip install {' '.join(missing)} (floydtui depends on "
                                                       "them), or set clean_caption = false")
    # The method reads only class attributes (its regexes), so an instance without weights runs it as is.
    bare = IFPipeline.__new__(IFPipeline)
    return IFPipeline._text_preprocessing(bare, list(prompts), clean_caption=clean_caption)


def preprocessing_name(clean_caption: bool) -> str:
    """A short name of the preprocessing, part of every embed-cache key (a changed setting never reuses entries)."""
    from diffusers import __version__ as diffusers_version

    # the cleaner is diffusers' code: another diffusers may clean differently, so its version is in the name
    return f"clean_caption/diffusers-{diffusers_version}" if clean_caption else "lower_strip"


def token_counts(tokenizer, prompts: list[str], clean_caption: bool) -> list[int]:
    """T5 tokens of each prompt after preprocessing, end-of-text token included, before truncation at 77."""
    texts = preprocess(prompts, clean_caption)
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=False).input_ids]


# ---- 2. T5 ---------------------------------------------------------------------------------

def encode_prompts(tokenizer, encoder, prompts: list[str], device, clean_caption: bool):
    """T5 embeds of prompts as IFPipeline.encode_prompt makes them: ([B, 77, D], token counts kept)."""
    import torch

    inputs = tokenizer(preprocess(prompts, clean_caption), padding="max_length", max_length=TEXT_MAX_LENGTH,
                       truncation=True, add_special_tokens=True, return_tensors="pt")
    mask = inputs.attention_mask.to(device)
    with torch.no_grad():
        out = encoder(inputs.input_ids.to(device), attention_mask=mask)[0]
    return out, mask.sum(dim=1).tolist()


def encode_with_t5(text_dir: Path, prompts: list[str], *, clean_caption: bool, device, dtype,
                   variant: str | None = None) -> dict[str, Any]:
    """[77, D] embeds of each prompt from the model's T5, one prompt per call; T5 is freed after.

    One prompt per call, as the embed cache's entries are compared with: an embed never
    depends on the other prompts of a batch.
    """
    from floydtui.train.models import load_text_encoder

    tokenizer, encoder = load_text_encoder(text_dir, dtype, variant)
    encoder.to(device)
    embeds = {}
    for prompt in dict.fromkeys(prompts):
        embeds[prompt] = encode_prompts(tokenizer, encoder, [prompt], device, clean_caption)[0][0]
    del encoder
    return embeds


# ---- 3-5. the pipelines ---------------------------------------------------------------------

def _generator(seed: int):
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)


def sample_stage1(pipe, embeds, negative, *, width: int, height: int, steps: int, guidance: float, seed: int):
    """One stage I image, [1, 3, H, W] in [-1, 1], from [77, D] prompt and negative embeds."""
    import torch

    dtype = pipe.unet.dtype
    with torch.no_grad():
        out = pipe(prompt_embeds=embeds[None].to(pipe.device, dtype),
                   negative_prompt_embeds=negative[None].to(pipe.device, dtype), height=height, width=width,
                   num_inference_steps=steps, guidance_scale=guidance, generator=_generator(seed), output_type="pt")
    # output_type="pt" skips IF's post-processing: the samples are still in [-1, 1]
    return out.images.float().cpu()


def upscale(pipe, image, embeds, negative, *, steps: int, seed: int, guidance: float = STAGE2_GUIDANCE,
            noise_level: int = STAGE2_NOISE_LEVEL):
    """Stage II: a [1, 3, h, w] image in [-1, 1] to [1, 3, 4h, 4w] in [-1, 1]."""
    import torch

    dtype = pipe.unet.dtype
    height, width = image.shape[-2] * UPSCALE, image.shape[-1] * UPSCALE
    with torch.no_grad():
        out = pipe(image=image.to(pipe.device, dtype), prompt_embeds=embeds[None].to(pipe.device, dtype),
                   negative_prompt_embeds=negative[None].to(pipe.device, dtype), height=height, width=width,
                   num_inference_steps=steps, guidance_scale=guidance, noise_level=noise_level,
                   generator=_generator(seed), output_type="pt")
    return out.images.float().cpu()


def to_pil(image):
    """A [1, 3, H, W] tensor in [-1, 1] to a PIL image, as the pipelines' "pil" output converts it."""
    from PIL import Image

    array = (image[0].float().cpu() / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy()
    return Image.fromarray((array * 255).round().astype("uint8"))


def from_pil(image):
    """A PIL image (or a PNG's path) to [1, 3, H, W] in [-1, 1], the inverse of `to_pil` on its pixels."""
    import numpy as np
    import torch
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.open(image)
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1.0


def quantize(image):
    """A [-1, 1] image on the 8-bit grid, as a PNG round trip leaves it (what stage II is given from a file)."""
    return ((image + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1.0


# ---- file names --------------------------------------------------------------------------------

def slug(text: str) -> str:
    """A file-name piece from a prompt: lower case words joined by '-', at most 60 characters."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(s) > SLUG_MAX:
        s = s[:SLUG_MAX].rsplit("-", 1)[0]
    return s or "empty"


# ---- LoRA ----------------------------------------------------------------------------------

@dataclass
class LoadedLora:
    """What load_lora put into a UNet: adapter tensors that landed, tensors the file holds, modules adapted,
    BitFit biases."""

    landed: int
    saved: int
    modules: int
    biases: int

    @property
    def complete(self) -> bool:
        return self.landed >= self.saved


def load_lora(pipe, lora: str | Path) -> LoadedLora:
    """Load a LoRA (a folder holding pytorch_lora_weights.safetensors, or the file) into a pipeline.

    diffusers' `load_lora_weights` does the loading. diffusers 0.42 decides a file's key format
    from its first key alone, and files that mix formats on IF (add_k_proj.lora_A beside
    to_q.lora.down, as convert_state_dict_to_diffusers writes them) lose their to_q/to_k/to_v
    adapters silently: keys are normalised to peft's names first. BitFit biases saved beside
    the file are applied. The tensors that landed are counted against the file's, so a short
    count (`complete` False) is the caller's to report.
    """
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    from floydtui.train.lora import BITFIT_FILE, LORA_FILE, apply_bitfit

    path = Path(lora)
    if path.is_dir():
        if not (path / LORA_FILE).is_file():
            raise FloydError.one(f"{path} holds no {LORA_FILE}",
                                 hint="pass a finished run directory, a checkpoint folder or the .safetensors file")
        path = path / LORA_FILE
    elif not path.is_file():
        raise FloydError.one(f"no such LoRA: {path}", hint="pass a run directory or a .safetensors file")
    raw = load_file(str(path))
    state = convert_unet_state_dict_to_peft(raw)
    if set(state) == set(raw):
        # already peft keys (floydtui's files): load the file itself, so its header's adapter config
        # (lora_alpha, DoRA) is used rather than one guessed from the shapes
        pipe.load_lora_weights(str(path.parent), weight_name=path.name)
    else:
        pipe.load_lora_weights(state)
    landed = sum(len(get_peft_model_state_dict(pipe.unet, adapter_name=name))
                 for name in getattr(pipe.unet, "peft_config", {}))
    saved = sum(1 for k in raw if k.startswith("unet."))
    modules = sum(1 for _, m in pipe.unet.named_modules() if getattr(m, "lora_A", None))
    biases = apply_bitfit(pipe.unet, path.parent / BITFIT_FILE) if (path.parent / BITFIT_FILE).is_file() else 0
    return LoadedLora(landed=landed, saved=saved, modules=modules, biases=biases)
