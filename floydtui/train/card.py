"""The model card (README.md) a run writes beside its LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from floydtui.config.flavours import stage_name
from floydtui.config.schema import TIMESTEP_BIAS_KEYS

_SETTINGS = ("model_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules", "use_dora", "use_bitfit",
             "learning_rate", "lr_end", "lr_scheduler", "lr_warmup_steps", "train_batch_size",
             "gradient_accumulation_steps", "mixed_precision", "optimizer", "snr_gamma",
             "caption_dropout_probability", "resolution", "seed", "timestep_bias_strategy")


def model_card(preset: Any, *, base_model: str, note: str, steps: int, world_size: int,
               validation_images: list[dict[str, Any]]) -> str:
    """Markdown: what was trained on what, with which settings, and how to load it."""
    stage = preset.stage
    pipeline = "IFPipeline" if stage == 1 else "IFSuperResolutionPipeline"
    t = preset.training
    clean = "True" if t["clean_caption"] else "False"
    prompt = preset.validation_prompt_list[0].replace('"', "'") if stage == 1 else "a prompt"
    lines = [
        f"# DeepFloyd IF {stage_name(stage)} LoRA",
        "",
        f"- base model: `{base_model}`" + (f"\n- note: {note}" if note else ""),
        f"- flavour: {preset.flavour.name}",
        f"- trained for {steps} steps on {world_size} process(es) with floydtui",
        "",
        "## How to load it",
        "",
        "```python",
        f"from diffusers import {pipeline}",
        "",
        f'pipe = {pipeline}.from_pretrained("{base_model}")',
        f'pipe.load_lora_weights("{preset.output_dir}")',
        "# IF's inference scheduler setting (the guide's line):",
        'pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, variance_type="fixed_small")',
        *([f'image = pipe("{prompt}", clean_caption={clean})[0]'] if stage == 1 else [
            "# prompt embeds from the stage I pipeline, with the captions' preprocessing of this run:",
            f'prompt_embeds, negative_embeds = stage_1.encode_prompt("{prompt}", clean_caption={clean})']),
        "```",
        "",
        f"The captions were preprocessed with `clean_caption = {str(t['clean_caption']).lower()}`"
        + (" (IFPipeline's default: URLs, HTML and odd punctuation removed, lower case)" if t["clean_caption"] else
           " (lower case and stripped only)") + ": pass the same `clean_caption` at inference, as above, so the "
        "LoRA sees the text it was trained on. `floydtui generate --run` does.",
        "",
    ]
    if stage == 2:
        lines += ["Stage II upscales a 64px image 4x: `pipe(image=stage_one_images, prompt_embeds=..., "
                  "negative_prompt_embeds=..., noise_level=250)`. DeepFloyd's stage II repos hold no text "
                  "encoder: encode prompts with the stage I pipeline and pass its embeds.",
                  "",
                  f"Trained with `stage2_conditioning = \"{t['stage2_conditioning']}\"`: " +
                  ("the UNet saw the upscaled 64px image noised at a random noise level, as "
                   "IFSuperResolutionPipeline feeds it." if t["stage2_conditioning"] == "pipeline" else
                   "the noisy image concatenated with itself and `class_labels = timesteps`, as the public "
                   "reference trainers do (not what the pipeline feeds the UNet)."),
                  ""]
    if t["use_bitfit"]:
        lines += ["BitFit biases trained too: they are in `bitfit_biases.safetensors`, which "
                  "`load_lora_weights` does not read. Apply them with "
                  "`floydtui.train.sampling.load_lora(pipe, OUTPUT_DIR)` (it loads both) or `floydtui generate`.", ""]
    lines += ["## Settings", "", "| key | value |", "| --- | --- |"]
    bias = TIMESTEP_BIAS_KEYS[t["timestep_bias_strategy"]]
    keys = (*_SETTINGS, *bias, *(("stage2_conditioning",) if stage == 2 else ()))
    lines += [f"| {k} | `{t[k]}` |" for k in keys]
    if validation_images:
        lines += ["", "## Validation images (last)", ""]
        lines += [f"- `{Path(i['path']).name}`: {i['prompt']} ({i['width']}x{i['height']}"
                  + (f", seed {i['seed']}" if "seed" in i else "") + ")" for i in validation_images]
    return "\n".join(lines) + "\n"
