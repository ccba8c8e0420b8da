"""SimpleTuner 4.10.1's names, values and defaults, and how floydtui's preset keys map onto them.

floydtui's preset keys are the guide's names (DESIGN.md section 4). SimpleTuner 4.10.1 renamed
several of them and changed their vocabularies; this module is the table between the two, one
rule per floydtui key, and the defaults SimpleTuner's argument parser gives a key that a config
file leaves out (read from `simpletuner.helpers.configuration.cmd_args.get_default_config()`,
4.10.1, Python 3.12). `import` fills what a file leaves out with these, so a preset means what
the file meant to SimpleTuner; `export` writes what differs from them, in SimpleTuner's names.

A later SimpleTuner gets its own module beside this one.
"""

from __future__ import annotations

import json
from typing import Any

from floydtui.config.flavours import classify_model
from floydtui.config.resolution import normalise_validation_resolution
from floydtui.errors import Problem

VERSION = "4.10.1"

# get_default_config() of 4.10.1 for the arguments this module reads or writes.
DEFAULTS: dict[str, Any] = {
    "model_family": None,
    "model_flavour": None,
    "model_type": "full",
    "pretrained_model_name_or_path": None,
    "revision": None,
    "variant": None,
    "lora_rank": 16,
    "lora_alpha": None,
    "lora_dropout": 0.1,
    "peft_lora_target_modules": None,
    "use_dora": False,
    "layer_freeze_strategy": None,
    "learning_rate": 4e-7,
    "lr_end": 4e-7,
    "lr_scheduler": "constant_with_warmup",
    "lr_warmup_steps": 0,
    "train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "gradient_checkpointing": True,
    "max_train_steps": None,
    "num_train_epochs": 1,
    "mixed_precision": "bf16",
    "optimizer": "adamw_bf16",
    "optimizer_config": None,
    "optimizer_beta1": None,
    "optimizer_beta2": None,
    "max_grad_norm": 2.0,
    "grad_clip_method": "value",
    "snr_gamma": None,
    "caption_dropout_probability": 0.1,
    "timestep_bias_strategy": None,
    "timestep_bias_multiplier": 1.0,
    "timestep_bias_portion": 0.25,
    "timestep_bias_begin": 0,
    "timestep_bias_end": 1000,
    "disable_segmented_timestep_sampling": False,
    "attention_mechanism": "kohaku-fa-auto",
    "resolution": 1024,
    "resolution_type": "pixel_area",
    "seed": None,
    "checkpoint_step_interval": 500,
    "checkpoints_total_limit": 5,
    "validation_resolution": "256",
    "validation_prompt": None,
    "validation_negative_prompt": "blurry, cropped, ugly",
    "validation_step_interval": 100,
    "validation_num_inference_steps": 30,
    "validation_guidance": 7.5,
    "validation_seed": None,
    "num_validation_images": 1,
    "num_eval_images": 4,
    "output_dir": "simpletuner-results",
    "tracker_project_name": "simpletuner",
    "tracker_run_name": "simpletuner-testing",
}

# The DeepFloyd model class's DEFAULT_LORA_TARGET: what SimpleTuner adapts without peft_lora_target_modules.
DEEPFLOYD_LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")

# Arguments the parser requires (ValidationRuleType.REQUIRED): written even at their default.
REQUIRED = ("model_family", "model_type", "optimizer", "output_dir", "data_backend_config")

