"""Finding and loading DeepFloyd IF models: the builtin tiny ones, local folders, hub ids.

Every kind of model id ends as a local folder laid out by `save_pretrained` (model_index.json,
unet/, scheduler/, text_encoder/, tokenizer/), and everything after that goes through the
same loaders. `floydtui generate` uses `load_pipeline` too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from floydtui.config.flavours import BUILTIN_MODELS, BUILTIN_PREFIX, builtin_label, classify_model, stage_name
from floydtui.errors import FloydError

IN_CHANNELS = {3: 1, 6: 2}  # the UNet's input channels tell the stage: II adds the upscaled image


def resolve_model_dir(model_id: str, *, stage: int, revision: str = "main", variant: str | None = None,
                      events: Any = None) -> Path:
    """The local folder of a model id, checked to be an IF model of `stage`.

    `builtin:shapes-if-*` are the package's own folders, `builtin:tiny-if-*` are built on first use;
    a local folder is used
    as it is; anything else is a hub id, fetched (or found in the hub cache) by floydtui.hub.
    Raises FloydError saying which problem it is and what to do.
    """
    kind = classify_model(model_id).kind
    if kind == "builtin":
        if model_id not in BUILTIN_MODELS:
            raise FloydError.one(f"unknown built-in model {model_id!r}", key="pretrained_model_name_or_path",
                                 hint="the built-in models are " + ", ".join(BUILTIN_MODELS))
        from floydtui.train.tiny import ensure_builtin

        folder = ensure_builtin(model_id)
    elif kind == "local":
        folder = Path(model_id).expanduser().resolve()
    else:
        from floydtui.hub import fetch_model

        folder = Path(fetch_model(model_id, stage=stage, revision=revision, variant=variant, events=events))
    check_model_dir(folder, stage, model_id)
    return folder


def check_model_dir(folder: Path, stage: int, model_id: str = "") -> None:
    """Raise FloydError unless `folder` holds a DeepFloyd IF pipeline of `stage`."""
    name = model_id or str(folder)
    where = "[model] pretrained_model_name_or_path"
    key = "pretrained_model_name_or_path"
    if not folder.is_dir():
        raise FloydError.one(f"model folder {folder} does not exist", where=where, key=key,
                             hint="check the path, or use a hub id such as DeepFloyd/IF-I-M-v1.0")
    missing = [p for p in ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json")
               if not (folder / p).is_file()]
    if missing:
        raise FloydError.one(
            f"{name} is not a DeepFloyd IF model folder: {', '.join(missing)} missing in {folder}", where=where,
            key=key, hint="point it at a folder saved with IFPipeline.save_pretrained (model_index.json, unet/, "
            "scheduler/, text_encoder/, tokenizer/), or at a hub id")
    in_channels = json.loads((folder / "unet" / "config.json").read_text()).get("in_channels")
    found = IN_CHANNELS.get(in_channels)
    if found != stage:
        what = f"a {stage_name(found)} model" if found else f"not an IF UNet (in_channels={in_channels})"
        raise FloydError.one(
            f"{name} is {what}, but the flavour trains {stage_name(stage)}", where=where, key=key,
            hint=f"use a {stage_name(stage)} model (stage I: DeepFloyd/IF-I-*, builtin:shapes-if-i, "
            "builtin:tiny-if-i; stage II: DeepFloyd/IF-II-*, builtin:shapes-if-ii, builtin:tiny-if-ii) or a flavour "
            "of the model's stage")


def model_label(model_id: str, folder: Path) -> str:
    """How a run names its base model: the hub id, the local folder, or the builtin's folder."""
    if classify_model(model_id).kind != "hub":
        return str(folder)
    return model_id


def builtin_note(model_id: str) -> str:
    """A line saying what a builtin model is ("" for real models)."""
    if model_id not in BUILTIN_MODELS:
        return ""
    if model_id.startswith(f"{BUILTIN_PREFIX}shapes-"):
        return (f"{model_id}: floydtui's built-in {builtin_label(model_id)}: real IF classes and config switches, "
                "about a million parameters pretrained by scripts/pretrain_tiny.py on one shape in one of 8 colours "
                "on a plain background (briefly: docs/builtin-models.md says what it has learned)")
    return (f"{model_id}: floydtui's built-in {builtin_label(model_id)}: real IF classes, random weights, "
            "about a million parameters; it is not a model of anything")