# floydtui optimizer -> (SimpleTuner optimizer, the settings it builds the optimizer with
# unless optimizer_beta1/2 or optimizer_config say otherwise: optimizer_param.py).
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "adamw_bf16": ("adamw_bf16", {"betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-6}),
    "adamw": ("torch-adamw", {"betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-8}),
}
OPTIMIZER_FROM_ST = {st: ours for ours, (st, _) in OPTIMIZERS.items()} | {
    "adam_bfloat16": "adamw_bf16",  # SimpleTuner's own legacy alias
}

# floydtui attention -> SimpleTuner's: "diffusers" is diffusers' default processor (PyTorch SDPA).
ATTENTION = {"sdpa": "diffusers", "xformers": "xformers"}
# SimpleTuner's exact-attention kernels, read as floydtui's sdpa (same result, another kernel);
# "sdpa" is the guide's name.
ATTENTION_FROM_ST = {st: ours for ours, st in ATTENTION.items()} | {"sdpa": "sdpa", "native": "sdpa",
                                                                     "kohaku-fa-auto": "sdpa"}

# Names a SimpleTuner file may use for an argument, newest last: the argument parser's aliases and
# the names of the guide and of older configs (read on import, never written).
LEGACY_KEYS = {
    "checkpointing_steps": "checkpoint_step_interval",
    "validation_steps": "validation_step_interval",
    "lora_target_modules": "peft_lora_target_modules",
}

# SimpleTuner 4.10.1's config.env names (env_file.env_to_args_map): the only names its loader reads,
# besides TRAINER_EXTRA_ARGS.
ENV_TO_ARGS = {
    "RESUME_CHECKPOINT": "resume_from_checkpoint", "DATALOADER_CONFIG": "data_backend_config",
    "ASPECT_BUCKET_ROUNDING": "aspect_bucket_rounding", "TRAINING_SEED": "seed",
    "ACCELERATE_CONFIG_PATH": "accelerate_config", "ACCELERATE_EXTRA_ARGS": "accelerate_extra_args",
    "USE_EMA": "use_ema", "USE_XFORMERS": "enable_xformers_memory_efficient_attention",
    "MINIMUM_RESOLUTION": "minimum_image_size", "OUTPUT_DIR": "output_dir", "USE_DORA": "use_dora",
    "USE_BITFIT": "layer_freeze_strategy=bitfit", "LORA_TYPE": "lora_type", "LYCORIS_CONFIG": "lycoris_config",
    "PUSH_TO_HUB": "push_to_hub", "PUSH_TO_HUB_BACKGROUND": "push_to_hub_background",
    "PUSH_CHECKPOINTS": "push_checkpoints_to_hub", "PUBLISHING_CONFIG": "publishing_config",
    "MAX_NUM_STEPS": "max_train_steps", "NUM_EPOCHS": "num_train_epochs",
    "CHECKPOINTING_STEPS": "checkpoint_step_interval", "CHECKPOINT_STEP_INTERVAL": "checkpoint_step_interval",
    "CHECKPOINT_EPOCH_INTERVAL": "checkpoint_epoch_interval", "CHECKPOINTING_LIMIT": "checkpoints_total_limit",
    "HUB_MODEL_NAME": "hub_model_id", "MODEL_CARD_SAFE_FOR_WORK": "model_card_safe_for_work",
    "TRACKER_PROJECT_NAME": "tracker_project_name", "TRACKER_RUN_NAME": "tracker_run_name",
    "MODEL_TYPE": "model_type", "MODEL_NAME": "pretrained_model_name_or_path", "MODEL_FAMILY": "model_family",
    "QWEN_TEXT_ENCODER_MODEL_NAME_OR_PATH": "qwen_text_encoder_model_name_or_path",
    "TRAIN_BATCH_SIZE": "train_batch_size", "USE_GRADIENT_CHECKPOINTING": "gradient_checkpointing",
    "GRADIENT_CHECKPOINTING_OFFLOAD_ATTENTION": "gradient_checkpointing_offload_attention",
    "GRADIENT_CHECKPOINTING_OFFLOAD_PREFETCH": "gradient_checkpointing_offload_prefetch",
    "GRADIENT_CHECKPOINTING_OFFLOAD_PIN_MEMORY_MAX_BUCKETS": "gradient_checkpointing_offload_pin_memory_max_buckets",
    "GRADIENT_CHECKPOINTING_SEGMENT_STRIDE": "gradient_checkpointing_segment_stride",
    "ENABLE_CHUNKED_FEED_FORWARD": "enable_chunked_feed_forward",
    "FEED_FORWARD_CHUNK_SIZE": "feed_forward_chunk_size",
    "CAPTION_DROPOUT_PROBABILITY": "caption_dropout_probability", "RESOLUTION_TYPE": "resolution_type",
    "RESOLUTION": "resolution", "VALIDATION_SEED": "validation_seed", "VALIDATION_STEPS": "validation_step_interval",
    "VALIDATION_STEP_INTERVAL": "validation_step_interval", "VALIDATION_EPOCH_INTERVAL": "validation_epoch_interval",
    "VALIDATE_AFTER_STEP": "validate_after_step", "VALIDATE_AFTER_EPOCH": "validate_after_epoch",
    "VALIDATION_RESOLUTION": "validation_resolution", "VALIDATION_GUIDANCE": "validation_guidance",
    "VALIDATION_METHOD": "validation_method", "VALIDATION_EXTERNAL_SCRIPT": "validation_external_script",
    "VALIDATION_EXTERNAL_BACKGROUND": "validation_external_background",
    "DEEPFLOYD_VALIDATION_PIPELINE_MODE": "deepfloyd_validation_pipeline_mode",
    "DEEPFLOYD_VALIDATION_STAGE1_MODEL": "deepfloyd_validation_stage1_model",
    "DEEPFLOYD_VALIDATION_STAGE2_MODEL": "deepfloyd_validation_stage2_model",
    "DEEPFLOYD_VALIDATION_STAGE3_MODE": "deepfloyd_validation_stage3_mode",
    "DEEPFLOYD_VALIDATION_STAGE3_MODEL": "deepfloyd_validation_stage3_model",
    "DEEPFLOYD_VALIDATION_STAGE1_NUM_INFERENCE_STEPS": "deepfloyd_validation_stage1_num_inference_steps",
    "DEEPFLOYD_VALIDATION_STAGE2_NUM_INFERENCE_STEPS": "deepfloyd_validation_stage2_num_inference_steps",
    "DEEPFLOYD_VALIDATION_STAGE1_GUIDANCE": "deepfloyd_validation_stage1_guidance",
    "DEEPFLOYD_VALIDATION_STAGE2_GUIDANCE": "deepfloyd_validation_stage2_guidance",
    "DEEPFLOYD_VALIDATION_STAGE3_GUIDANCE": "deepfloyd_validation_stage3_guidance",
    "DEEPFLOYD_VALIDATION_STAGE3_NOISE_LEVEL": "deepfloyd_validation_stage3_noise_level",
    "WAN_VALIDATION_LOAD_OTHER_STAGE": "wan_validation_load_other_stage",
    "SDXL_VALIDATION_PIPELINE_MODE": "sdxl_validation_pipeline_mode",
    "SDXL_VALIDATION_STAGE1_MODEL": "sdxl_validation_stage1_model",
    "SDXL_VALIDATION_STAGE2_MODEL": "sdxl_validation_stage2_model",
    "PIXART_VALIDATION_PIPELINE_MODE": "pixart_validation_pipeline_mode",
    "PIXART_VALIDATION_STAGE1_MODEL": "pixart_validation_stage1_model",
    "PIXART_VALIDATION_STAGE2_MODEL": "pixart_validation_stage2_model",
    "LTX2_VALIDATION_PIPELINE_MODE": "ltx2_validation_pipeline_mode",
    "LTX2_VALIDATION_SPATIAL_UPSAMPLER_MODEL": "ltx2_validation_spatial_upsampler_model",
    "LTX2_VALIDATION_SPATIAL_UPSAMPLER_FILENAME": "ltx2_validation_spatial_upsampler_filename",
    "LTX2_VALIDATION_AUDIO_GUIDANCE": "ltx2_validation_audio_guidance",
    "POST_CHECKPOINT_SCRIPT": "post_checkpoint_script", "POST_UPLOAD_SCRIPT": "post_upload_script",
    "VALIDATION_GUIDANCE_RESCALE": "validation_guidance_rescale",
    "VALIDATION_NUM_INFERENCE_STEPS": "validation_num_inference_steps", "VALIDATION_PROMPT": "validation_prompt",
    "VALIDATION_INPUT": "validation_input", "ALLOW_TF32": "allow_tf32", "MIXED_PRECISION": "mixed_precision",
    "OPTIMIZER": "optimizer", "LEARNING_RATE": "learning_rate", "LR_SCHEDULE": "lr_scheduler",
    "LR_WARMUP_STEPS": "lr_warmup_steps", "BASE_MODEL_PRECISION": "base_model_precision",
    "QUANTIZE_VIA": "quantize_via", "QUANTIZATION_CONFIG": "quantization_config",
    "SDNQ_WEIGHTS_DTYPE": "sdnq_weights_dtype", "SDNQ_QUANTIZED_MATMUL_DTYPE": "sdnq_quantized_matmul_dtype",
    "SDNQ_GROUP_SIZE": "sdnq_group_size", "SDNQ_USE_QUANTIZED_MATMUL": "sdnq_use_quantized_matmul",
    "SDNQ_COMPILE_MODE": "sdnq_compile_mode", "SDNQ_USE_STATIC_QUANTIZATION": "sdnq_use_static_quantization",
    "SDNQ_USE_STOCHASTIC_ROUNDING": "sdnq_use_stochastic_rounding", "SDNQ_DEQUANTIZE_FP32": "sdnq_dequantize_fp32",
    "SDNQ_USE_SVD": "sdnq_use_svd", "SDNQ_SVD_RANK": "sdnq_svd_rank", "SDNQ_SVD_STEPS": "sdnq_svd_steps",
    "SDNQ_USE_HADAMARD": "sdnq_use_hadamard", "SDNQ_HADAMARD_GROUP_SIZE": "sdnq_hadamard_group_size",
    "SDNQ_MODULES_TO_NOT_CONVERT": "sdnq_modules_to_not_convert",
    "SDNQ_MODULES_TO_NOT_USE_MATMUL": "sdnq_modules_to_not_use_matmul",
    "SDNQ_MODULES_DTYPE_DICT": "sdnq_modules_dtype_dict", "SDNQ_MODULES_QUANT_CONFIG": "sdnq_modules_quant_config",
    "TRAINING_NUM_PROCESSES": "num_processes", "TRAINING_NUM_MACHINES": "num_machines",
    "TRAINER_DYNAMO_BACKEND": "dynamo_backend", "VALIDATION_GUIDANCE_REAL": "validation_guidance_real",
    "VALIDATION_NO_CFG_UNTIL_TIMESTEP": "validation_no_cfg_until_timestep",
    "TRAINING_SCHEDULER_TIMESTEP_SPACING": "training_scheduler_timestep_spacing",
    "INFERENCE_SCHEDULER_TIMESTEP_SPACING": "inference_scheduler_timestep_spacing",
    "GRADIENT_ACCUMULATION_STEPS": "gradient_accumulation_steps", "TRAINING_DYNAMO_BACKEND": "dynamo_backend",
    "LR_END": "lr_end", "FLUX_GUIDANCE_VALUE": "flux_guidance_value", "FLUX_LORA_TARGET": "flux_lora_target",
    "VALIDATION_NEGATIVE_PROMPT": "validation_negative_prompt",
    "METADATA_UPDATE_INTERVAL": "metadata_update_interval", "READ_BATCH_SIZE": "read_batch_size",
    "WRITE_BATCH_SIZE": "write_batch_size", "TEXT_ENCODER_BATCH_SIZE": "text_encoder_batch_size",
    "TEXT_CACHE_ONDEMAND": "text_cache_ondemand", "TEXT_CACHE_DISABLE": "text_cache_disable",
    "AWS_MAX_POOL_CONNECTIONS": "aws_max_pool_connections", "TORCH_NUM_THREADS": "torch_num_threads",
    "IMAGE_PROCESSING_BATCH_SIZE": "image_processing_batch_size", "DISABLE_BENCHMARK": "disable_benchmark",
}
# Names of older SimpleTuner config.env files (and of the guide) that 4.10.1 no longer reads, and
# what they meant: an argument, or a switch with the value it set.
ENV_LEGACY = {
    "LEARNING_RATE_END": ("lr_end", None),
    "PURE_BF16": ("optimizer", {"true": "adamw_bf16"}),
}
# Shell variables of train.sh-era files: used to expand ${VAR} in later lines, never arguments.
ENV_SHELL_VARIABLES = {"BASE_DIR", "INSTANCE_DIR", "ENV", "CONFIG_BACKEND", "DISABLE_UPDATES", "TRAINING_NUM_PROCESSES",
                       "TRAINING_NUM_MACHINES", "TRAINING_DYNAMO_BACKEND", "MIXED_PRECISION_OVERRIDE"}

# floydtui keys whose SimpleTuner argument has the same name, the same values and the same meaning.
SAME = ("model_family", "model_flavour", "model_type", "lora_rank", "lora_dropout", "use_dora", "learning_rate",
        "lr_end", "lr_scheduler", "lr_warmup_steps", "train_batch_size", "gradient_accumulation_steps",
        "gradient_checkpointing", "mixed_precision", "caption_dropout_probability", "resolution",
        "checkpoints_total_limit", "validation_negative_prompt", "validation_num_inference_steps",
        "validation_guidance", "num_validation_images", "num_eval_images", "output_dir", "timestep_bias_multiplier",
        "timestep_bias_portion", "timestep_bias_begin", "timestep_bias_end", "tracker_project_name", "tracker_run_name")
RENAMED = {"checkpointing_steps": "checkpoint_step_interval", "validation_steps": "validation_step_interval"}
# The floydtui keys the rules below translate; other SimpleTuner-named keys pass with their name.
CONSUMED = {*SAME, *RENAMED, "pretrained_model_name_or_path", "revision", "variant", "lora_alpha", "lora_target_modules",
            "use_bitfit", "max_train_steps", "num_train_epochs", "optimizer", "adam_beta1", "adam_beta2",
            "adam_weight_decay", "adam_epsilon", "max_grad_norm", "grad_clip_method", "snr_gamma",
            "attention_mechanism", "resolution_type", "seed", "validation_seed", "validation_resolution",
            "validation_prompt", "timestep_bias_strategy"}
# Every SimpleTuner argument the rules below read; the rest of a file goes to [extra].
MAPPED_ST_KEYS = set(DEFAULTS) | {"use_bitfit", "enable_xformers_memory_efficient_attention"}

# The dataset keys a text_embeds entry has in SimpleTuner (the rest are image-dataset keys).
TEXT_EMBEDS_KEYS = ("id", "type", "dataset_type", "default", "disable", "cache_dir")
# SimpleTuner's defaults for an image dataset's keys (ImageBackendConfig; resolution, resolution_type
# and caption_strategy come from the arguments when a dataset leaves them out). Its unset sizes
# (no minimum, never downsample) are floydtui's 0.
DATASET_DEFAULTS: dict[str, Any] = {
    "crop": False, "crop_aspect": "square", "crop_style": "random", "minimum_image_size": 0,
    "maximum_image_size": 0, "target_downsample_size": 0, "prepend_instance_prompt": False,
    "instance_prompt": None, "repeats": 0, "disable": False,
}
DATASET_ARG_DEFAULTS = {"caption_strategy": "filename"}
PIXEL_RULE = 512  # BaseBackendConfig._validate_image_size_settings: the pixel minimum


def _warn(message: str, key: str, hint: str = "") -> Problem:
    return Problem(message, severity="warning", key=key, hint=hint)


def _num(value: Any) -> Any:
    """SimpleTuner values arrive as strings from env files: "4e-5" -> 4e-05, "2" -> 2."""
    if isinstance(value, str):
        v = value.strip()
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
    return value


def _bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off", ""):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return value


def parse_optimizer_config(text: Any) -> dict[str, Any]:
    """`"eps=1e-6,weight_decay=0.0"` as SimpleTuner's convert_arg_to_parameters reads it."""
    out: dict[str, Any] = {}
    if not isinstance(text, str) or not text.strip():
        return out
    for item in text.split(","):
        key, _, value = item.partition("=")
        out[key.strip()] = _num(value.strip())
    return out


# ---- SimpleTuner -> floydtui --------------------------------------------------
def from_simpletuner(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[Problem]]:
    """A SimpleTuner config (argument names, legacy names resolved) as floydtui keys.

    Returns (floydtui flat values, SimpleTuner keys floydtui does not implement, notes). Every
    argument the file leaves out takes SimpleTuner's default, so the preset means what the file
    meant there.
    """
    notes: list[Problem] = []
    st = dict(DEFAULTS)
    st.update({k: v for k, v in given.items() if v is not None})
    out: dict[str, Any] = {}
    kept: dict[str, Any] = {}  # SimpleTuner values floydtui reads as an approximation: they go back out
    for key in SAME:
        if st[key] is not None:
            out[key] = st[key]
    for ours, theirs in RENAMED.items():
        out[ours] = st[theirs]
    if st["model_family"] is None:
        out["model_family"] = "deepfloyd"
    for key in ("lora_rank", "lora_dropout", "learning_rate", "lr_end", "lr_warmup_steps", "train_batch_size",
                "gradient_accumulation_steps", "caption_dropout_probability", "resolution", "checkpoints_total_limit",
                "validation_num_inference_steps", "validation_guidance", "num_validation_images", "num_eval_images",
                "checkpointing_steps", "validation_steps", "timestep_bias_multiplier", "timestep_bias_portion",
                "timestep_bias_begin", "timestep_bias_end"):
        out[key] = _num(out[key])
    for key in ("use_dora", "gradient_checkpointing"):
        out[key] = _bool(out[key])

    if st["pretrained_model_name_or_path"] is not None:
        out["pretrained_model_name_or_path"] = st["pretrained_model_name_or_path"]
    out["revision"] = st["revision"] or "main"
    variant = st["variant"]
    out["variant"] = "none" if variant in (None, "", "none", "None") else variant
    if st["lora_alpha"] is not None:
        out["lora_alpha"] = _num(st["lora_alpha"])

    targets = st["peft_lora_target_modules"]
    if targets is None:
        out["lora_target_modules"] = list(DEEPFLOYD_LORA_TARGETS)
    else:
        if isinstance(targets, str):
            try:
                targets = json.loads(targets)
            except json.JSONDecodeError:
                targets = [t.strip() for t in targets.split(",") if t.strip()]
        out["lora_target_modules"] = targets

    legacy_bitfit = _bool(given.get("use_bitfit"))
    strategy = st["layer_freeze_strategy"]
    if legacy_bitfit is not None and "layer_freeze_strategy" not in given:
        strategy = "bitfit" if legacy_bitfit is True else None
        notes.append(_warn(f"use_bitfit is the guide's name: SimpleTuner {VERSION} reads layer_freeze_strategy "
                           f"(\"bitfit\"), and export writes that", "use_bitfit"))
    if strategy not in (None, "bitfit"):
        kept["layer_freeze_strategy"] = strategy
        notes.append(_warn(f"layer_freeze_strategy = {strategy!r} has no floydtui equivalent (floydtui has BitFit "
                           "only); it is off in the preset", "use_bitfit"))
    out["use_bitfit"] = strategy == "bitfit"

    steps = _num(st["max_train_steps"])
    out["max_train_steps"] = steps or 0
    out["num_train_epochs"] = _num(st["num_train_epochs"])

    optimizer = st["optimizer"]
    ours = OPTIMIZER_FROM_ST.get(optimizer)
    if ours is None:
        out["optimizer"] = optimizer  # floydtui check names it: floydtui cannot build it
        notes.append(_warn(f"optimizer = {optimizer!r} has no floydtui equivalent", "optimizer",
                           "floydtui trains with adamw (SimpleTuner's torch-adamw) or adamw_bf16: choose one"))
        settings = OPTIMIZERS["adamw"][1]
    else:
        out["optimizer"] = ours
        settings = OPTIMIZERS[ours][1]
    settings = dict(settings) | parse_optimizer_config(st["optimizer_config"])
    if st["optimizer_beta1"] is not None and st["optimizer_beta2"] is not None:
        settings["betas"] = (_num(st["optimizer_beta1"]), _num(st["optimizer_beta2"]))
    out["adam_beta1"], out["adam_beta2"] = settings["betas"]
    out["adam_weight_decay"] = settings["weight_decay"]
    out["adam_epsilon"] = settings["eps"]
    for key in ("adam_beta1", "adam_beta2", "adam_weight_decay", "adam_epsilon"):
        if key in given:
            notes.append(_warn(f"{key} is used by SimpleTuner {VERSION} only under DeepSpeed: the optimizer it "
                               f"builds takes optimizer_beta1/2 and optimizer_config; kept in [extra]", key))

    out["max_grad_norm"] = _num(st["max_grad_norm"])
    out["grad_clip_method"] = st["grad_clip_method"]
    gamma = _num(st["snr_gamma"])
    out["snr_gamma"] = gamma if gamma is not None else 0.0

    attention = st["attention_mechanism"]
    if _bool(given.get("enable_xformers_memory_efficient_attention")) is True and "attention_mechanism" not in given:
        attention = "xformers"  # the USE_XFORMERS switch of older config.env files
    if attention not in (*ATTENTION.values(), "sdpa"):  # "sdpa": the guide's name, which 4.10.1 rejects
        kept["attention_mechanism"] = attention
    if attention in ATTENTION_FROM_ST:
        out["attention_mechanism"] = ATTENTION_FROM_ST[attention]
    else:
        out["attention_mechanism"] = "sdpa"
        notes.append(_warn(f"attention_mechanism = {attention!r} has no floydtui equivalent: the preset uses "
                           "sdpa (PyTorch's, as SimpleTuner's \"diffusers\")", "attention_mechanism"))

    bias = st["timestep_bias_strategy"]
    out["timestep_bias_strategy"] = "none" if bias in (None, "", "None") else bias
    unsegmented = _bool(st["disable_segmented_timestep_sampling"]) is True
    if unsegmented and out["timestep_bias_strategy"] == "none":
        kept["disable_segmented_timestep_sampling"] = True  # floydtui's own way: export writes it back
    elif not unsegmented and out["timestep_bias_strategy"] != "none" and _num(out["train_batch_size"]) != 1:
        notes.append(_warn(
            f"timestep_bias_strategy = {bias!r} with segmented timestep sampling (SimpleTuner's default, "
            "disable_segmented_timestep_sampling = false): SimpleTuner splits the schedule into train_batch_size "
            "segments and draws one timestep from each, weighting only inside a segment, so its bias acts much less "
            "(\"later\" with portion 0.25 at batch 4 changes next to nothing). floydtui draws every timestep from "
            "the whole weighted schedule, as SimpleTuner does with disable_segmented_timestep_sampling = true",
            "timestep_bias_strategy", "the preset trains with the bias at full strength: lower "
            "timestep_bias_multiplier if it was tuned for the segmented draw; export writes "
            "disable_segmented_timestep_sampling = true so that SimpleTuner draws as floydtui does"))

    rtype = st["resolution_type"]
    out["resolution_type"] = "pixel"
    if rtype != "pixel":
        kept["resolution_type"] = rtype
        notes.append(_warn(f"resolution_type = {rtype!r}{' (SimpleTuner default)' if 'resolution_type' not in given else ''}"
                           " has no floydtui equivalent: DeepFloyd trains in pixels, so the preset says \"pixel\"",
                           "resolution_type", "check resolution: it is in pixels"))

    seed = _num(st["seed"])
    if seed is None or seed in (0, -1):
        out["seed"] = 42
        meaning = {None: "unset (a new random seed each run)", 0: "0 (the time, a new seed each run)",
                   -1: "-1 (a random seed each run)"}[seed]
        notes.append(_warn(f"seed is {meaning} in SimpleTuner; floydtui needs a fixed seed and uses 42", "seed"))
    else:
        out["seed"] = seed
    vseed = _num(st["validation_seed"])
    out["validation_seed"] = vseed if vseed else out["seed"]  # SimpleTuner: validation_seed or seed

    out["validation_resolution"] = str(st["validation_resolution"])
    if st["validation_prompt"] is not None:
        out["validation_prompt"] = st["validation_prompt"]
    else:  # floydtui validates every run and checks the saved LoRA with that prompt
        notes.append(_warn("no validation_prompt: SimpleTuner would skip validation; floydtui validates with its "
                           "default prompt", "validation_prompt", "set validation_prompt to one for your subject"))

    extra = {k: v for k, v in given.items() if k not in MAPPED_ST_KEYS} | kept
    return out, extra, notes


def still_means(st_key: str, st_value: Any, values: dict[str, Any]) -> bool:
    """Whether a SimpleTuner value kept in [extra] still reads as the preset's value (export writes it then)."""
    if st_key == "attention_mechanism":
        return ATTENTION_FROM_ST.get(st_value, "sdpa") == values["attention_mechanism"]
    if st_key == "resolution_type":
        return values["resolution_type"] == "pixel"
    if st_key == "layer_freeze_strategy":
        return not values["use_bitfit"]
    if st_key == "disable_segmented_timestep_sampling":
        return st_value is True  # floydtui never segments: true always says what it does
    return False


def dataset_from_simpletuner(ds: dict[str, Any]) -> dict[str, Any]:
    """A multidatabackend.json entry with SimpleTuner's defaults for what it leaves out."""
    out = dict(ds)
    if "disabled" in out and "disable" not in out:
        out["disable"] = out.pop("disabled")
    if out.get("dataset_type", "image") == "text_embeds":
        return out
    for key, value in (DATASET_DEFAULTS | DATASET_ARG_DEFAULTS).items():
        out.setdefault(key, value)
    if out.get("instance_prompt") is None:
        out["instance_prompt"] = ""
    return out


# ---- floydtui -> SimpleTuner -------------------------------------------------
def _differs(key: str, value: Any) -> bool:
    default = DEFAULTS.get(key, object())
    if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(default, (int, float)):
        return float(value) != float(default)
    return value != default


def to_simpletuner(values: dict[str, Any], hub_model: bool) -> tuple[dict[str, Any], list[Problem]]:
    """floydtui's resolved keys (flat) as the SimpleTuner arguments that differ from its defaults.

    `hub_model`: the model is a hub id (its variant "auto" then means fp16, which every DeepFloyd
    IF repo has). Returns (config.json values, warnings for what SimpleTuner cannot express).
    """
    warnings: list[Problem] = []
    st: dict[str, Any] = {key: values[key] for key in SAME}
    for ours, theirs in RENAMED.items():
        st[theirs] = values[ours]
    st["pretrained_model_name_or_path"] = values["pretrained_model_name_or_path"]
    if classify_model(values["pretrained_model_name_or_path"]).kind == "builtin":
        warnings.append(_warn("pretrained_model_name_or_path is a floydtui built-in model, which SimpleTuner cannot "
                              "load", "pretrained_model_name_or_path",
                              "set it to the flavour's hub id or a local folder before running SimpleTuner"))
    if values["revision"] != "main":
        st["revision"] = values["revision"]
    variant = values["variant"]
    st["variant"] = {"auto": "fp16" if hub_model else None, "none": None}.get(variant, variant)
    if values["lora_alpha"] != values["lora_rank"]:
        st["lora_alpha"] = values["lora_alpha"]
    if sorted(values["lora_target_modules"]) != sorted(DEEPFLOYD_LORA_TARGETS):
        st["peft_lora_target_modules"] = json.dumps(values["lora_target_modules"])
    if values["use_bitfit"]:
        st["layer_freeze_strategy"] = "bitfit"
    if values["max_train_steps"]:
        st["max_train_steps"] = values["max_train_steps"]
        st["num_train_epochs"] = 0  # SimpleTuner refuses max_train_steps with num_train_epochs set

    name, defaults = OPTIMIZERS[values["optimizer"]]
    st["optimizer"] = name
    betas = (values["adam_beta1"], values["adam_beta2"])
    if tuple(map(float, betas)) != tuple(map(float, defaults["betas"])):
        st["optimizer_beta1"], st["optimizer_beta2"] = betas
    config = [f"{k}={values[ours]!r}" for k, ours in (("weight_decay", "adam_weight_decay"), ("eps", "adam_epsilon"))
              if float(values[ours]) != float(defaults[k])]
    if config:
        st["optimizer_config"] = ",".join(config)

    st["max_grad_norm"] = values["max_grad_norm"]
    st["grad_clip_method"] = values["grad_clip_method"]
    gamma = values["snr_gamma"]
    if gamma:
        if float(gamma) != int(gamma):
            warnings.append(_warn(f"snr_gamma = {gamma} has no SimpleTuner {VERSION} equivalent: its snr_gamma is "
                                  f"an integer; exported as {round(gamma)}", "snr_gamma",
                                  "use a whole number (5 is common)"))
        st["snr_gamma"] = round(gamma)
    if values["timestep_bias_strategy"] != "none":
        st["timestep_bias_strategy"] = values["timestep_bias_strategy"]
        # floydtui draws each timestep from the whole weighted schedule; SimpleTuner's default segments it
        st["disable_segmented_timestep_sampling"] = True
    st["attention_mechanism"] = ATTENTION[values["attention_mechanism"]]
    st["resolution_type"] = values["resolution_type"]
    st["seed"] = values["seed"]
    if values["seed"] == 0:
        warnings.append(_warn(f"seed = 0 has no SimpleTuner {VERSION} equivalent: there it means a new seed from the "
                              "clock each run", "seed", "use a seed other than 0 for runs that repeat"))
    vseed = values["validation_seed"]
    if vseed:
        st["validation_seed"] = vseed
    elif values["seed"] != 0:
        warnings.append(_warn(f"validation_seed = 0 has no SimpleTuner {VERSION} equivalent: it reads 0 as "
                              f"\"use seed\", so its validation images use seed {values['seed']}",
                              "validation_seed", "set validation_seed to a number other than 0 (e.g. the seed)"))
    st["validation_resolution"] = normalise_validation_resolution(values["validation_resolution"])
    if values["validation_prompt"]:
        st["validation_prompt"] = values["validation_prompt"]
    return {k: v for k, v in st.items() if v is not None and (k in REQUIRED or _differs(k, v))}, warnings


def dataset_to_simpletuner(ds: dict[str, Any], model_type: str) -> tuple[dict[str, Any], list[Problem]]:
    """A resolved [[datasets]] entry as a multidatabackend.json entry, with the 512-pixel warning."""
    if ds["dataset_type"] == "text_embeds":
        keys = TEXT_EMBEDS_KEYS
    else:
        keys = [k for k in ds if k != "extra"]
    entry = {k: ds[k] for k in keys if ds.get(k) is not None}
    for key in ("maximum_image_size", "target_downsample_size"):
        if entry.get(key) == 0:  # floydtui's "never" is SimpleTuner's unset
            del entry[key]
    for key in ("disable", "default"):  # false is SimpleTuner's default; default is a text_embeds key
        if not entry.get(key):
            entry.pop(key, None)
    if ds["dataset_type"] == "image" and not ds.get("instance_prompt"):
        entry.pop("instance_prompt", None)
    warnings: list[Problem] = []
    small = [k for k in ("maximum_image_size", "target_downsample_size")
             if ds["dataset_type"] == "image" and entry.get("resolution_type") == "pixel"
             and isinstance(entry.get(k), int) and entry[k] < PIXEL_RULE]
    if small:
        warnings.append(_warn(
            f"dataset {ds['id']!r}: SimpleTuner {VERSION} rejects {' and '.join(f'{k} = {entry[k]}' for k in small)} "
            f"(its data-backend check, BaseBackendConfig._validate_image_size_settings, wants >= {PIXEL_RULE} pixels "
            f"unless \"deepfloyd\" is in model_type, which its parser no longer accepts: model_type is "
            f"{model_type!r}); exported as the guide's values", "maximum_image_size",
            f"to train this export in SimpleTuner, remove {' and '.join(small)} from multidatabackend.json "
            f"(downsample the images yourself) or raise them to {PIXEL_RULE}"))
    entry.update(ds.get("extra") or {})
    return entry, warnings