def weight_variant(folder: Path, variant: str | None, component: str = "unet") -> str | None:
    """The weight variant to load from `folder/component`: "fp16" where wanted and present, else None."""
    from floydtui.hub import weights_variant

    return weights_variant(folder / component, variant)


def resolve_text_encoder_dir(model_id: str, model_dir: Path, *, stage: int, revision: str = "main",
                             variant: str | None = None, events: Any = None) -> Path:
    """The folder whose text_encoder/ and tokenizer/ encode prompts for this model.

    The model's own folder where it holds T5 (stage I repos, the builtin models, most local
    folders); DeepFloyd's stage II repos hold none, so their T5 comes from a stage I repo.
    """
    if (model_dir / "text_encoder" / "config.json").is_file() and (model_dir / "tokenizer").is_dir():
        return model_dir
    if classify_model(model_id).kind != "hub":
        raise FloydError.one(f"{model_dir} has no text_encoder/ and tokenizer/ to encode prompts with",
                             key="pretrained_model_name_or_path",
                             hint="copy text_encoder/ and tokenizer/ from a stage I model folder into it")
    from floydtui.hub import fetch_text_encoder, text_encoder_source

    return Path(fetch_text_encoder(text_encoder_source(model_id, stage), revision=revision, variant=variant,
                                   events=events))


def load_unet(folder: Path, dtype, variant: str | None = None):
    """The IF UNet from a model folder, in `dtype`, frozen."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", dtype=dtype,
                                                variant=weight_variant(folder, variant))
    unet.requires_grad_(False)
    return unet


def load_noise_scheduler(folder: Path):
    """The model's own DDPMScheduler (noise schedule and timesteps for training)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_pretrained(folder, subfolder="scheduler")


def load_image_noising_scheduler(folder: Path):
    """Stage II's image_noising_scheduler: what IFSuperResolutionPipeline noises the upscaled input with."""
    from diffusers import DDPMScheduler

    if not (folder / "image_noising_scheduler" / "scheduler_config.json").is_file():
        raise FloydError.one(f"{folder} has no image_noising_scheduler/ (a stage II model folder holds one)",
                             key="pretrained_model_name_or_path",
                             hint="point it at a folder saved with IFSuperResolutionPipeline.save_pretrained, "
                                  "or at DeepFloyd/IF-II-M-v1.0")
    return DDPMScheduler.from_pretrained(folder, subfolder="image_noising_scheduler")


def validation_scheduler(folder: Path):
    """The model's scheduler with variance_type fixed_small, as the guide loads it for inference."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_pretrained(folder, subfolder="scheduler", variance_type="fixed_small")


def load_text_encoder(folder: Path, dtype, variant: str | None = None):
    """(tokenizer, T5 encoder) from a model folder; the encoder frozen and in eval mode."""
    from floydtui.lazyimports import ready

    ready()
    from transformers import AutoTokenizer, T5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")
    encoder = T5EncoderModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype,
                                             variant=weight_variant(folder, variant, "text_encoder"))
    encoder.requires_grad_(False).eval()
    return tokenizer, encoder


def load_pipeline(folder: Path, stage: int, *, unet=None, dtype=None, variant: str | None = None,
                  text_encoder: bool = False):
    """An IFPipeline (stage I) or IFSuperResolutionPipeline (stage II) for inference.

    The scheduler is switched to fixed_small variance (the guide's inference line). Without
    `text_encoder`, T5 is not loaded and prompts go in as cached `prompt_embeds`. A given
    `unet` (the one being trained) replaces the folder's.
    """
    import torch
    from diffusers import IFPipeline, IFSuperResolutionPipeline

    cls = IFPipeline if stage == 1 else IFSuperResolutionPipeline
    dtype = dtype or torch.float32
    extra: dict[str, Any] = {"safety_checker": None, "feature_extractor": None, "watermarker": None,
                             "requires_safety_checker": False, "scheduler": validation_scheduler(folder)}
    if not text_encoder:
        extra.update(text_encoder=None, tokenizer=None)
    if unet is not None:
        extra["unet"] = unet
    pipe = cls.from_pretrained(folder, dtype=dtype, variant=weight_variant(folder, variant), **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def quiet_libraries() -> None:
    """Silence diffusers/transformers/peft chatter and their progress bars: floydtui reports progress itself."""
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(diffusers|transformers|peft)\.")
